"""Administrator accounts, authentication and the audit log.

Passwords are argon2id hashes (argon2-cffi). There is no default account: the
first administrator is created on first run (``create_first_admin``). Five
failed logins within 15 minutes lock an account for 15 minutes, and the lock is
enforced even when the right password is then given. Every login attempt and
every administrative action is written to the audit log.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from ..db import get_db, unit_of_work
from ..models import Admin, AuditLog, utcnow

logger = logging.getLogger(__name__)

MAX_FAILURES: Final = 5
FAILURE_WINDOW: Final = timedelta(minutes=15)
LOCKOUT_DURATION: Final = timedelta(minutes=15)
MIN_PASSWORD_LENGTH: Final = 12
MAX_PASSWORD_LENGTH: Final = 256
_USERNAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
_DETAILS_MAX_CHARS: Final = 2000
# An account's role: an administrator, or a faculty member's web login (tied to a faculty row).
ROLE_ADMIN: Final = "admin"
ROLE_FACULTY: Final = "faculty"

# A small deny-list: the passwords every guessing attack tries first. Compared
# case-insensitively after removing trailing digits and punctuation, so
# "Password2024!" is refused too.
COMMON_PASSWORDS: Final = frozenset(
    {
        "password",
        "passw0rd",
        "p@ssw0rd",
        "p@ssword",
        "123456789012",
        "1234567890",
        "qwertyuiop",
        "qwerty",
        "qwertyuiop[]",
        "letmein",
        "welcome",
        "iloveyou",
        "admin",
        "administrator",
        "changeme",
        "consultease",
        "abc123",
        "monkey",
        "dragon",
        "football",
        "baseball",
        "sunshine",
        "princess",
        "trustno1",
        "superman",
        "master",
        "qazwsxedc",
        "zaq12wsx",
        "1q2w3e4r5t6y",
        "aaaaaaaaaaaa",
        "secret",
        "default",
        "kiosk",
        "raspberry",
        "student",
        "faculty",
    }
)

SessionFactory = Callable[[], Session]


# --------------------------------------------------------------------------- errors


class AdminError(ValueError):
    """Base class of every admin error; the message is meant to be shown to the user."""


class PasswordPolicyError(AdminError):
    """The new password does not meet the password policy."""


class InvalidUsernameError(AdminError):
    """The username is malformed."""


class AdminExistsError(AdminError):
    """An administrator with that username (or, for the first-admin setup, any administrator) exists."""


class AdminNotFoundError(AdminError):
    """No administrator has that username."""


class LastAdminError(AdminError):
    """The operation would leave no active administrator."""


class WrongPasswordError(AdminError):
    """The current password given to confirm a change is wrong."""


class AccountLockedError(AdminError):
    """The account is locked after too many failed logins."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of ``authenticate``: truthy on success. ``message`` is safe to show."""

    success: bool
    message: str
    username: str | None = None
    admin_id: int | None = None
    must_change_password: bool = False
    locked_until: datetime | None = None
    role: str = ROLE_ADMIN
    faculty_id: int | None = None

    def __bool__(self) -> bool:
        return self.success


