"""Serve a :class:`CentralServer` with uvicorn (``consultease server``)."""

from __future__ import annotations

import gc
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn

from ..config import Settings
from .app import create_app, end_streams
from .central import CentralServer

logger = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn that ends the app's event streams as it begins to stop (SIGTERM, SIGINT),
    so open kiosk streams finish cleanly instead of being cancelled with an error."""

    def __init__(self, config: uvicorn.Config, on_stopping: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stopping = on_stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # The streams see their end marker at uvicorn's first await, after it has closed
        # the listening sockets: no client reconnects to this server on its way out.
        self._on_stopping()
        await super().shutdown(sockets)


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    uds: str | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    local_kiosk_token: str | None = None,
    backend_factory: object = None,
    log_level: str = "info",
) -> int:
    """Run until SIGINT/SIGTERM. Raises LeadershipError when another server holds the SQLite file."""
    kwargs = {} if backend_factory is None else {"backend_factory": backend_factory}
    server = CentralServer(settings, local_kiosk_token=local_kiosk_token, **kwargs)
    server.claim()  # SQLite: refuse to start beside another server, before binding a port
    certfile = certfile or settings.server_tls_certfile
    keyfile = keyfile or settings.server_tls_keyfile
    app = create_app(server)
    config = uvicorn.Config(
        app,
        host=host or settings.server_host,
        port=settings.server_port if port is None else port,
        uds=uds,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    uv = _Uvicorn(config, lambda: end_streams(app))
    server.start()
    # Everything built so far (modules, the app, its routes, the ORM's mappers) lives as long
    # as the process: out of the collector's sight, a full collection under load takes ~50 ms
    # instead of 120-190 ms, a stall every request in flight then waits out (measured with
    # benchmarks/server_api.py on the 2-core machine).
    gc.collect()
    gc.freeze()
    try:
        uv.run()
    finally:
        server.stop()
    return 0
