"""Who is looking at a page, as FastAPI dependencies: ``WebCtx``, ``User``, ``Admin``, ``FacultyUser``.

A page declares the role it needs; these check it on the server before the page
runs (a faculty member asking for an administrator's page gets 403, a signed-out
browser is sent to the login page). ``CheckedForm`` reads a POSTed form and
refuses it (403, audited) unless it carries the session's CSRF token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from ...controllers.kiosk_facade import KioskBackend
from ...controllers.web_accounts import WebAccounts
from ..central import CentralServer
from .live import WebLive
from .security import PRE_COOKIE, SESSION_COOKIE, WebSessions, WebUser, csrf_ok

TEMPLATES: Final = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


class WebError(Exception):
    """A page that cannot be shown: rendered as an error page with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass
class WebContext:
    """What the pages of the active system use, built once per active system."""

    server: CentralServer
    backend: KioskBackend
    db: sessionmaker[Session]
    sessions: WebSessions
    accounts: WebAccounts
    live: WebLive

    def controller(self, name: str) -> Any:
        """One of the active system's controllers (the same objects the API calls)."""
        return self.backend._controller(name)

    def audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        success: bool = True,
        details: dict[str, object] | None = None,
    ) -> None:
        """One audit-log row through the admin controller."""
        self.controller("admin").audit(actor, action, target, success, details)


def web_context(request: Request) -> WebContext:
    """The active system's web context; a 503 page while this server is not active."""
    server: CentralServer = request.app.state.server
    backend, system = server.backend, server.system
    if backend is None or system is None or server.role != "active":
        raise WebError(503, f"This server is {server.role}; open the active server's address.")
    cached: WebContext | None = getattr(request.app.state, "web_context", None)
    if cached is None or cached.backend is not backend:
        db = sessionmaker(bind=system.engine, expire_on_commit=False)
        live: WebLive = request.app.state.web_live
        cached = WebContext(
            server,
            backend,
            db,
            WebSessions(db),
            WebAccounts(db, admin=backend._controller("admin")),
            live,
        )
        request.app.state.web_context = cached
    return cached


WebCtx = Annotated[WebContext, Depends(web_context)]


def optional_user(request: Request, ctx: WebCtx) -> WebUser | None:
    """The signed-in person, or None."""
    return ctx.sessions.resolve(request.cookies.get(SESSION_COOKIE))


def current_user(request: Request, ctx: WebCtx) -> WebUser:
    """The signed-in person; otherwise off to the login page."""
    user = ctx.sessions.resolve(request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise LoginRequired(request.url.path)
    return user


User = Annotated[WebUser, Depends(current_user)]


def _refuse(ctx: WebContext, user: WebUser, request: Request, wanted: str) -> WebError:
    ctx.audit(
        user.actor,
        "web.forbidden",
        f"{request.method} {request.url.path}"[:200],
        False,
        {"reason": f"needs {wanted}"},
    )
    return WebError(403, "This page is not for your account.")


def admin_user(request: Request, ctx: WebCtx, user: User) -> WebUser:
    """An administrator (a faculty account gets 403, audited)."""
    if not user.is_admin:
        raise _refuse(ctx, user, request, "an administrator")
    return user


def faculty_user(request: Request, ctx: WebCtx, user: User) -> WebUser:
    """A faculty member's account (an administrator gets 403: they have no queue)."""
    if user.role != "faculty" or user.faculty_id is None:
        raise _refuse(ctx, user, request, "a faculty account")
    return user


AdminUser = Annotated[WebUser, Depends(admin_user)]
FacultyUser = Annotated[WebUser, Depends(faculty_user)]


async def checked_form(request: Request) -> FormData:
    """The POSTed form, only with the right CSRF token (else 403, audited)."""
    form = await request.form(max_files=0, max_fields=50)
    session_token = request.cookies.get(SESSION_COOKIE)
    secret = session_token or request.cookies.get(PRE_COOKIE)
    if not csrf_ok(secret, form.get("csrf")):
        ctx = web_context(request)
        user = await run_in_threadpool(ctx.sessions.resolve, session_token)
        actor = user.actor if user is not None else "web"
        await run_in_threadpool(
            ctx.audit, actor, "web.csrf_refused", f"POST {request.url.path}"[:200], False
        )
        raise WebError(
            403, "This form has expired or did not come from this site; reload the page."
        )
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


def field(form: FormData, name: str, limit: int = 2000) -> str:
    """A text field of a form, trimmed to ``limit`` characters ("" when absent or a file)."""
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def login_redirect(next_path: str) -> str:
    """The login page's address that comes back to ``next_path`` afterwards."""
    return "/web/login?next=" + quote(next_path, safe="/")


def render(
    request: Request,
    name: str,
    user: WebUser | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A page from its template, with the person and their CSRF token."""
    csrf = user.csrf if user is not None else context.pop("csrf", "")
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {"user": user, "csrf": csrf, **context},
        status_code=status_code,
    )


def loop() -> asyncio.AbstractEventLoop:
    """The running event loop (live updates hop onto it)."""
    return asyncio.get_running_loop()
