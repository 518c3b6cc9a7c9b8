"""The ASGI application: routers, error handlers, the standby gate and the body-size limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .central import CentralServer
from .errors import install_error_handlers
from .fast_path import KioskFastPath
from .metrics import LatencyMiddleware, make_registry
from .routes import include_api
from .routes.health import router as health_router
from .routes.metrics import router as metrics_router
from .web import mount_web

# The largest request body the API takes (the biggest real one, a request text, is ~2 KiB).
MAX_BODY_BYTES: Final = 64 * 1024


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class _BodyTooLarge(Exception):
    pass


class LimitsAndRole:
    """ASGI middleware: 413 for a body over the limit; 503 for the API while not active."""

    def __init__(self, app: ASGIApp, server: CentralServer, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.server = server
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith("/api/") and self.server.role != "active":
            await _send_json(
                send,
                503,
                {
                    "error": "unavailable",
                    "detail": f"This server is {self.server.role}; the active server answers the API.",
                    "role": self.server.role,
                },
            )
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_body
                except ValueError:
                    too_large = True
                if too_large:
                    await _send_json(send, 413, _too_large(self.max_body))
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _send_json(send, 413, _too_large(self.max_body))


def _too_large(limit: int) -> dict[str, Any]:
    return {"error": "too_large", "detail": f"The request body is over {limit} bytes."}


def end_streams(app: FastAPI) -> None:
    """End the open event streams, the kiosks' and the web pages' (the server is stopping:
    a stream never ends by itself, and uvicorn would otherwise wait out its graceful bound
    and cancel them with an error in the log). Call it on the app's event loop."""
    app.state.server.hub.close()
    app.state.web_live.close()


def create_app(server: CentralServer) -> FastAPI:
    """The FastAPI app serving ``server`` (the caller starts and stops the server itself)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        server.hub.bind(asyncio.get_running_loop())
        yield

    app = FastAPI(
        title="ConsultEase",
        version=__version__,
        summary="The central system's API: kiosks, administrators and their live events.",
        lifespan=lifespan,
    )
    app.state.server = server
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(metrics_router)  # GET /metrics for Prometheus (issue 12, no auth)
    include_api(app)
    mount_web(app)  # the web dashboard's pages (issue 10, server/web/)
    app.add_middleware(LimitsAndRole, server=server)
    app.state.metrics_registry, latency = make_registry(server)  # per app: tests run several
    app.add_middleware(LatencyMiddleware, histogram=latency)  # times 413/503 too
    # Outermost: the kiosk's frequent reads answered before all of the above (fast_path.py).
    app.add_middleware(KioskFastPath, server=server, histogram=latency)
    return app
