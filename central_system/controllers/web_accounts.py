"""Faculty members' web accounts: invitations (one-time set-password codes) and their accounts.

An administrator invites a faculty member: a random 256-bit code, valid for
``INVITE_TTL`` and usable once, of which only the SHA-256 is stored. Whoever holds
it chooses the account's password (the same policy and argon2id hashing as
administrators) and the account is tied to that faculty row with role
``faculty``. A new invitation for the same faculty member replaces older unused
ones; using one on an existing account sets a new password (a reset).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..models import AccountInvite, Admin, Faculty, utcnow
from .admin_controller import (
    ROLE_FACULTY,
    AdminController,
    AdminError,
    check_password_policy,
    validate_username,
)
from .base import DbSource, resolve_session_factory

logger = logging.getLogger(__name__)

INVITE_TTL: Final = timedelta(hours=72)
INVITE_PREFIX: Final = "cei_"
MAX_CODE_CHARS: Final = 128


class InviteError(AdminError):
    """An invitation that cannot be made or used; the message is meant to be shown."""


@dataclass(frozen=True, slots=True)
class Invitation:
    """A fresh invitation: the code is shown once and never stored."""

    code: str
    faculty_id: int
    username: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class FacultyAccount:
    """A faculty member's web account, read-only (no hash)."""

    id: int
    username: str
    faculty_id: int
    is_active: bool
    last_login_at: datetime | None
    locked_until: datetime | None


def code_hash(code: str) -> str:
    """The SHA-256 of an invitation code, as stored."""
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


class WebAccounts:
    """Invitations and faculty accounts. No Qt, no paho."""

    def __init__(self, db: DbSource = None, admin: AdminController | None = None) -> None:
        self._sessions = resolve_session_factory(db)
        self._admin = admin or AdminController(db=self._sessions)

    def invite(
        self, faculty_id: int, username: str, *, actor: str, ttl: timedelta = INVITE_TTL
    ) -> Invitation:
        """A one-time set-password code for ``faculty_id``'s account ``username``. Audited."""
        name = validate_username(username)
        code = INVITE_PREFIX + secrets.token_urlsafe(32)
        expires = utcnow() + ttl
        with self._sessions() as s:
            faculty = s.get(Faculty, faculty_id)
            if faculty is None:
                raise InviteError(f"No faculty member with id {faculty_id}.")
            taken = s.scalar(select(Admin).where(Admin.username == name))
            if taken is not None and taken.faculty_id != faculty_id:
                self._admin.audit(
                    actor,
                    "faculty.invite",
                    f"faculty:{faculty_id}",
                    False,
                    {"reason": "username taken", "username": name},
                    session=s,
                )
                s.commit()
                raise InviteError(f"The username {name!r} is already taken.")
            own = s.scalar(select(Admin).where(Admin.faculty_id == faculty_id))
            if own is not None and own.username != name:
                raise InviteError(
                    f"{faculty.name} already has the account {own.username!r}; invite that username "
                    "to set a new password."
                )
            # Older unused invitations for this faculty member stop working.
            s.execute(
                update(AccountInvite)
                .where(AccountInvite.faculty_id == faculty_id, AccountInvite.used_at.is_(None))
                .values(used_at=utcnow())
            )
            s.add(
                AccountInvite(
                    token_hash=code_hash(code),
                    faculty_id=faculty_id,
                    username=name,
                    created_by=actor[:100],
                    expires_at=expires,
                )
            )
            self._admin.audit(
                actor,
                "faculty.invite",
                f"faculty:{faculty_id}",
                True,
                {"username": name, "expires_at": expires.isoformat()},
                session=s,
            )
            s.commit()
        return Invitation(code, faculty_id, name, expires)

    def pending_invite(self, code: str) -> AccountInvite | None:
        """The usable invitation behind ``code`` (unused, unexpired), or None."""
        if not code.startswith(INVITE_PREFIX) or len(code) > MAX_CODE_CHARS:
            return None
        with self._sessions() as s:
            row = s.scalar(select(AccountInvite).where(AccountInvite.token_hash == code_hash(code)))
            if row is None or row.used_at is not None or row.expires_at <= utcnow():
                return None
            s.expunge(row)
            return row

    def accept(self, code: str, password: str) -> FacultyAccount:
        """Set the account's password with a valid invitation (used up). Audited."""
        invite = self.pending_invite(code)
        if invite is None:
            self._admin.audit("web", "faculty.accept_invite", None, False, {"reason": "invalid"})
            raise InviteError("This invitation is invalid, used or expired; ask for a new one.")
        check_password_policy(password, invite.username)
        password_hash = self._admin.hash_password(password)
        with self._sessions() as s:
            row = s.get(AccountInvite, invite.id, with_for_update=True)
            if row is None or row.used_at is not None:
                raise InviteError("This invitation was used meanwhile; ask for a new one.")
            row.used_at = utcnow()
            account = s.scalar(select(Admin).where(Admin.faculty_id == invite.faculty_id))
            if account is None:
                account = Admin(
                    username=invite.username,
                    password_hash=password_hash,
                    role=ROLE_FACULTY,
                    faculty_id=invite.faculty_id,
                )
                s.add(account)
            else:
                account.password_hash = password_hash
                account.failed_attempts = 0
                account.locked_until = None
                account.is_active = True
            account.must_change_password = False
            s.flush()
            self._admin.audit(
                f"faculty:{invite.username}",
                "faculty.accept_invite",
                f"faculty:{invite.faculty_id}",
                True,
                session=s,
                admin_id=account.id,
            )
            result = self._account(account)
            s.commit()
        logger.info("faculty account %r set its password from an invitation", invite.username)
        return result

    def account_of(self, faculty_id: int) -> FacultyAccount | None:
        """The web account of a faculty member, or None."""
        with self._sessions() as s:
            row = s.scalar(select(Admin).where(Admin.faculty_id == faculty_id))
            return None if row is None else self._account(row)

    def accounts(self) -> dict[int, FacultyAccount]:
        """Every faculty account by faculty id."""
        with self._sessions() as s:
            rows = s.scalars(select(Admin).where(Admin.role == ROLE_FACULTY))
            return {r.faculty_id: self._account(r) for r in rows if r.faculty_id is not None}

    @staticmethod
    def _account(row: Admin) -> FacultyAccount:
        assert row.faculty_id is not None
        return FacultyAccount(
            row.id, row.username, row.faculty_id, row.is_active, row.last_login_at, row.locked_until
        )


def suggested_username(session: Session, faculty: Faculty) -> str:
    """A username for a faculty member: the e-mail's local part, else their name, made valid."""
    base = (faculty.email or "").split("@")[0] or faculty.name
    cleaned = "".join(c if c.isalnum() or c in "._-" else "." for c in base.lower()).strip("._-")
    cleaned = (cleaned or "faculty")[:60]
    if len(cleaned) < 3:
        cleaned = f"faculty-{faculty.id}"
    return cleaned
