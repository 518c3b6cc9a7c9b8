"""legacy import: provenance table, consultations.status_note

Revision ID: 0003_legacy_import
Revises: 0002_expiry_answers
Create Date: 2026-12-01 10:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central_system.models.base

revision = "0003_legacy_import"
down_revision = "0002_expiry_answers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legacy_import_map",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("legacy_id", sa.Integer(), nullable=False),
        sa.Column("new_id", sa.Integer(), nullable=True),
        sa.Column(
            "imported_at", central_system.models.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("kind", "legacy_id", name=op.f("pk_legacy_import_map")),
    )
    with op.batch_alter_table("consultations") as batch:
        batch.add_column(sa.Column("status_note", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consultations") as batch:
        batch.drop_column("status_note")
    op.drop_table("legacy_import_map")
