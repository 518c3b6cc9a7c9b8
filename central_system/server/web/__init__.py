"""The web dashboard: server-rendered pages for administrators and faculty (docs/web.md).

Mounted in the API's app (same process, same accounts, same controllers):
``/web/...`` pages from Jinja2 templates, ``/web/static`` for the stylesheet and
the one small script (live updates), security headers on every page.
"""

from __future__ import annotations

import inspect
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .deps import TEMPLATES, LoginRequired, WebError, login_redirect
from .live import WebLive
from .security import SecurityHeaders

_HEADINGS = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Already answered",
    503: "Not here",
}


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else ""


TEMPLATES.env.filters["duration"] = _duration
TEMPLATES.env.filters["when"] = _when


async def _delegate(handler: Any, request: Request, exc: Exception) -> Response:
    """The API's own handler for ``exc`` (sync or async)."""
    result = handler(request, exc)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, Response)
    return result


def _is_page(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/web/") and not path.startswith("/web/static/")


def mount_web(app: FastAPI) -> None:
    """Add the dashboard's pages, static files, error pages and headers to ``app``."""
    from . import routes_admin, routes_auth, routes_faculty, routes_insight

    # Its keepalive (and session check) is the API stream's: settings.server_keepalive_s.
    app.state.web_live = WebLive(keepalive_s=app.state.server.settings.server_keepalive_s)
    app.mount(
        "/web/static",
        StaticFiles(directory=str(Path(__file__).with_name("static"))),
        name="web-static",
    )
    app.include_router(routes_auth.router)
    app.include_router(routes_faculty.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_insight.router)

    api_http_error = app.exception_handlers[StarletteHTTPException]
    api_invalid = app.exception_handlers[RequestValidationError]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A page that does not exist (or a wrong method) is an HTML page under /web;
        # the API keeps its JSON answers.
        if _is_page(request):
            return await web_error(request, WebError(exc.status_code, str(exc.detail)))
        return await _delegate(api_http_error, request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if _is_page(request):
            return await web_error(request, WebError(400, "That address has a bad value in it."))
        return await _delegate(api_invalid, request, exc)

    @app.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> Response:
        return TEMPLATES.TemplateResponse(
            request,
            "error.html",
            {
                "user": None,
                "csrf": "",
                "status": exc.status,
                "heading": _HEADINGS.get(exc.status, "Something went wrong"),
                "message": exc.message,
            },
            status_code=exc.status,
        )

    @app.exception_handler(LoginRequired)
    async def login_required(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_redirect(exc.next_path), status_code=303)

    app.add_middleware(SecurityHeaders)
