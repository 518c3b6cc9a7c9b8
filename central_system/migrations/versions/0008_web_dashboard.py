"""web dashboard: faculty accounts, browser sessions, invitations, manual availability

Revision ID: 0008_web_dashboard
Revises: 0007_answer_histograms
Create Date: 2026-12-01 11:00:00

An account (table ``admins``) gets a ``role`` (``admin`` or ``faculty``) and, for a
faculty account, the faculty row it belongs to. Browser sessions and one-time
invitations keep only SHA-256 hashes of their secrets. A faculty member's hand-set
availability (``manual_status``) is for when their desk is offline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import central_system.models.base

revision = "0008_web_dashboard"
down_revision = "0007_answer_histograms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = central_system.models.base.UTCDateTime(timezone=True)
    with op.batch_alter_table("admins", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), server_default="admin", nullable=False)
        )
        batch_op.add_column(sa.Column("faculty_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_admins_faculty_id_faculty"),
            "faculty",
            ["faculty_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_unique_constraint(op.f("uq_admins_faculty_id"), ["faculty_id"])
    with op.batch_alter_table("faculty", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manual_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("manual_status_at", utc, nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("expires_at", utc, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["admins.id"],
            name=op.f("fk_web_sessions_account_id_admins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    op.create_index("ix_web_sessions_expires_at", "web_sessions", ["expires_at"], unique=False)
    op.create_table(
        "account_invites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("faculty_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("expires_at", utc, nullable=False),
        sa.Column("used_at", utc, nullable=True),
        sa.ForeignKeyConstraint(
            ["faculty_id"],
            ["faculty.id"],
            name=op.f("fk_account_invites_faculty_id_faculty"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_invites")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_invites_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("account_invites")
    op.drop_index("ix_web_sessions_expires_at", table_name="web_sessions")
    op.drop_table("web_sessions")
    with op.batch_alter_table("faculty", schema=None) as batch_op:
        batch_op.drop_column("manual_status_at")
        batch_op.drop_column("manual_status")
    with op.batch_alter_table("admins", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_admins_faculty_id"), type_="unique")
        batch_op.drop_constraint(op.f("fk_admins_faculty_id_faculty"), type_="foreignkey")
        batch_op.drop_column("faculty_id")
        batch_op.drop_column("role")
