"""Desk-unit connection history (issue 12): one row per online/offline transition of a desk.

Written by the liveness service in the same transaction as the change it records
(controllers/liveness.py), read by the uptime reports (controllers/analytics_controller.py,
docs/analytics.md "Desk uptime"). Rows older than ``CONSULTEASE_DESK_HISTORY_DAYS`` are
pruned, except each desk's newest one before the cut (it says what state the desk was in).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Float, Index, Integer, String, true
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
    # Covering on PostgreSQL (migration 0015): the uptime reports' probe for each desk's
    # newest row before a range (in the reports' order, ``at`` then ``id``) and a range's
    # rows (also the rollup's day) read these indexes only, not the table, where the
    # visibility map says the table's pages are all-visible (VACUUM; docs/performance.md).
    # SQLite has no INCLUDE, and its indexes already carry ``id`` (the rowid): the same keys.
    __table_args__ = (
        Index(
            "ix_desk_connection_events_faculty_at_id",
            "faculty_id",
            "at",
            "id",
            postgresql_include=["online"],
        ),
        Index(
            "ix_desk_connection_events_at", "at", postgresql_include=["faculty_id", "id", "online"]
        ),
    )

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


class DeskUptimeDaily(Base):
    """One desk's connection over one finished UTC day, for the uptime reports' long ranges.

    Written by ``AnalyticsController.refresh_uptime_rollup`` from ``desk_connection_events``;
    a day on which the desk's state was never known (it had not connected yet) has no row.
    Offline means known to be offline (docs/analytics.md "Desk uptime", "Pre-aggregation").
    """

    __tablename__ = "desk_uptime_daily"
    # The reports read one day (or a few) of every desk (migration 0013).
    __table_args__ = (Index("ix_desk_uptime_daily_day", "day"),)

    faculty_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[datetime] = mapped_column(primary_key=True)
    online_s: Mapped[float] = mapped_column(Float)
    drops: Mapped[int] = mapped_column(Integer)  # online -> offline changes during the day
    lead_off_s: Mapped[float] = mapped_column(Float)  # offline from 00:00 until it came back
    inner_off_s: Mapped[float] = mapped_column(Float)  # the longest outage begun and ended inside
    # An outage that ends this day: its whole length, from its start (maybe days before).
    close_run_s: Mapped[float | None] = mapped_column(Float, default=None)
    trail_run_s: Mapped[float] = mapped_column(Float)  # the outage still open at 24:00, whole
    # The desk's state at 24:00: where a report's raw tail after the rollup starts (0014).
    online_at_end: Mapped[bool] = mapped_column(Boolean, server_default=true())


class DeskUptimeWeekly(Base):
    """The same over one whole UTC week (from Monday 00:00), summed from the daily rows.

    Only the first outage ending in a week can have begun before a report's range (the
    others began inside the week), so it is kept apart with where it ended.
    """

    __tablename__ = "desk_uptime_weekly"
    __table_args__ = (Index("ix_desk_uptime_weekly_week", "week"),)

    faculty_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    week: Mapped[datetime] = mapped_column(primary_key=True)
    online_s: Mapped[float] = mapped_column(Float)
    drops: Mapped[int] = mapped_column(Integer)
    first_close_run_s: Mapped[float | None] = mapped_column(Float, default=None)
    first_close_end_s: Mapped[float | None] = mapped_column(Float, default=None)  # after 00:00 Mon
    other_max_s: Mapped[float] = mapped_column(Float)  # the longest of the other outages
    trail_run_s: Mapped[float] = mapped_column(Float)
