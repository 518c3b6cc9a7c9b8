"""One place maps errors to HTTP answers: ``{"error": code, "detail": message}`` every time."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api.errors import KioskError

logger = logging.getLogger(__name__)


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
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(500, "internal", "An unexpected error; it has been logged.")
