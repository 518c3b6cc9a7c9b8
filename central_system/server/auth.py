"""Who is calling: enrolled kiosks' tokens and administrators' API sessions.

Both are 256-bit random bearer tokens; the database keeps only their SHA-256
(a slow hash such as argon2 protects guessable passwords, and would cost tens of
milliseconds per request here for no gain). The prefix says which kind a token
is, so one lookup answers: ``cek_`` a kiosk, ``ces_`` an administrator session.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Select, bindparam, delete, select, true, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..controllers.base import audit
from ..models import Admin, AdminSessionToken, KioskToken, Student, utcnow

logger = logging.getLogger(__name__)

KIOSK_PREFIX: Final = "cek_"
ADMIN_PREFIX: Final = "ces_"
ADMIN_SESSION_TTL: Final = timedelta(hours=8)
# last_used_at is a write: at most one per kiosk this often (not one per request).
LAST_USED_EVERY_S: Final = 60.0
# A flood of refused calls must not fill the audit log: one row per actor and reason this often.
AUDIT_REFUSAL_EVERY_S: Final = 10.0
# A stolen kiosk token must not become a card-UID oracle: a kiosk whose calls meet more than
# settings.server_unknown_cards_per_minute different unknown cards in this window gets 429 on
# every card call (known cards too, or the 429s would tell unknown ones apart) until the
# window ends; audited once per window. A student tapping one unknown card again and again
# counts once.
UNKNOWN_CARD_WINDOW_S: Final = 60.0
UNKNOWN_CARDS_PER_WINDOW: Final = 20
TOO_MANY_UNKNOWN_CARDS: Final = (
    "Too many unknown cards were tapped at this kiosk. Please try again in a minute."
)
MAX_TOKEN_CHARS: Final = 128
KIOSK_NAME_CHARS: Final = 64


# The card holder's columns, as StudentView names them.
_STUDENT_COLUMNS: Final = (
    Student.id.label("id"),
    Student.name.label("name"),
    Student.student_id.label("student_id"),
    Student.department.label("department"),
    Student.rfid_uid.label("rfid_uid"),
)
# The kiosk's token and the tapped card in one indexed read (the card's columns are NULL for an
# unknown card): the kiosk's calls pay one round trip for both checks.
_KIOSK_AND_CARD: Final = (
    select(
        KioskToken.id.label("kiosk_id"),
        KioskToken.name.label("kiosk_name"),
        KioskToken.revoked_at,
        *_STUDENT_COLUMNS,
    )
    .select_from(KioskToken)
    .outerjoin(Student, Student.rfid_uid == bindparam("uid"))
    .where(KioskToken.token_hash == bindparam("digest"))
)
_STUDENT_BY_CARD: Final = select(*_STUDENT_COLUMNS).where(Student.rfid_uid == bindparam("uid"))
# An open event stream's token, checked again every keepalive (``still_allowed``).
_KIOSK_REVOKED: Final = select(KioskToken.revoked_at).where(
    KioskToken.token_hash == bindparam("digest")
)
_ADMIN_SESSION: Final = (
    select(AdminSessionToken.expires_at, Admin.is_active)
    .join(Admin, Admin.id == AdminSessionToken.admin_id)
    .where(AdminSessionToken.token_hash == bindparam("digest"))
)


class EnrollmentError(ValueError):
    """A kiosk name that is empty, too long, already enrolled or unknown."""


@dataclass(frozen=True, slots=True)
class KioskPrincipal:
    """An enrolled kiosk (or the kiosk that started a local server: ``id`` None)."""

    id: int | None
    name: str

    @property
    def actor(self) -> str:
        """How the audit log names it."""
        return f"kiosk:{self.name}"

    @property
    def stream_key(self) -> tuple[str, int | None]:
        """Whose its event streams are (``EventHub.end_streams_of`` on revoke)."""
        return ("kiosk", self.id)


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """A signed-in administrator."""

    id: int
    username: str
    session_id: int
    must_change_password: bool = False

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return f"admin:{self.username}"

    @property
    def stream_key(self) -> tuple[str, int]:
        """Whose its event streams are (``EventHub.end_streams_of`` on sign-out)."""
        return ("admin-session", self.session_id)


def token_hash(token: str) -> str:
    """The SHA-256 of a token, as stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token(prefix: str) -> str:
    """A fresh 256-bit bearer token with its kind's prefix."""
    return prefix + secrets.token_urlsafe(32)


