"""answer-time histograms in the daily analytics rollup

Revision ID: 0007_answer_histograms
Revises: 0006_analytics_rollups
Create Date: 2026-12-01 11:00:00

Adds the 24 histogram columns h00..h23 to ``consultation_stats_daily`` and empties the
rollups (they are recounted, with histograms, on the next report).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_answer_histograms"
down_revision = "0006_analytics_rollups"
branch_labels = None
depends_on = None

_BUCKETS = tuple(f"h{i:02d}" for i in range(24))


def upgrade() -> None:
    for table in ("consultation_stats_hourly", "consultation_stats_daily", "analytics_rollup_state"):
        op.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names
    with op.batch_alter_table("consultation_stats_daily") as batch:
        for name in _BUCKETS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("consultation_stats_daily") as batch:
        for name in _BUCKETS:
            batch.drop_column(name)
