"""desk uptime rollups: one row per desk and finished UTC day, and per whole UTC week

Revision ID: 0012_desk_uptime_rollups
Revises: 0011_hourly_answer_histogram
Create Date: 2026-12-01 13:55:00

Adds ``desk_uptime_daily`` and ``desk_uptime_weekly`` (the uptime reports read whole days
and weeks from them instead of every transition) and an index on
``desk_connection_events.at`` (one day's rows, to build them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central_system.models.base

revision = "0012_desk_uptime_rollups"
down_revision = "0011_hourly_answer_histogram"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = central_system.models.base.UTCDateTime(timezone=True)
    op.create_table(
        "desk_uptime_daily",
        sa.Column("faculty_id", sa.Integer(), nullable=False),
        sa.Column("day", utc, nullable=False),
        sa.Column("online_s", sa.Float(), nullable=False),
        sa.Column("drops", sa.Integer(), nullable=False),
        sa.Column("lead_off_s", sa.Float(), nullable=False),
        sa.Column("inner_off_s", sa.Float(), nullable=False),
        sa.Column("close_run_s", sa.Float(), nullable=True),
        sa.Column("trail_run_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("faculty_id", "day", name=op.f("pk_desk_uptime_daily")),
    )
    op.create_table(
        "desk_uptime_weekly",
        sa.Column("faculty_id", sa.Integer(), nullable=False),
        sa.Column("week", utc, nullable=False),
        sa.Column("online_s", sa.Float(), nullable=False),
        sa.Column("drops", sa.Integer(), nullable=False),
        sa.Column("first_close_run_s", sa.Float(), nullable=True),
        sa.Column("first_close_end_s", sa.Float(), nullable=True),
        sa.Column("other_max_s", sa.Float(), nullable=False),
        sa.Column("trail_run_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("faculty_id", "week", name=op.f("pk_desk_uptime_weekly")),
    )
    op.create_index("ix_desk_connection_events_at", "desk_connection_events", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_desk_connection_events_at", table_name="desk_connection_events")
    op.drop_table("desk_uptime_weekly")
    op.drop_table("desk_uptime_daily")
