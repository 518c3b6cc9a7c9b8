"""The kiosk's frequent calls answered before FastAPI: the same answers for a fraction of the CPU.

Twenty kiosks polling the faculty list and waiting counts, and a card tap reading the
student and their consultations, are nearly all of the API's traffic (issue 9, "Numbers");
the request a student sends is the slowest of the kiosk's calls. Through FastAPI each such
call passes seven middleware layers, the router's matching of every route and dependency
solving (and for the request, reading and validating its body) before :class:`FrequentCalls`
does its database work: that machinery was most of a read's CPU and 0.65 ms of a request's,
and on a 2-core machine every millisecond of CPU is queueing for the next kiosk.
:class:`KioskFastPath` recognises exactly these calls, well formed, on an active server, and
answers them with :class:`FrequentCalls` directly.

Everything else goes to the app unchanged, and so does every irregular form of these calls
(no token, a malformed card header, an unexpected query, a body that is not JSON or does
not validate, a standby server, HEAD): the app's validation, error answers and OpenAPI
document stay the single source of those. A request's body is read here, so one that goes
to the app after all is handed over as it came. An answer given here is byte for byte the
app's (tests/integration/test_fast_path.py compares both on SQLite and PostgreSQL), is
counted in the same latency histogram under the same route template, and errors raised by
the checks become the app's JSON error shape.

Any other call that may change data (anything but GET and HEAD) ends with
:meth:`FrequentCalls.invalidate`: the cached faculty list and waiting counts never outlive
an administrator's edit made on this server.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Final

from prometheus_client import Histogram
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..api.errors import KioskError
from ..api.schemas import ConsultationCreate
from .central import CentralServer
from .frequent import FrequentCalls, KioskCall

logger = logging.getLogger(__name__)

API: Final = "/api/v1"
FACULTY: Final = f"{API}/faculty"
WAITING: Final = f"{API}/faculty/waiting"
ME: Final = f"{API}/students/me"
MINE: Final = f"{API}/students/me/consultations"
CREATE: Final = f"{API}/consultations"
# The X-Card-UID header as the route declares it (deps.CardUidHeader): else the app answers.
_CARD_UID: Final = re.compile(r"[0-9A-Fa-f:\- ]{1,64}")
_LIMIT: Final = re.compile(rb"limit=([1-9][0-9]{0,2})")
MAX_LIMIT: Final = 200
DEFAULT_LIMIT: Final = 50
# The largest request body read here (a real one is under 3 KiB); a bigger one goes to the
# app, which answers it (413 over its own limit, app.MAX_BODY_BYTES).
MAX_FAST_BODY: Final = 16 * 1024

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


def _is_json(value: bytes) -> bool:
    """``Content-Type: application/json`` (a charset parameter allowed), as the kiosk sends it."""
    return value.partition(b";")[0].strip().lower() == b"application/json"


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app when the body has been read here already: the body, as one
    message, then whatever ``receive`` gives (the client's disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _read_body(receive: Receive) -> bytes | None:
    """The request's body; None: the client left before it was all there."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # http.disconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


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
    """ASGI middleware: the kiosk's four frequent GETs and its request straight to
    :class:`FrequentCalls`."""

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
                    answer, needs_card, admin_allowed = entry
                    call = self._call(scope, calls, needs_card, admin_allowed)
                    if call is not None:
                        await self._answer(scope, send, calls, call, answer)
                        return
            elif method != "HEAD":
                try:
                    if not (method == "POST" and await self._create(scope, receive, send)):
                        await self.app(scope, receive, send)
                finally:
                    calls = self.server.frequent
                    if calls is not None:
                        calls.invalidate()
                return
        await self.app(scope, receive, send)

    async def _create(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """``POST /consultations`` answered here; False (nothing read) when the app should
        answer it. A body that does not validate goes to the app, as it came."""
        calls = self.server.frequent
        if scope["path"] != CREATE or calls is None or self.server.role != "active":
            return False
        if scope.get("query_string", b"") != b"":
            return False
        call = self._call(scope, calls, needs_card=True, admin_allowed=False, body=True)
        if call is None:
            return False
        body = await _read_body(receive)
        if body is None:
            return True  # the client left: no one to answer
        try:
            # As the app reads it: json.loads, then the route's model (Python mode).
            request = ConsultationCreate.model_validate(json.loads(body))
        except (ValueError, ValidationError, RecursionError):
            # Not JSON (JSONDecodeError, UnicodeDecodeError), nested too deep, or not the
            # model: the app answers it.
            await self.app(scope, _replay(body, receive), send)
            return True

        async def answer(calls: FrequentCalls, call: KioskCall, _limit: int) -> Response:
            return await calls.send_request(call, request)

        await self._answer(scope, send, calls, call, answer)
        return True

    def _call(
        self,
        scope: Scope,
        calls: FrequentCalls,
        needs_card: bool,
        admin_allowed: bool,
        *,
        body: bool = False,
    ) -> tuple[KioskCall, int] | None:
        """The call to answer here, with its limit; None when the app should answer it.

        ``body``: the call has a JSON body, with a Content-Length of at most
        :data:`MAX_FAST_BODY`; else a call with a body goes to the app."""
        limit = _limit(scope.get("query_string", b""))
        if limit is None:
            return None
        token: str | None = None
        card: str | None = None
        length: bytes | None = None
        content_type: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization" and token is None:
                token = _bearer(value)
                if token is None:
                    return None
            elif name == b"x-card-uid" and card is None:
                card = value.decode("latin-1")
            elif name == b"content-length" and length is None:
                length = value
            elif name == b"content-type" and content_type is None:
                content_type = value  # the first, as the app reads it
            elif name == b"transfer-encoding":
                return None  # a chunked body: the app's limits and answers
        if token is None:
            return None
        if body:
            fits = length is not None and length.isdigit() and int(length) <= MAX_FAST_BODY
            if not (fits and content_type is not None and _is_json(content_type)):
                return None
        elif length not in (None, b"0"):
            return None  # a GET with a body: the app's limits and answers
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
                logger.exception("unexpected error in %s %s", scope["method"], call.path)
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
            self.histogram.labels(scope["method"], call.path, str(status)).observe(
                time.perf_counter() - started
            )
