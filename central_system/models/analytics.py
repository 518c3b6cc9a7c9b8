"""Pre-aggregated consultation counts for the analytics (issue 12).

Rows are written by ``AnalyticsController.refresh_rollups`` for finished UTC days only
(older than its lag), so a report over a long range reads a few thousand rollup rows
instead of every consultation. Keys are UTC: local days and hours are derived when a
report is read (docs/analytics.md).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

# The per-status counters of the hourly table, in this order everywhere.
HOURLY_COUNTERS = (
    "requests",
    "answered",
    "pending",
    "accepted",
    "busy",
    "declined",
    "completed",
    "cancelled",
    "expired",
)
DAILY_COUNTERS = ("requests", "answered", "expired", "cancelled")


class ConsultationStatsHourly(Base):
    """Consultations made in one UTC hour, by outcome."""

    __tablename__ = "consultation_stats_hourly"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    busy: Mapped[int] = mapped_column(Integer, default=0)
    declined: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)


class ConsultationStatsDaily(Base):
    """Consultations made in one UTC day for one faculty member (no foreign key: history stays)."""

    __tablename__ = "consultation_stats_daily"

    day: Mapped[datetime] = mapped_column(primary_key=True)
    faculty_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)


class AnalyticsRollupState(Base):
    """How far the rollups reach: every consultation made before ``until`` is counted in them."""

    __tablename__ = "analytics_rollup_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    until: Mapped[datetime]
