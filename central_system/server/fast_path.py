"""The kiosk's frequent reads answered before FastAPI: the same answers for a fraction of the CPU.

Twenty kiosks polling the faculty list and waiting counts, and a card tap reading the
student and their consultations, are nearly all of the API's traffic (issue 9, "Numbers").
Through FastAPI each such call passes seven middleware layers, the router's matching of
every route and dependency solving before :class:`FrequentCalls` does its one database hop:
that machinery was most of a call's CPU, and on a 2-core machine every millisecond of CPU
is queueing for the next kiosk. :class:`KioskFastPath` recognises exactly these calls,
well formed, on an active server, and answers them with :class:`FrequentCalls` directly.

Everything else goes to the app unchanged, and so does every irregular form of these calls
(no token, a malformed card header, an unexpected query, a standby server, HEAD): the
app's validation, error answers and OpenAPI document stay the single source of those. An
answer given here is byte for byte the app's (tests/integration/test_fast_path.py compares
both on SQLite and PostgreSQL), is counted in the same latency histogram under the same
route template, and errors raised by the checks become the app's JSON error shape.

Any other call that may change data (anything but GET and HEAD) ends with
:meth:`FrequentCalls.invalidate`: the cached faculty list and waiting counts never outlive
an administrator's edit made on this server.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Final

from prometheus_client import Histogram
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api.errors import KioskError
from .central import CentralServer
from .frequent import FrequentCalls, KioskCall

logger = logging.getLogger(__name__)

API: Final = "/api/v1"
FACULTY: Final = f"{API}/faculty"
WAITING: Final = f"{API}/faculty/waiting"
ME: Final = f"{API}/students/me"
MINE: Final = f"{API}/students/me/consultations"
# The X-Card-UID header as the route declares it (deps.CardUidHeader): else the app answers.
_CARD_UID: Final = re.compile(r"[0-9A-Fa-f:\- ]{1,64}")
_LIMIT: Final = re.compile(rb"limit=([1-9][0-9]{0,2})")
MAX_LIMIT: Final = 200
DEFAULT_LIMIT: Final = 50

Answer = Callable[[FrequentCalls, KioskCall, int], Awaitable[Response]]


async def _faculty(calls: FrequentCalls, call: KioskCall, _limit: int) -> Response:
    return await calls.faculty_list(call)


async def _waiting(calls: FrequentCalls, call: KioskCall, _limit: int) -> Response:
    return await calls.waiting_counts(call)


async def _me(calls: FrequentCalls, call: KioskCall, _limit: int) -> Response:
    return await calls.card_holder(call)


async def _mine(calls: FrequentCalls, call: KioskCall, limit: int) -> Response:
    return await calls.my_consultations(call, limit)


# path -> (answer, needs the card header, an administrator may call it)
CALLS: Final[dict[str, tuple[Answer, bool, bool]]] = {
    FACULTY: (_faculty, False, True),
    WAITING: (_waiting, False, True),
    ME: (_me, True, False),
    MINE: (_mine, True, False),
}


def _limit(query: bytes) -> int | None:
    """``limit`` from the query string as the route takes it; None: leave it to the app."""
    if not query:
        return DEFAULT_LIMIT
    match = _LIMIT.fullmatch(query)
    if match is None:
        return None
    limit = int(match.group(1))
    return limit if limit <= MAX_LIMIT else None


def _error(code: str, detail: str) -> bytes:
    """The app's JSON error body (errors.error_response), rendered the same way."""
    return bytes(JSONResponse({"error": code, "detail": detail}).body)


def _bearer(value: bytes) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (as FastAPI's HTTPBearer reads it)."""
    scheme, _, token = value.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class KioskFastPath:
    """ASGI middleware: the kiosk's four frequent GETs straight to :class:`FrequentCalls`."""

    def __init__(self, app: ASGIApp, server: CentralServer, histogram: Histogram) -> None:
        self.app = app
        self.server = server
        self.histogram = histogram
        self.answered = 0  # calls answered here, not by the app (tests, diagnostics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method == "GET":
                entry = CALLS.get(scope["path"])
                calls = self.server.frequent
                if entry is not None and calls is not None and self.server.role == "active":
                    call = self._call(scope, calls, entry)
                    if call is not None:
                        await self._answer(scope, send, calls, call, entry[0])
                        return
            elif method != "HEAD":
                try:
                    await self.app(scope, receive, send)
                finally:
                    calls = self.server.frequent
                    if calls is not None:
                        calls.invalidate()
                return
        await self.app(scope, receive, send)

    def _call(
        self, scope: Scope, calls: FrequentCalls, entry: tuple[Answer, bool, bool]
    ) -> tuple[KioskCall, int] | None:
        """The call to answer here, with its limit; None when the app should answer it."""
        _answer, needs_card, admin_allowed = entry
        limit = _limit(scope.get("query_string", b""))
        if limit is None:
            return None
        token: str | None = None
        card: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization" and token is None:
                token = _bearer(value)
                if token is None:
                    return None
            elif name == b"x-card-uid" and card is None:
                card = value.decode("latin-1")
            elif name in (b"content-length", b"transfer-encoding") and value != b"0":
                return None  # a GET with a body: the app's limits and answers
        if token is None:
            return None
        if needs_card:
            if card is None or _CARD_UID.fullmatch(card) is None:
                return None
        else:
            card = None
        path = scope["path"]
        return KioskCall(calls, token, path, card, admin_allowed), limit

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        calls: FrequentCalls,
        call_and_limit: tuple[KioskCall, int],
        answer: Answer,
    ) -> None:
        call, limit = call_and_limit
        started = time.perf_counter()
        self.answered += 1
        status = 500
        try:
            try:
                response = await answer(calls, call, limit)
                status, body = response.status_code, bytes(response.body)
            except KioskError as err:
                status = err.status_code
                body = _error(err.code, str(err) or err.code)
            except Exception:
                logger.exception("unexpected error in GET %s", call.path)
                body = _error("internal", "An unexpected error; it has been logged.")
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-length", str(len(body)).encode()),
                        (b"content-type", b"application/json"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            self.histogram.labels("GET", call.path, str(status)).observe(
                time.perf_counter() - started
            )
