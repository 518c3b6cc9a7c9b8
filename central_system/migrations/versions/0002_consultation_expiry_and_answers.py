"""consultation expiry, first-answer times, queue and analytics indexes

Revision ID: 0002_expiry_answers
Revises: 0001
Create Date: 2026-12-01 10:30:00

Adds the ``expired`` status (issue 12), ``expired_at``, ``answered_at`` and
``answer_s`` (the desk's first answer and how long it took), and the indexes the
queue position, the expiry sweep and the analytics read. Existing answered rows get
``answered_at``/``answer_s`` from their accepted/busy/declined times.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central_system.models.base

revision = "0002_expiry_answers"
down_revision = "0001"
branch_labels = None
depends_on = None

_OLD_STATUSES = "status IN ('pending', 'accepted', 'busy', 'declined', 'completed', 'cancelled')"
_NEW_STATUSES = (
    "status IN ('pending', 'accepted', 'busy', 'declined', 'completed', 'cancelled', 'expired')"
)


def upgrade() -> None:
    utc = central_system.models.base.UTCDateTime(timezone=True)
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expired_at", utc, nullable=True))
        batch_op.add_column(sa.Column("answered_at", utc, nullable=True))
        batch_op.add_column(sa.Column("answer_s", sa.Float(), nullable=True))
        batch_op.drop_constraint(op.f("ck_consultations_status_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_consultations_status_valid"), _NEW_STATUSES)
        batch_op.create_index(
            "ix_consultations_status_faculty_created",
            ["status", "faculty_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_consultations_faculty_answered", ["faculty_id", "answered_at"], unique=False
        )
        batch_op.create_index(
            "ix_consultations_created",
            ["created_at"],
            unique=False,
            postgresql_include=["faculty_id", "status", "answer_s"],
        )
    first = "COALESCE(accepted_at, busy_at, declined_at)"
    if op.get_bind().dialect.name == "postgresql":
        seconds = f"EXTRACT(EPOCH FROM ({first} - created_at))"
    else:
        seconds = f"(julianday({first}) - julianday(created_at)) * 86400.0"
    op.execute(
        f"UPDATE consultations SET answered_at = {first}, answer_s = {seconds} "  # noqa: S608 - constants
        f"WHERE {first} IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("UPDATE consultations SET status = 'cancelled' WHERE status = 'expired'")
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_index("ix_consultations_created")
        batch_op.drop_index("ix_consultations_faculty_answered")
        batch_op.drop_index("ix_consultations_status_faculty_created")
        batch_op.drop_constraint(op.f("ck_consultations_status_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_consultations_status_valid"), _OLD_STATUSES)
        batch_op.drop_column("answer_s")
        batch_op.drop_column("answered_at")
        batch_op.drop_column("expired_at")
