"""Administrator accounts and the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class Admin(Base):
    """An account: an administrator, or (``role`` faculty) a faculty member's web login.

    Passwords are argon2id hashes; there is no default account. A faculty account is
    tied to one faculty row and is never an administrator (the kiosk and the API
    refuse it).
    """

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    role: Mapped[str] = mapped_column(String(16), default="admin", server_default="admin")
    faculty_id: Mapped[int | None] = mapped_column(
        ForeignKey("faculty.id", ondelete="CASCADE"), unique=True, default=None
    )


class AuditLog(Base):
    """One security-relevant event: a login attempt, an admin action, a rejected message."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))  # "admin:alice", "desk:3", "system"
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200), default=None)
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    details: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    admin_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), default=None
    )
    note: Mapped[str | None] = mapped_column(Text, default=None)
