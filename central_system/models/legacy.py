"""Provenance of rows imported from the original ConsultEase (``consultease import-legacy``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class LegacyImportMap(Base):
    """One imported legacy row: which table, its id in the original, its id here.

    A re-run skips every ``(kind, legacy_id)`` found here, so importing the same
    database twice adds nothing; natural keys (names, cards) may have changed
    since, the original's ids have not.
    """

    __tablename__ = "legacy_import_map"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # student, faculty, ...
    legacy_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    new_id: Mapped[int | None] = mapped_column(Integer, default=None)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class LegacyDeskLogin(Base):
    """The transition mode: desks still flashed with the original's shared broker login.

    At most one row (id 1). While it exists, ``consultease broker-config`` lets that
    login (or, with ``username`` None, anonymous clients) publish and read as *any*
    desk, and ``consultease doctor`` warns. See docs/migration.md for what it does not
    protect. ``password_hash`` is Mosquitto's PBKDF2 hash, never the password.
    """

    __tablename__ = "legacy_desk_login"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str | None] = mapped_column(String(64), default=None)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    enabled_at: Mapped[datetime] = mapped_column(default=utcnow)
