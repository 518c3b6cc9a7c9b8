"""index the desk uptime rollups by day and by week

Revision ID: 0013_uptime_rollup_day_index
Revises: 0012_desk_uptime_rollups
Create Date: 2026-12-01 14:20:00

The uptime reports read one day's (or a few days', weeks') rows of every desk; the primary
keys start with ``faculty_id``, so PostgreSQL scanned the whole rollup (20-40 ms at
2,000 desks x 120 days, docs/performance.md). Issue 12.
"""

from __future__ import annotations

from alembic import op

revision = "0013_uptime_rollup_day_index"
down_revision = "0012_desk_uptime_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_desk_uptime_daily_day", "desk_uptime_daily", ["day"], unique=False)
    op.create_index("ix_desk_uptime_weekly_week", "desk_uptime_weekly", ["week"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_desk_uptime_weekly_week", table_name="desk_uptime_weekly")
    op.drop_index("ix_desk_uptime_daily_day", table_name="desk_uptime_daily")
