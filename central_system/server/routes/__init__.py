"""One router per resource, each included under ``/api/v1`` by :func:`include_api`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ...api.schemas import ErrorAnswer
from . import admin, analytics, consultations, desks, events, faculty, students, system

_ERRORS = {
    400: "refused, with the reason to show (a controller's rule)",
    401: "no token, or an unknown, revoked or expired one",
    403: "a token that may not make this call (a kiosk token on an administrator call)",
    404: "no such thing, or not the card holder's",
    409: "a duplicate (card, student number, e-mail, username)",
    413: "the body is over the limit",
    422: "the request does not match the schema",
    503: "this server is a standby (or starting): try the active one",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorAnswer, "description": text} for code, text in _ERRORS.items()
}

API_PREFIX = "/api/v1"
RESOURCES = (students, faculty, consultations, admin, desks, system, analytics, events)


def include_api(app: FastAPI) -> None:
    """Every resource's routes under ``/api/v1``.

    Each router is included in the app itself, not in an ``/api/v1`` router of its own:
    FastAPI matches a request against every level of nested routers (twice: to select
    the route, then to handle it), and one level less is a measurable part of a call.
    """
    for module in RESOURCES:
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
