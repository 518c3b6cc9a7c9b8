"""Signing in and out, setting a password from an invitation, changing one's password."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from ...controllers.admin_controller import ROLE_ADMIN, ROLE_FACULTY, AdminError
from .deps import CheckedForm, User, WebCtx, field, optional_user, render
from .security import PRE_COOKIE, SESSION_COOKIE, SESSION_TTL, csrf_for, is_https

router = APIRouter()


def _home(role: str) -> str:
    return "/web/admin" if role == ROLE_ADMIN else "/web/faculty"


def _safe_next(next_path: str | None) -> str | None:
    # Only our own pages: never an absolute URL or //host (an open redirect).
    if next_path and next_path.startswith("/web/") and not next_path.startswith("//"):
        return next_path[:200]
    return None


def _pre_form(request: Request, page: str, status_code: int = 200, **context: object) -> Response:
    """A signed-out form (login, invitation) with a pre-session cookie for its CSRF token."""
    pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(32)
    response = render(request, page, None, status_code, csrf=csrf_for(pre), **context)
    response.set_cookie(
        PRE_COOKIE, pre, httponly=True, samesite="strict", secure=is_https(request), path="/web"
    )
    return response


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """The site's front page is the dashboard."""
    return RedirectResponse("/web/", status_code=303)


@router.get("/web/", include_in_schema=False)
def home(request: Request, ctx: WebCtx) -> Response:
    """Signed in: one's own home page; otherwise the login page."""
    user = optional_user(request, ctx)
    if user is None:
        return RedirectResponse("/web/login", status_code=303)
    return RedirectResponse(_home(user.role), status_code=303)


@router.get("/web/login", include_in_schema=False)
def login_page(
    request: Request, ctx: WebCtx, next: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    """The sign-in form."""
    return _pre_form(request, "login.html", next=_safe_next(next) or "")


@router.post("/web/login", include_in_schema=False)
def login(request: Request, ctx: WebCtx, form: CheckedForm) -> Response:
    """Check the password (argon2id, lockout, audited) and open a session."""
    username = field(form, "username", 64)
    password = field(form, "password", 1024)
    result = ctx.controller("admin").authenticate(
        username, password, roles=(ROLE_ADMIN, ROLE_FACULTY)
    )
    if not result:
        return _pre_form(
            request,
            "login.html",
            401,
            error=result.message,
            username=username[:64],
            next=_safe_next(field(form, "next", 200)) or "",
        )
    token = ctx.sessions.open(result.admin_id)
    target = (
        "/web/password"
        if result.must_change_password
        else (_safe_next(field(form, "next", 200)) or _home(result.role))
    )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=is_https(request),
        path="/",
    )
    response.delete_cookie(PRE_COOKIE, path="/web")
    return response


@router.post("/web/logout", include_in_schema=False)
def logout(request: Request, ctx: WebCtx, user: User, form: CheckedForm) -> Response:
    """End this session (audited); its open pages' live streams end too."""
    ctx.sessions.close(user)
    ctx.live.end_streams_of(user.stream_key)
    ctx.audit(user.actor, "web.logout", user.username)
    response = RedirectResponse("/web/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/web/invite", include_in_schema=False)
def invite_page(
    request: Request, ctx: WebCtx, code: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    """Choose a password with an invitation (the link's code, or one typed in)."""
    invite = ctx.accounts.pending_invite(code) if code else None
    return _pre_form(
        request,
        "invite.html",
        code=code,
        username=invite.username if invite else "",
        error="" if invite or not code else "This invitation is invalid, used or expired.",
    )


@router.post("/web/invite", include_in_schema=False)
def accept_invite(request: Request, ctx: WebCtx, form: CheckedForm) -> Response:
    """Set the account's password; then sign in with it."""
    code = field(form, "code", 200).strip()
    password = field(form, "password", 1024)
    if password != field(form, "confirm", 1024):
        return _pre_form(request, "invite.html", 400, code=code, error="The passwords differ.")
    try:
        account = ctx.accounts.accept(code, password)
    except AdminError as err:
        return _pre_form(request, "invite.html", 400, code=code, error=str(err))
    return _pre_form(
        request,
        "login.html",
        notice="Password set. Sign in now.",
        username=account.username,
        next="",
    )


@router.get("/web/password", include_in_schema=False)
def password_page(request: Request, user: User) -> Response:
    """Change one's own password."""
    return render(request, "password.html", user)


@router.post("/web/password", include_in_schema=False)
def change_password(request: Request, ctx: WebCtx, user: User, form: CheckedForm) -> Response:
    """Replace one's password (the current one confirms it; the same policy as the kiosk)."""
    new = field(form, "new_password", 1024)
    if new != field(form, "confirm", 1024):
        return render(request, "password.html", user, 400, error="The new passwords differ.")
    try:
        ctx.controller("admin").change_password(
            user.username, field(form, "current_password", 1024), new
        )
    except AdminError as err:
        return render(request, "password.html", user, 400, error=str(err))
    return render(request, "password.html", user, notice="Password changed.")