def _valid_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > KIOSK_NAME_CHARS or not name.isprintable():
        raise EnrollmentError(
            f"A kiosk name is 1-{KIOSK_NAME_CHARS} printable characters, like lobby-1."
        )
    return name


def enroll_kiosk(session: Session, name: str, actor: str = "cli") -> str:
    """Enroll a kiosk and return its token (shown once; only its hash is stored). Audited."""
    name = _valid_name(name)
    existing = session.scalar(select(KioskToken).where(KioskToken.name == name))
    if existing is not None and existing.revoked_at is None:
        audit(session, actor, "kiosk.enroll", name, success=False, note="already enrolled")
        raise EnrollmentError(
            f"A kiosk named {name!r} is already enrolled; revoke it first to issue a new token."
        )
    token = new_token(KIOSK_PREFIX)
    if existing is not None:  # re-enrolling a revoked name: a new token, the same row
        existing.token_hash = token_hash(token)
        existing.revoked_at = None
        existing.created_at = utcnow()
        existing.last_used_at = None
    else:
        session.add(KioskToken(name=name, token_hash=token_hash(token)))
    audit(session, actor, "kiosk.enroll", name, success=True)
    return token


def revoke_kiosk(session: Session, name: str, actor: str = "cli") -> int:
    """Revoke a kiosk's token at once (its next call is refused); its id. Audited.

    A server that revokes ends the kiosk's open event streams itself once this is
    committed (``EventHub.end_streams_of(("kiosk", id))``); a revoke made elsewhere (the
    ``consultease kiosk revoke`` command) ends them at their next keepalive.
    """
    name = name.strip()
    row = session.scalar(select(KioskToken).where(KioskToken.name == name))
    if row is None or row.revoked_at is not None:
        audit(session, actor, "kiosk.revoke", name[:64], success=False, note="not enrolled")
        raise EnrollmentError(f"No enrolled kiosk named {name!r}.")
    row.revoked_at = utcnow()
    audit(session, actor, "kiosk.revoke", name, success=True)
    return row.id


def list_kiosks(session: Session) -> list[KioskToken]:
    """Every kiosk ever enrolled, by name."""
    return list(session.scalars(select(KioskToken).order_by(KioskToken.name)))


