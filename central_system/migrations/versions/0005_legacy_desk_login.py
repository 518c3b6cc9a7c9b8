"""legacy desk login: the broker transition mode for desks with the original's shared login

Revision ID: 0005_legacy_desk_login
Revises: 0004_kiosk_tokens
Create Date: 2026-12-01 10:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central_system.models.base

revision = "0005_legacy_desk_login"
down_revision = "0004_kiosk_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legacy_desk_login",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column(
            "enabled_at", central_system.models.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legacy_desk_login")),
    )


def downgrade() -> None:
    op.drop_table("legacy_desk_login")
