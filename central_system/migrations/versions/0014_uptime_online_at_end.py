"""desk uptime daily rollup: each desk's state at the end of the day

Revision ID: 0014_uptime_online_at_end
Revises: 0013_uptime_rollup_day_index
Create Date: 2026-12-01 14:30:00

Adds ``desk_uptime_daily.online_at_end``. An uptime report's raw tail after the rollup
starts from it instead of probing every desk's newest transition (issue 12,
docs/analytics.md). Existing rows get it from ``trail_run_s``: an outage still open at
24:00 has a positive length, an online desk none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_uptime_online_at_end"
down_revision = "0013_uptime_rollup_day_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("desk_uptime_daily") as batch:
        batch.add_column(
            sa.Column("online_at_end", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.execute("UPDATE desk_uptime_daily SET online_at_end = (trail_run_s <= 0)")


def downgrade() -> None:
    with op.batch_alter_table("desk_uptime_daily") as batch:
        batch.drop_column("online_at_end")
