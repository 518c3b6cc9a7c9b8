"""answer-time histogram in the hourly analytics rollup

Revision ID: 0011_hourly_answer_histogram
Revises: 0010_desk_connection_history
Create Date: 2026-12-01 14:00:00

Adds the 24 histogram columns h00..h23 and ``answer_s_sum`` to
``consultation_stats_hourly`` (the overall percentiles and the ``/metrics`` histogram are
read from it instead of every answered consultation) and empties the rollups: the next
report or scrape recounts them, hourly histograms included.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_hourly_answer_histogram"
down_revision = "0010_desk_connection_history"
branch_labels = None
depends_on = None

_BUCKETS = tuple(f"h{i:02d}" for i in range(24))
_ROLLUPS = (
    "consultation_stats_hourly",
    "consultation_stats_daily",
    "consultation_stats_weekly",
    "analytics_rollup_state",
)


def upgrade() -> None:
    for table in _ROLLUPS:
        op.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names
    with op.batch_alter_table("consultation_stats_hourly") as batch:
        for name in _BUCKETS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("answer_s_sum", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("consultation_stats_hourly") as batch:
        batch.drop_column("answer_s_sum")
        for name in _BUCKETS:
            batch.drop_column(name)
