"""weekly analytics rollup per faculty member

Revision ID: 0009_weekly_rollup
Revises: 0008_web_dashboard
Create Date: 2026-12-01 11:25:00

Adds ``consultation_stats_weekly`` (the daily rollup's columns per UTC week) and empties
the rollups so that the next report recounts them, weeks included.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central_system.models.base

revision = "0009_weekly_rollup"
down_revision = "0008_web_dashboard"
branch_labels = None
depends_on = None

_COUNTERS = ("requests", "answered", "expired", "cancelled", *(f"h{i:02d}" for i in range(24)))


def upgrade() -> None:
    utc = central_system.models.base.UTCDateTime(timezone=True)
    for table in ("consultation_stats_hourly", "consultation_stats_daily", "analytics_rollup_state"):
        op.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names
    op.create_table(
        "consultation_stats_weekly",
        sa.Column("faculty_id", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTERS),
        sa.Column("week", utc, nullable=False),
        sa.PrimaryKeyConstraint("faculty_id", "week", name=op.f("pk_consultation_stats_weekly")),
    )


def downgrade() -> None:
    op.drop_table("consultation_stats_weekly")
