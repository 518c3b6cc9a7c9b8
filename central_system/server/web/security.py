"""The web dashboard's security: browser sessions, CSRF tokens, response headers, roles.

- A session is a 256-bit random cookie (``ce_session``: HttpOnly, SameSite=Strict,
  Secure when the request came over HTTPS); the database keeps its SHA-256 only.
- CSRF: every state-changing form carries ``csrf``. Signed in, it is an HMAC of the
  session token (nothing to store, different per session); signed out (the login
  and invitation forms) an HMAC of a random pre-session cookie. A POST without the
  right token is refused with 403 and audited.
- Every page is sent with a Content-Security-Policy without ``unsafe-inline``
  (scripts and styles come only from /web/static), no framing, no referrer (an
  invitation's code is in its URL) and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...models import Admin, WebSession, utcnow

logger = logging.getLogger(__name__)

SESSION_COOKIE: Final = "ce_session"
PRE_COOKIE: Final = "ce_pre"
SESSION_PREFIX: Final = "cew_"
SESSION_TTL: Final = timedelta(hours=8)
MAX_TOKEN_CHARS: Final = 128

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)

# An open page's session, checked again every keepalive (``WebSessions.still_allowed``):
# by primary key, and only the columns the check needs.
_SESSION_STANDING: Final = (
    select(WebSession.expires_at, Admin.is_active, Admin.role, Admin.faculty_id)
    .join(Admin, Admin.id == WebSession.account_id)
    .where(WebSession.id == bindparam("session_id"))
)


def token_hash(token: str) -> str:
    """The SHA-256 of a session token, as stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_for(secret: str) -> str:
    """The CSRF token that goes with a session (or pre-session) cookie."""
    return hmac.new(secret.encode(), b"consultease-csrf", hashlib.sha256).hexdigest()


def csrf_ok(secret: str | None, submitted: object) -> bool:
    """True when ``submitted`` is the CSRF token of ``secret`` (constant time)."""
    if not secret or not isinstance(submitted, str) or len(submitted) != 64:
        return False
    return hmac.compare_digest(csrf_for(secret), submitted)


@dataclass(frozen=True, slots=True)
class WebUser:
    """A signed-in person: an administrator, or a faculty member (``faculty_id`` set)."""

    account_id: int
    username: str
    role: str
    faculty_id: int | None
    session_id: int
    token: str

    @property
    def actor(self) -> str:
        """How the audit log names them (the same names as the kiosk and the API use)."""
        return f"{'faculty' if self.role == 'faculty' else 'admin'}:{self.username}"

    @property
    def is_admin(self) -> bool:
        """An administrator (never a faculty account)."""
        return self.role == "admin"

    @property
    def csrf(self) -> str:
        """This session's CSRF token."""
        return csrf_for(self.token)

    @property
    def stream_key(self) -> tuple[str, int]:
        """Whose its open page streams are (``WebLive.end_streams_of`` on sign-out)."""
        return ("web-session", self.session_id)


class WebSessions:
    """Opens, resolves and closes browser sessions in the database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def open(self, account_id: int) -> str:
        """A new session for an account that just signed in; its cookie value."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        with self._sessions() as s:
            s.execute(delete(WebSession).where(WebSession.expires_at < utcnow()))
            s.add(
                WebSession(
                    token_hash=token_hash(token),
                    account_id=account_id,
                    expires_at=utcnow() + SESSION_TTL,
                )
            )
            s.commit()
        return token

    def resolve(self, token: str | None) -> WebUser | None:
        """The signed-in person behind a cookie, or None (unknown, expired, deactivated)."""
        if not token or not token.startswith(SESSION_PREFIX) or len(token) > MAX_TOKEN_CHARS:
            return None
        with self._sessions() as s:
            row = s.execute(
                select(WebSession, Admin)
                .join(Admin, Admin.id == WebSession.account_id)
                .where(WebSession.token_hash == token_hash(token))
            ).first()
            if row is None:
                return None
            sess, account = row
            if sess.expires_at <= utcnow() or not account.is_active:
                return None
            if account.role == "faculty" and account.faculty_id is None:
                return None
            return WebUser(
                account.id, account.username, account.role, account.faculty_id, sess.id, token
            )

    def still_allowed(self, user: WebUser) -> bool:
        """Whether an open page's session still stands: neither signed out nor expired, its
        account active, with the role and faculty member it had. One indexed read; a
        database error answers True (the page is checked again at its next keepalive, and
        every other request checks too)."""
        try:
            with self._sessions() as s:
                row = s.execute(_SESSION_STANDING, {"session_id": user.session_id}).first()
        except SQLAlchemyError:
            logger.warning("could not check an open page's session; checking again later")
            return True
        return (
            row is not None
            and row.expires_at > utcnow()
            and bool(row.is_active)
            and row.role == user.role
            and row.faculty_id == user.faculty_id
        )

    def close(self, user: WebUser) -> None:
        """Sign out: the cookie stops working at once."""
        with self._sessions() as s:
            s.execute(delete(WebSession).where(WebSession.id == user.session_id))
            s.commit()

    def close_all(self, account_id: int) -> None:
        """End every session of an account (its password was reset)."""
        with self._sessions() as s:
            s.execute(delete(WebSession).where(WebSession.account_id == account_id))
            s.commit()


def is_https(request: Request) -> bool:
    """Whether the browser reached us over HTTPS (then cookies are Secure)."""
    return request.url.scheme == "https"


class SecurityHeaders:
    """ASGI middleware: the security headers on every /web response (and the / redirect)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/" or path.startswith("/web")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {name for name, _ in SECURITY_HEADERS}
                ]
                headers.extend(SECURITY_HEADERS)
                if not path.startswith("/web/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