class Refused(Exception):
    """A token was refused; ``reason`` for the log, ``audit_actor`` when it is worth an audit row."""

    def __init__(self, reason: str, audit_actor: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.audit_actor = audit_actor


class WriteNeeded(Exception):
    """A check that may not write (the server's event loop) met a write it must make: the
    kiosk's ``last_used_at`` is due. Run the call where it may write."""


class Authenticator:
    """Resolves bearer tokens to principals, issues administrator sessions, audits refusals."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        local_kiosk_token: str | None = None,
        *,
        unknown_cards_per_window: int = UNKNOWN_CARDS_PER_WINDOW,
    ) -> None:
        self._sessions = session_factory
        # The kiosk that started this server as its child (``consultease run``) holds a
        # token it generated; it is never stored.
        self._local_hash = token_hash(local_kiosk_token) if local_kiosk_token else None
        self._lock = threading.Lock()
        self._last_used: dict[int, float] = {}
        # The statements of kiosk_and_card(card_read=...), by id(card_read).
        self._card_reads: dict[int, tuple[Select[Any], Select[Any]]] = {}
        self._last_audit: dict[tuple[str, str], float] = {}
        self.unknown_cards_per_window = unknown_cards_per_window  # 0: no limit
        # Per kiosk: when its window began and the unknown cards met in it; and the kiosks
        # whose card calls are refused, until when (empty nearly always: the normal path's
        # whole cost is one truthiness check).
        self._unknown_cards: dict[tuple[str, int | None], tuple[float, set[str]]] = {}
        self._card_calls_refused: dict[tuple[str, int | None], float] = {}

    # ------------------------------------------------------------------ kiosks

    def kiosk(self, token: str) -> KioskPrincipal:
        """The kiosk holding ``token``; raises :class:`Refused`."""
        with self._sessions() as s:
            principal, _ = self.kiosk_and_card(s.connection(), token, None)
            s.commit()
        return principal

    def kiosk_and_card(
        self,
        conn: Connection,
        token: str,
        card_uid: str | None,
        *,
        may_write: bool = True,
        card_read: Select[Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[KioskPrincipal, Any]:
        """The kiosk holding ``token`` and the student holding the card ``card_uid`` (a stored,
        normalised UID; None: no card), in one read on ``conn``; raises :class:`Refused`.

        Core, not the ORM, and one indexed read per call, so a token revoked by
        ``consultease kiosk revoke`` in another process is refused on its very next call.
        The student row (``id, name, student_id, department, rfid_uid``) is None for an
        unknown card. The caller commits (``last_used_at`` is written once a minute; with
        ``may_write`` False, :class:`WriteNeeded` is raised instead when that write is due).

        ``card_read`` (a read by the card's ``:uid``, with ``params``: a request's admission)
        takes the student row's place, in the same statement: its row is the answer's second
        half (None when its ``id`` is NULL), whatever else it selects with the student.
        """
        if not token.startswith(KIOSK_PREFIX) or len(token) > MAX_TOKEN_CHARS:
            raise Refused("not a kiosk token")
        digest = token_hash(token)
        if self._local_hash is not None and hmac.compare_digest(digest, self._local_hash):
            by_card = _STUDENT_BY_CARD if card_read is None else card_read
            student: Any = (
                conn.execute(by_card, {"uid": card_uid, **(params or {})}).first()
                if card_uid
                else None
            )
            if student is not None and student.id is None:
                student = None
            return KioskPrincipal(None, "local"), student
        statement = _KIOSK_AND_CARD if card_read is None else self._with_token(card_read)
        row = conn.execute(statement, {"digest": digest, "uid": card_uid, **(params or {})}).first()
        if row is None:
            raise Refused("unknown kiosk token")
        kiosk_id, name, revoked_at = row[0], row[1], row[2]
        if revoked_at is not None:
            raise Refused("revoked kiosk token", audit_actor=f"kiosk:{name}")
        if self._due(kiosk_id, mark=may_write):
            if not may_write:
                raise WriteNeeded
            conn.execute(
                update(KioskToken).where(KioskToken.id == kiosk_id).values(last_used_at=utcnow())
            )
        student = row if card_uid and row.id is not None else None
        return KioskPrincipal(kiosk_id, name), student

    def _with_token(self, card_read: Select[Any]) -> Select[Any]:
        """``card_read`` joined to the kiosk's token check, as :data:`_KIOSK_AND_CARD` joins
        the student: built once per ``card_read``."""
        cached = self._card_reads.get(id(card_read))
        if cached is not None and cached[0] is card_read:
            return cached[1]
        card = card_read.subquery("card")
        statement = (
            select(
                KioskToken.id.label("kiosk_id"),
                KioskToken.name.label("kiosk_name"),
                KioskToken.revoked_at,
                *card.c,
            )
            .select_from(KioskToken)
            .outerjoin(card, true())
            .where(KioskToken.token_hash == bindparam("digest"))
        )
        with self._lock:
            self._card_reads[id(card_read)] = (card_read, statement)
        return statement

    def _due(self, kiosk_id: int, *, mark: bool = True) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last_used.get(kiosk_id, -LAST_USED_EVERY_S) < LAST_USED_EVERY_S:
                return False
            if mark:
                self._last_used[kiosk_id] = now
            return True

    # ------------------------------------------------------------------ unknown cards

    def card_calls_refused(self, kiosk: KioskPrincipal) -> bool:
        """Whether ``kiosk``'s card calls get 429 now (too many unknown cards this window)."""
        if not self._card_calls_refused:
            return False
        until = self._card_calls_refused.get(kiosk.stream_key)
        if until is None:
            return False
        now = time.monotonic()
        if now < until:
            return True
        with self._lock:  # over: forget it (unless a new window was refused meanwhile)
            if self._card_calls_refused.get(kiosk.stream_key, now) <= now:
                self._card_calls_refused.pop(kiosk.stream_key, None)
        return False

    def unknown_card(
        self, kiosk: KioskPrincipal, uid: str, target: str, *, may_write: bool = True
    ) -> bool:
        """Count an unknown card ``uid`` met by a call of ``kiosk``; True when it is one too
        many: its card calls are refused until the window ends, and that is audited (once).

        With ``may_write`` False, :class:`WriteNeeded` is raised instead of refusing (the
        audit row is a write) and nothing is counted: the call is made again where it may.
        """
        limit = self.unknown_cards_per_window
        if limit <= 0:
            return False
        key = kiosk.stream_key
        now = time.monotonic()
        with self._lock:
            start, seen = self._unknown_cards.get(key, (now, set()))
            if now - start >= UNKNOWN_CARD_WINDOW_S:
                start, seen = now, set()
            if uid in seen or len(seen) < limit:
                seen.add(uid)
                self._unknown_cards[key] = (start, seen)
                return False
            if not may_write:
                raise WriteNeeded
            until = start + UNKNOWN_CARD_WINDOW_S
            self._card_calls_refused[key] = until
        self.audit_refusal(
            kiosk.actor,
            "api.rate_limited",
            target,
            f"more than {limit} unknown cards within {UNKNOWN_CARD_WINDOW_S:.0f} s; "
            f"its card calls are refused for {until - now:.0f} s",
        )
        return True

    # ------------------------------------------------------------------ administrators

    def open_admin_session(self, admin_id: int) -> tuple[str, datetime]:
        """A new API session for an administrator who just signed in: (token, expiry)."""
        token = new_token(ADMIN_PREFIX)
        expires = utcnow() + ADMIN_SESSION_TTL
        with self._sessions() as s:
            # Expired sessions go when a new one is opened: the table stays small.
            s.execute(delete(AdminSessionToken).where(AdminSessionToken.expires_at < utcnow()))
            s.add(
                AdminSessionToken(
                    token_hash=token_hash(token), admin_id=admin_id, expires_at=expires
                )
            )
            s.commit()
        return token, expires

    def admin(self, token: str) -> AdminPrincipal:
        """The administrator whose session ``token`` is; raises :class:`Refused`."""
        if not token.startswith(ADMIN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
            raise Refused("not an administrator session")
        with self._sessions() as s:
            row = s.execute(
                select(AdminSessionToken, Admin)
                .join(Admin, Admin.id == AdminSessionToken.admin_id)
                .where(AdminSessionToken.token_hash == token_hash(token))
            ).first()
            if row is None:
                raise Refused("unknown administrator session")
            sess, admin = row
            if sess.expires_at <= utcnow():
                raise Refused("expired administrator session")
            if not admin.is_active:
                raise Refused("deactivated administrator", audit_actor=f"admin:{admin.username}")
            return AdminPrincipal(admin.id, admin.username, sess.id, admin.must_change_password)

    # ------------------------------------------------------------------ open streams

    def still_allowed(self, token: str) -> bool:
        """Whether a token that opened an event stream may still use it: a kiosk's is not
        revoked, an administrator's session is neither signed out nor expired and its
        administrator still active. One indexed read; a database error answers True (the
        stream is checked again at its next keepalive, and every other call checks too)."""
        try:
            if token.startswith(KIOSK_PREFIX):
                digest = token_hash(token)
                if self._local_hash is not None and hmac.compare_digest(digest, self._local_hash):
                    return True
                with self._sessions() as s:
                    kiosk = s.execute(_KIOSK_REVOKED, {"digest": digest}).first()
                return kiosk is not None and kiosk.revoked_at is None
            with self._sessions() as s:
                admin = s.execute(_ADMIN_SESSION, {"digest": token_hash(token)}).first()
            return admin is not None and admin.expires_at > utcnow() and bool(admin.is_active)
        except SQLAlchemyError:
            logger.warning("could not check an event stream's token; checking again later")
            return True

    def close_admin_session(self, principal: AdminPrincipal) -> None:
        """Sign out: the session's token stops working at once."""
        with self._sessions() as s:
            s.execute(delete(AdminSessionToken).where(AdminSessionToken.id == principal.session_id))
            s.commit()

    # ------------------------------------------------------------------ audit

    def audit_refusal(self, actor: str, action: str, target: str, reason: str) -> None:
        """One audit row for a refused call (at most one per actor and action every few seconds)."""
        now = time.monotonic()
        key = (actor, action)
        with self._lock:
            if now - self._last_audit.get(key, -AUDIT_REFUSAL_EVERY_S) < AUDIT_REFUSAL_EVERY_S:
                return
            self._last_audit[key] = now
            if len(self._last_audit) > 10_000:  # bounded: forget the oldest half
                for old in sorted(self._last_audit, key=self._last_audit.__getitem__)[:5_000]:
                    del self._last_audit[old]
        try:
            with self._sessions() as s:
                audit(s, actor, action, target[:200], success=False, note=reason[:200])
                s.commit()
        except Exception:
            logger.exception("could not audit a refused call")