@dataclass(frozen=True, slots=True)
class AdminInfo:
    """A detached, read-only view of an administrator (no hash)."""

    id: int
    username: str
    is_active: bool
    must_change_password: bool
    failed_attempts: int
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A detached, read-only audit log row."""

    id: int
    created_at: datetime
    actor: str
    action: str
    target: str | None
    success: bool
    details: dict[str, object] | None


# --------------------------------------------------------------------------- policy


def validate_username(username: Any) -> str:
    """Return the trimmed username or raise :class:`InvalidUsernameError`."""
    if not isinstance(username, str):
        raise InvalidUsernameError("The username must be text.")
    name = username.strip()
    if not _USERNAME_RE.match(name):
        raise InvalidUsernameError(
            "The username must be 3 to 64 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def check_password_policy(password: Any, username: str | None = None) -> None:
    """Raise :class:`PasswordPolicyError` with a clear message unless ``password`` is acceptable."""
    if not isinstance(password, str):
        raise PasswordPolicyError("The password must be text.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"The password must be at least {MIN_PASSWORD_LENGTH} characters long."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"The password must be at most {MAX_PASSWORD_LENGTH} characters long."
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise PasswordPolicyError("The password must not contain control characters.")
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if classes < 2:
        raise PasswordPolicyError(
            "The password must mix at least two kinds of characters "
            "(lower case, upper case, digits, symbols)."
        )
    if len(set(password)) < 4:
        raise PasswordPolicyError("The password repeats too few different characters.")
    lowered = password.lower()
    if username and len(username) >= 3 and username.lower() in lowered:
        raise PasswordPolicyError("The password must not contain the username.")
    stem = lowered.rstrip("0123456789!@#$%^&*()_+-=.,?~ ")
    if lowered in COMMON_PASSWORDS or stem in COMMON_PASSWORDS:
        raise PasswordPolicyError(
            "This password is too common and would be guessed first; choose another."
        )


def _truncate_details(details: dict[str, object] | None) -> dict[str, object] | None:
    """Keep audit rows small: long values are cut (details never hold secrets)."""
    if not details:
        return None
    out: dict[str, object] = {}
    for key, value in list(details.items())[:20]:
        if isinstance(value, str) and len(value) > 200:
            value = value[:200] + "…"
        elif not isinstance(value, (str, int, float, bool, type(None))):
            value = repr(value)[:200]
        out[str(key)[:64]] = value
    return out


def _is_legacy_bcrypt(password_hash: str) -> bool:
    return password_hash[:4] in ("$2a$", "$2b$", "$2y$")


def _verify_legacy_bcrypt(password_hash: str, password: str) -> bool:
    """Check a bcrypt hash imported from the original ConsultEase (``consultease import-legacy``)."""
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password.encode("utf-8"), password_hash.encode("ascii")))
    except (ValueError, UnicodeEncodeError):
        return False


# --------------------------------------------------------------------------- controller


class AdminController:
    """Authentication, administrator accounts and the audit log. No Qt, no paho."""

    def __init__(
        self,
        db: Any = None,
        mqtt: Any = None,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session_factory = self._make_session_factory(db)
        self._mqtt = mqtt
        self._hasher = hasher or PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 profile
        self._clock = clock
        self._dummy_hash: str | None = None

    @staticmethod
    def _make_session_factory(db: Any) -> SessionFactory | Session | None:
        if db is None or isinstance(db, Session):
            return db
        if isinstance(db, Engine):
            return sessionmaker(bind=db, expire_on_commit=False)
        if callable(db):
            factory: SessionFactory = db
            return factory
        raise TypeError("db must be an Engine, a Session, a session factory or None")

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on error."""
        owned = self._session_factory
        if isinstance(owned, Session):
            # A caller-owned session: we commit our unit of work but never close it.
            with unit_of_work(owned, close=False) as session:
                yield session
            return
        with unit_of_work(owned() if owned is not None else get_db()) as session:
            yield session

    # ------------------------------------------------------------------ hashing

    def hash_password(self, password: str) -> str:
        """An argon2id hash of ``password``."""
        return self._hasher.hash(password)

    def _verify(self, password_hash: str, password: str) -> bool:
        if password_hash[:4] in ("$2a$", "$2b$", "$2y$"):
            return _verify_legacy_bcrypt(password_hash, password)
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _burn_dummy_verify(self, password: str) -> None:
        """Spend the time a real verification takes, so unknown usernames are not revealed by timing."""
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))
        self._verify(self._dummy_hash, password)

    # ------------------------------------------------------------------ audit

    def audit(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        success: bool = True,
        details: dict[str, object] | None = None,
        *,
        session: Session | None = None,
        admin_id: int | None = None,
    ) -> None:
        """Append one row to the audit log (in ``session`` when given, else in its own transaction)."""
        row = AuditLog(
            created_at=self._clock(),
            actor=str(actor)[:100],
            action=str(action)[:64],
            target=None if target is None else str(target)[:200],
            success=bool(success),
            details=_truncate_details(details),
            admin_id=admin_id,
        )
        if session is not None:
            session.add(row)
            return
        with self._session() as s:
            s.add(row)

    def list_audit(
        self,
        limit: int = 100,
        offset: int = 0,
        *,
        action: str | None = None,
        target: str | None = None,
    ) -> list[AuditEntry]:
        """Newest audit entries first; ``limit`` is capped at 1000."""
        if not isinstance(limit, int) or not isinstance(offset, int) or limit < 0 or offset < 0:
            raise AdminError("limit and offset must be non-negative integers.")
        stmt = select(AuditLog).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
        if action is not None:
            stmt = stmt.where(AuditLog.action == action)
        if target is not None:
            stmt = stmt.where(AuditLog.target == target)
        stmt = stmt.limit(min(limit, 1000)).offset(offset)
        with self._session() as s:
            return [
                AuditEntry(r.id, r.created_at, r.actor, r.action, r.target, r.success, r.details)
                for r in s.scalars(stmt)
            ]

    def count_audit(self) -> int:
        """How many audit entries exist."""
        with self._session() as s:
            return int(s.scalar(select(func.count(AuditLog.id))) or 0)

    # ------------------------------------------------------------------ first run

    def needs_first_admin(self) -> bool:
        """True while no administrator account exists (the first run)."""
        with self._session() as s:
            return not s.scalar(select(func.count(Admin.id)).where(Admin.role == ROLE_ADMIN))

    def create_first_admin(self, username: str, password: str) -> AdminInfo:
        """Create the first administrator; refused once any administrator exists."""
        name = validate_username(username)
        check_password_policy(password, name)
        password_hash = self.hash_password(password)
        with self._session() as s:
            if s.scalar(select(func.count(Admin.id)).where(Admin.role == ROLE_ADMIN)):
                self.audit("setup", "admin.create_first", name, False, {"reason": "admin exists"})
                raise AdminExistsError(
                    "An administrator already exists; sign in as an administrator to add accounts."
                )
            admin = Admin(username=name, password_hash=password_hash, created_at=self._clock())
            s.add(admin)
            s.flush()
            self.audit("setup", "admin.create_first", name, True, session=s, admin_id=admin.id)
            info = self._info(admin)
        logger.info("first administrator %r created", name)
        return info

    # ------------------------------------------------------------------ authentication

    def authenticate(
        self, username: str, password: str, roles: tuple[str, ...] = (ROLE_ADMIN,)
    ) -> AuthResult:
        """Check a login. Locked accounts are refused even with the right password.

        Only accounts whose role is in ``roles`` may sign in (the kiosk and the API take
        administrators only; the web dashboard takes faculty accounts too); any other
        account is answered exactly like an unknown username.
        """
        generic = "Wrong username or password."
        if not isinstance(username, str) or not isinstance(password, str):
            return AuthResult(False, generic)
        name = username.strip()[:64]
        if len(password) > MAX_PASSWORD_LENGTH * 4:
            # A huge input is not a password; refuse it before hashing megabytes.
            self._burn_dummy_verify("")
            self.audit(f"login:{name}", "login", name, False, {"reason": "oversized password"})
            return AuthResult(False, generic)
        now = self._clock()
        with self._session() as s:
            admin = s.scalar(select(Admin).where(Admin.username == name))
            if admin is None or admin.role not in roles:
                self._burn_dummy_verify(password)
                reason = "unknown user" if admin is None else f"{admin.role} account not allowed"
                self.audit(f"login:{name}", "login", name, False, {"reason": reason}, session=s)
                return AuthResult(False, generic)
            if admin.locked_until is not None and admin.locked_until > now:
                # Verify anyway so a locked account answers in the same time as any other.
                self._verify(admin.password_hash, password)
                self.audit(
                    f"login:{name}",
                    "login",
                    name,
                    False,
                    {"reason": "locked", "locked_until": admin.locked_until.isoformat()},
                    session=s,
                    admin_id=admin.id,
                )
                return AuthResult(
                    False,
                    f"Too many failed attempts; this account is locked until "
                    f"{admin.locked_until.astimezone():%H:%M}.",
                    locked_until=admin.locked_until,
                )
            ok = self._verify(admin.password_hash, password)
            if ok and not admin.is_active:
                self.audit(
                    f"login:{name}",
                    "login",
                    name,
                    False,
                    {"reason": "inactive"},
                    session=s,
                    admin_id=admin.id,
                )
                return AuthResult(False, "This account is deactivated.")
            if not ok:
                return self._record_failure(s, admin, now, generic)
            if _is_legacy_bcrypt(admin.password_hash):
                # Imported from the original ConsultEase (bcrypt): accepted once, replaced by
                # argon2id now, the only moment the plain password is known.
                admin.password_hash = self.hash_password(password)
                logger.info("imported bcrypt hash of %r replaced by argon2id", name)
            elif self._hasher.check_needs_rehash(admin.password_hash):
                # The hashing parameters changed since this hash was made: upgrade it now,
                # the only moment the plain password is known.
                admin.password_hash = self.hash_password(password)
                logger.info("password hash of %r upgraded to the current parameters", name)
            admin.failed_attempts = 0
            admin.locked_until = None
            admin.last_login_at = now
            self.audit(
                f"login:{name}",
                "login",
                name,
                True,
                {"must_change_password": admin.must_change_password},
                session=s,
                admin_id=admin.id,
            )
            message = (
                "Signed in. You must choose a new password now."
                if admin.must_change_password
                else "Signed in."
            )
            return AuthResult(
                True,
                message,
                admin.username,
                admin.id,
                admin.must_change_password,
                role=admin.role,
                faculty_id=admin.faculty_id,
            )

    def _record_failure(self, s: Session, admin: Admin, now: datetime, message: str) -> AuthResult:
        """Count a failed login; the fifth failure within the window locks the account."""
        since = now - FAILURE_WINDOW
        if admin.last_login_at is not None and admin.last_login_at > since:
            since = admin.last_login_at
        if admin.locked_until is not None and admin.locked_until > since:
            since = admin.locked_until  # failures before an expired lock no longer count
        recent = int(
            s.scalar(
                select(func.count(AuditLog.id)).where(
                    AuditLog.action == "login",
                    AuditLog.target == admin.username,
                    AuditLog.success.is_(False),
                    AuditLog.created_at > since,
                )
            )
            or 0
        )
        failures = recent + 1
        admin.failed_attempts = failures
        details: dict[str, object] = {"reason": "wrong password", "recent_failures": failures}
        if failures >= MAX_FAILURES:
            admin.locked_until = now + LOCKOUT_DURATION
            details["locked_until"] = admin.locked_until.isoformat()
            logger.warning(
                "administrator %r locked after %d failed logins", admin.username, failures
            )
        self.audit(
            f"login:{admin.username}",
            "login",
            admin.username,
            False,
            details,
            session=s,
            admin_id=admin.id,
        )
        if admin.locked_until is not None and admin.locked_until > now:
            return AuthResult(
                False,
                "Too many failed attempts; this account is locked for "
                f"{int(LOCKOUT_DURATION.total_seconds() // 60)} minutes.",
                locked_until=admin.locked_until,
            )
        return AuthResult(False, message)

    def must_change_password(self, username: str) -> bool:
        """True when the administrator must choose a new password before doing anything else."""
        with self._session() as s:
            admin = self._get(s, username)
            return admin.must_change_password

    def change_password(self, username: str, current_password: str, new_password: str) -> None:
        """Change one's own password (confirming the current one); clears the forced-change flag."""
        name = validate_username(username)
        with self._session() as s:
            admin = self._get(s, name)
            # A faculty member's web account changes its own password here too.
            actor = f"{'faculty' if admin.role == ROLE_FACULTY else 'admin'}:{name}"
            if admin.locked_until is not None and admin.locked_until > self._clock():
                self.audit(
                    actor,
                    "admin.change_password",
                    name,
                    False,
                    {"reason": "locked"},
                    session=s,
                    admin_id=admin.id,
                )
                raise AccountLockedError("This account is locked; try again later.")
            if not isinstance(current_password, str) or not self._verify(
                admin.password_hash, current_password
            ):
                self.audit(
                    actor,
                    "admin.change_password",
                    name,
                    False,
                    {"reason": "wrong current password"},
                    session=s,
                    admin_id=admin.id,
                )
                s.commit()
                raise WrongPasswordError("The current password is wrong.")
            check_password_policy(new_password, name)
            if new_password == current_password:
                raise PasswordPolicyError("The new password must differ from the current one.")
            admin.password_hash = self.hash_password(new_password)
            admin.must_change_password = False
            self.audit(actor, "admin.change_password", name, True, session=s, admin_id=admin.id)
        logger.info("administrator %r changed their password", name)

    # ------------------------------------------------------------------ accounts

    def list_admins(self) -> list[AdminInfo]:
        """Every administrator, by username."""
        with self._session() as s:
            rows = s.scalars(select(Admin).where(Admin.role == ROLE_ADMIN).order_by(Admin.username))
            return [self._info(a) for a in rows]

    def get_admin(self, username: str) -> AdminInfo | None:
        """The administrator with that username, or None."""
        if not isinstance(username, str):
            return None
        with self._session() as s:
            admin = s.scalar(select(Admin).where(Admin.username == username.strip()))
            return None if admin is None else self._info(admin)

    def create_admin(
        self,
        username: str,
        password: str,
        *,
        actor: str = "system",
        must_change_password: bool = True,
    ) -> AdminInfo:
        """Create another administrator; by default they must change the password at first login."""
        name = validate_username(username)
        check_password_policy(password, name)
        password_hash = self.hash_password(password)
        with self._session() as s:
            if s.scalar(select(Admin.id).where(Admin.username == name)) is not None:
                self.audit(actor, "admin.create", name, False, {"reason": "exists"}, session=s)
                s.commit()
                raise AdminExistsError(f"An administrator named {name!r} already exists.")
            admin = Admin(
                username=name,
                password_hash=password_hash,
                must_change_password=must_change_password,
                created_at=self._clock(),
            )
            s.add(admin)
            s.flush()
            self.audit(actor, "admin.create", name, True, session=s, admin_id=admin.id)
            return self._info(admin)

    def deactivate_admin(self, username: str, *, actor: str = "system") -> None:
        """Deactivate an administrator; the last active one cannot be deactivated."""
        self._set_active(username, False, actor)

    def activate_admin(self, username: str, *, actor: str = "system") -> None:
        """Re-activate a deactivated administrator."""
        self._set_active(username, True, actor)

    def _set_active(self, username: str, active: bool, actor: str) -> None:
        action = "admin.activate" if active else "admin.deactivate"
        with self._session() as s:
            admin = self._get(s, username)
            if not active and admin.is_active:
                others = s.scalar(
                    select(func.count(Admin.id)).where(
                        Admin.is_active.is_(True), Admin.id != admin.id, Admin.role == ROLE_ADMIN
                    )
                )
                if not others:
                    self.audit(
                        actor,
                        action,
                        admin.username,
                        False,
                        {"reason": "last active admin"},
                        session=s,
                    )
                    s.commit()
                    raise LastAdminError("The last active administrator cannot be deactivated.")
            admin.is_active = active
            self.audit(actor, action, admin.username, True, session=s, admin_id=admin.id)

    def reset_password(
        self, username: str, new_password: str | None = None, *, actor: str = "system"
    ) -> str:
        """Set a temporary password that must be changed at next login; returns it.

        Without ``new_password`` a random one is generated. The lock is lifted.
        """
        with self._session() as s:
            admin = self._get(s, username)
            password = new_password if new_password is not None else self.generate_password()
            check_password_policy(password, admin.username)
            admin.password_hash = self.hash_password(password)
            admin.must_change_password = True
            admin.failed_attempts = 0
            admin.locked_until = None
            self.audit(
                actor,
                "admin.reset_password",
                admin.username,
                True,
                {"generated": new_password is None},
                session=s,
                admin_id=admin.id,
            )
        return password

    def unlock_admin(self, username: str, *, actor: str = "system") -> None:
        """Lift a lockout before it expires."""
        with self._session() as s:
            admin = self._get(s, username)
            admin.locked_until = None
            admin.failed_attempts = 0
            self.audit(actor, "admin.unlock", admin.username, True, session=s, admin_id=admin.id)

    @staticmethod
    def generate_password() -> str:
        """A random password that meets the policy (for temporary passwords)."""
        for _ in range(100):
            candidate = secrets.token_urlsafe(15)
            classes = sum(
                (
                    any(c.islower() for c in candidate),
                    any(c.isupper() for c in candidate),
                    any(c.isdigit() for c in candidate),
                )
            )
            if classes >= 2:
                return candidate
        raise RuntimeError("could not generate a password")  # pragma: no cover - 100 misses

    # ------------------------------------------------------------------ desk units (admin screen)

    def provision_desk(self, faculty_id: int, *, actor: str = "system") -> Any:
        """Create MQTT credentials for faculty ``faculty_id``'s desk unit (shown once). Audited."""
        from ..services import provisioning

        return self._desk_action("provision", faculty_id, actor, provisioning.provision_desk)

    def rotate_desk(self, faculty_id: int, *, actor: str = "system") -> Any:
        """Give the desk unit a new password (the old one stops working on broker reload). Audited."""
        from ..services import provisioning

        return self._desk_action("rotate", faculty_id, actor, provisioning.rotate_desk)

    def revoke_desk(self, faculty_id: int, *, actor: str = "system") -> Any:
        """Revoke the desk unit's credentials. Audited."""
        from ..services import provisioning

        return self._desk_action("revoke", faculty_id, actor, provisioning.revoke_desk)

    def _desk_action(self, verb: str, faculty_id: int, actor: str, fn: Callable[..., Any]) -> Any:
        try:
            with self._session() as s:
                result = fn(s, faculty_id)
                self.audit(actor, f"desk.{verb}", f"faculty:{faculty_id}", True, session=s)
        except ValueError as err:
            self.audit(actor, f"desk.{verb}", f"faculty:{faculty_id}", False, {"reason": str(err)})
            raise
        return result

    def backup_database(self, dest_path: str, *, actor: str = "system") -> Any:
        """Back the database up to ``dest_path`` (see services.backup). Audited.

        The database backed up is the one this controller works on (not whatever the
        process's environment names: the demo and tests pass their settings explicitly).
        """
        from ..services import backup

        try:
            with self._session() as s:
                url = s.get_bind().engine.url.render_as_string(hide_password=False)
            result = backup.backup_database(dest_path, url=url)
        except Exception as err:
            self.audit(actor, "db.backup", str(dest_path), False, {"reason": str(err)})
            raise
        self.audit(actor, "db.backup", str(dest_path), True)
        return result

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _get(s: Session, username: str) -> Admin:
        if not isinstance(username, str):
            raise AdminNotFoundError("No such administrator.")
        admin = s.scalar(select(Admin).where(Admin.username == username.strip()))
        if admin is None:
            raise AdminNotFoundError(f"No administrator named {username.strip()[:64]!r}.")
        return admin

    @staticmethod
    def _info(a: Admin) -> AdminInfo:
        return AdminInfo(
            a.id,
            a.username,
            a.is_active,
            a.must_change_password,
            a.failed_attempts,
            a.locked_until,
            a.last_login_at,
            a.created_at,
        )
