"""The faculty aggregate and its desk unit."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class FacultyStatus(StrEnum):
    """What the kiosk shows for a faculty member (contract 1.4 values)."""

    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"
    OFFLINE = "offline"


class Faculty(Base):
    """A faculty member and what is known of their desk.

    ``status`` is the presence the desk last reported (or offline); ``desk_online``
    is liveness (contract section 3). They are two separate facts.
    """

    __tablename__ = "faculty"
    __table_args__ = (
        CheckConstraint("status IN ('available', 'busy', 'away', 'offline')", name="status_valid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    department: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str | None] = mapped_column(String(254), unique=True, default=None)
    ble_id: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default=FacultyStatus.OFFLINE.value)
    desk_online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[datetime | None] = mapped_column(default=None)
    status_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set by hand in the web dashboard ("available" / "away") for when the desk is offline
    # or missing; an online desk's own presence always wins (docs/web.md).
    manual_status: Mapped[str | None] = mapped_column(String(16), default=None)
    manual_status_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def is_available(self) -> bool:
        """True when a student may send this faculty member a request now.

        An online desk's presence decides; with the desk offline, the availability
        the faculty member set by hand in the web dashboard (they answer there).
        """
        if self.desk_online:
            return self.status == FacultyStatus.AVAILABLE
        return self.manual_status == FacultyStatus.AVAILABLE

    def __repr__(self) -> str:
        return f"Faculty(id={self.id!r}, status={self.status!r}, desk_online={self.desk_online!r})"


class DeskUnit(Base):
    """Broker credentials and the last diagnostics of one faculty member's desk unit."""

    __tablename__ = "desk_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    faculty_id: Mapped[int] = mapped_column(
        ForeignKey("faculty.id", ondelete="CASCADE"), unique=True
    )
    mqtt_username: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    last_heartbeat: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    last_diagnostics_at: Mapped[datetime | None] = mapped_column(default=None)
    last_diagnostics: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
