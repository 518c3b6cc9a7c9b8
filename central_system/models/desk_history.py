"""Desk-unit connection history (issue 12): one row per online/offline transition of a desk.

Written by the liveness service in the same transaction as the change it records
(services/liveness.py), read by the uptime reports (controllers/analytics_controller.py,
docs/analytics.md "Desk uptime"). Rows older than ``CONSULTEASE_DESK_HISTORY_DAYS`` are
pruned, except each desk's newest one before the cut (it says what state the desk was in).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class DeskTransitionReason(StrEnum):
    """Why a desk was recorded online or offline."""

    STATUS = "status"  # a presence report (the firmware sends one after every connect)
    HEARTBEAT = "heartbeat"  # a heartbeat from a desk we thought offline
    MESSAGE = "message"  # any other live message (a response, diagnostics)
    LWT = "lwt"  # an improved desk's last will ("status": "OFFLINE"): it lost the broker
    HEARTBEAT_TIMEOUT = "heartbeat timeout"  # silent for ``desk_offline_after_s``
    UPGRADE = "upgrade"  # the desk's state when the history began (migration 0010)


class DeskConnectionEvent(Base):
    """Desk of ``faculty_id`` went ``online`` (True) or offline (False) at ``at`` (UTC)."""

    __tablename__ = "desk_connection_events"
    __table_args__ = (Index("ix_desk_connection_events_faculty_at", "faculty_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key (like the rollups): the liveness batch never fails on a faculty member
    # deleted meanwhile; their rows age out with the retention.
    faculty_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    online: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(32))

    def __repr__(self) -> str:
        return (
            f"DeskConnectionEvent(faculty_id={self.faculty_id!r}, at={self.at!r}, "
            f"online={self.online!r}, reason={self.reason!r})"
        )
