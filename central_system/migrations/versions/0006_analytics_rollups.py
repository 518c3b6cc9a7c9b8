"""analytics rollups: consultation counts per UTC hour and per UTC day and faculty member

Revision ID: 0006_analytics_rollups
Revises: 0005_legacy_desk_login
Create Date: 2026-12-01 10:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central_system.models.base

revision = "0006_analytics_rollups"
down_revision = "0005_legacy_desk_login"
branch_labels = None
depends_on = None

_HOURLY = ("requests", "answered", "pending", "accepted", "busy", "declined", "completed",
           "cancelled", "expired")
_DAILY = ("requests", "answered", "expired", "cancelled")


def upgrade() -> None:
    utc = central_system.models.base.UTCDateTime(timezone=True)
    op.create_table(
        "consultation_stats_hourly",
        sa.Column("hour", utc, nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _HOURLY),
        sa.PrimaryKeyConstraint("hour", name=op.f("pk_consultation_stats_hourly")),
    )
    op.create_table(
        "consultation_stats_daily",
        sa.Column("day", utc, nullable=False),
        sa.Column("faculty_id", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _DAILY),
        sa.PrimaryKeyConstraint("day", "faculty_id", name=op.f("pk_consultation_stats_daily")),
    )
    op.create_table(
        "analytics_rollup_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("until", utc, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_analytics_rollup_state")),
    )


def downgrade() -> None:
    op.drop_table("analytics_rollup_state")
    op.drop_table("consultation_stats_daily")
    op.drop_table("consultation_stats_hourly")
