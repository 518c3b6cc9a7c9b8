"""One router per resource; ``api_router`` includes them under ``/api/v1``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

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

api_router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
for module in (students, faculty, consultations, admin, desks, system, analytics, events):
    api_router.include_router(module.router)
