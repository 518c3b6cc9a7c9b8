"""One place maps errors to HTTP answers: ``{"error": code, "detail": message}`` every time."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api.errors import (
    ConflictError,
    ForbiddenError,
    KioskError,
    NotAuthenticatedError,
    NotFoundError,
    UnavailableError,
)

logger = logging.getLogger(__name__)

# The error code of an HTTP error the framework raises (docs/api.md "Errors").
HTTP_CODES: Final[dict[int, str]] = {
    400: KioskError.code,
    401: NotAuthenticatedError.code,
    403: ForbiddenError.code,
    404: NotFoundError.code,
    405: "method_not_allowed",
    409: ConflictError.code,
    413: "too_large",
    503: UnavailableError.code,
}
# A sentence instead of the bare reason phrase ("Not Found").
_DETAILS: Final[dict[int, str]] = {
    404: "There is no such address in this API.",
    405: "This address does not take {method}; the Allow header says what it takes.",
}


def error_response(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    """A JSON error answer."""
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only strings and the location: the raw input may be bytes or huge.
    return [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", ""))[:200],
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()[:20]
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Controller errors, validation errors, HTTP errors and anything else: one JSON shape."""

    @app.exception_handler(KioskError)
    async def kiosk_error(_request: Request, exc: KioskError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, str(exc) or exc.code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        where = ".".join(errors[0]["loc"]) if errors else ""
        msg = str(errors[0]["msg"]) if errors else "invalid request"
        return error_response(422, "invalid", f"{where}: {msg}" if where else msg, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's own answers (no such route, a method the route does not take)
        # carry the codes of docs/api.md's error table, not one of their own.
        status = exc.status_code
        detail = str(exc.detail)
        if status in _DETAILS and detail == HTTPStatus(status).phrase:
            detail = _DETAILS[status].format(method=request.method)
        response = error_response(status, HTTP_CODES.get(status, f"http_{status}"), detail)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(500, "internal", "An unexpected error; it has been logged.")
