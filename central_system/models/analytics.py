"""Pre-aggregated consultation counts for the analytics (issue 12).

Rows are written by ``AnalyticsController.refresh_rollups`` for finished UTC days only
(older than its lag), so a report over a long range reads a few thousand rollup rows
instead of every consultation. Every table keeps the answer-time histogram
(``ANSWER_BUCKETS_S``): percentiles over long ranges and the ``/metrics`` histogram are
read from summed buckets. Keys are UTC: local days and hours are derived when a
report is read (docs/analytics.md).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Integer, String
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
# Lower bounds (seconds) of the answer-time histogram kept per day and faculty member:
# bucket i holds answers in [bound i, bound i+1), the last one everything from a day on.
# Percentiles over long ranges are read from it (docs/analytics.md: "Approximate").
ANSWER_BUCKETS_S = (
    0, 15, 30, 45, 60, 90, 120, 180, 240, 300, 420, 600,
    900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 14400, 21600, 43200, 86400,
)  # fmt: skip
BUCKET_COLUMNS = tuple(f"h{i:02d}" for i in range(len(ANSWER_BUCKETS_S)))


class AnswerHistogramColumns:
    """The answer-time histogram (``ANSWER_BUCKETS_S``) of one period: answers in each bucket."""

    h00: Mapped[int] = mapped_column(Integer, default=0)
    h01: Mapped[int] = mapped_column(Integer, default=0)
    h02: Mapped[int] = mapped_column(Integer, default=0)
    h03: Mapped[int] = mapped_column(Integer, default=0)
    h04: Mapped[int] = mapped_column(Integer, default=0)
    h05: Mapped[int] = mapped_column(Integer, default=0)
    h06: Mapped[int] = mapped_column(Integer, default=0)
    h07: Mapped[int] = mapped_column(Integer, default=0)
    h08: Mapped[int] = mapped_column(Integer, default=0)
    h09: Mapped[int] = mapped_column(Integer, default=0)
    h10: Mapped[int] = mapped_column(Integer, default=0)
    h11: Mapped[int] = mapped_column(Integer, default=0)
    h12: Mapped[int] = mapped_column(Integer, default=0)
    h13: Mapped[int] = mapped_column(Integer, default=0)
    h14: Mapped[int] = mapped_column(Integer, default=0)
    h15: Mapped[int] = mapped_column(Integer, default=0)
    h16: Mapped[int] = mapped_column(Integer, default=0)
    h17: Mapped[int] = mapped_column(Integer, default=0)
    h18: Mapped[int] = mapped_column(Integer, default=0)
    h19: Mapped[int] = mapped_column(Integer, default=0)
    h20: Mapped[int] = mapped_column(Integer, default=0)
    h21: Mapped[int] = mapped_column(Integer, default=0)
    h22: Mapped[int] = mapped_column(Integer, default=0)
    h23: Mapped[int] = mapped_column(Integer, default=0)


class ConsultationStatsHourly(AnswerHistogramColumns, Base):
    """Consultations made in one UTC hour, by outcome, with their answer-time histogram."""

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
    # The sum of the hour's answer times (the ``/metrics`` histogram's ``_sum``).
    answer_s_sum: Mapped[float] = mapped_column(Float, default=0.0)


class FacultyStatsColumns(AnswerHistogramColumns):
    """The counters and answer-time histogram of one faculty member over one period."""

    faculty_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)


class ConsultationStatsDaily(FacultyStatsColumns, Base):
    """Consultations made in one UTC day for one faculty member (no foreign key: history stays)."""

    __tablename__ = "consultation_stats_daily"

    day: Mapped[datetime] = mapped_column(primary_key=True)


class ConsultationStatsWeekly(FacultyStatsColumns, Base):
    """The same for one UTC week (Monday 00:00 UTC), summed from the daily rows of whole weeks."""

    __tablename__ = "consultation_stats_weekly"

    week: Mapped[datetime] = mapped_column(primary_key=True)


class AnalyticsRollupState(Base):
    """How far the rollups reach: every consultation made before ``until`` is counted in them."""

    __tablename__ = "analytics_rollup_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    until: Mapped[datetime]
