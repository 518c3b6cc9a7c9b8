"""desk connection history: one row per online/offline transition of a desk unit

Revision ID: 0010_desk_connection_history
Revises: 0009_weekly_rollup
Create Date: 2026-12-01 13:40:00

Adds ``desk_connection_events`` (issue 12, desk uptime and disconnections). The history
begins at the upgrade: every desk online then gets one row (reason ``upgrade``), so the
uptime reports do not count a desk that never drops as offline (docs/analytics.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import central_system.models.base

revision = "0010_desk_connection_history"
down_revision = "0009_weekly_rollup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = central_system.models.base.UTCDateTime(timezone=True)
    events = op.create_table(
        "desk_connection_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("faculty_id", sa.Integer(), nullable=False),
        sa.Column("at", utc, nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_connection_events")),
    )
    op.create_index(
        "ix_desk_connection_events_faculty_at",
        "desk_connection_events",
        ["faculty_id", "at"],
        unique=False,
    )
    assert events is not None
    faculty = sa.table(
        "faculty",
        sa.column("id", sa.Integer()),
        sa.column("desk_online", sa.Boolean()),
        sa.column("status", sa.String()),
    )
    now = sa.bindparam("now", datetime.now(UTC), type_=utc)
    op.get_bind().execute(
        events.insert().from_select(
            ["faculty_id", "at", "online", "reason"],
            sa.select(faculty.c.id, now, sa.true(), sa.literal("upgrade")).where(
                faculty.c.desk_online.is_(True), faculty.c.status != "offline"
            ),
        )
    )


def downgrade() -> None:
    op.drop_index("ix_desk_connection_events_faculty_at", table_name="desk_connection_events")
    op.drop_table("desk_connection_events")
