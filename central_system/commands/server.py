"""``consultease server``: the central system as a network service (API + live events)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``server`` sub-command."""
    p = subparsers.add_parser(
        "server",
        help="serve the central system's API to kiosks (active, or standby on a shared PostgreSQL)",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: Any) -> None:
    """The listener's options (``serve`` takes them too)."""
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080)")
    p.add_argument(
        "--uds",
        default=None,
        help="listen on this Unix socket instead of a port (how a kiosk runs its own server)",
    )
    p.add_argument("--tls-cert", type=Path, default=None, help="certificate (PEM) to serve HTTPS")
    p.add_argument("--tls-key", type=Path, default=None, help="its private key (PEM)")


PARENT_CHECK_S = 0.5


def _follow_parent(parent: str | None) -> None:
    """A kiosk's own server ends when the kiosk does (even SIGKILLed): SIGTERM to itself."""
    if not parent:
        return
    import os
    import signal
    import threading

    expected = int(parent)

    def watch() -> None:
        while os.getppid() == expected:
            threading.Event().wait(PARENT_CHECK_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Serve until SIGINT/SIGTERM; exit 2 when another server holds the SQLite database.

    A kiosk's own server that may not run on its database exits KIOSK_SERVER_REFUSED_EXIT.
    """
    import os

    from ..config import get_settings
    from ..server.central import KIOSK_SERVER_REFUSED_EXIT
    from ..server.leadership import KioskServerRefused, LeadershipError
    from ..server.run import serve

    settings = settings or get_settings()
    if bool(args.tls_cert) != bool(args.tls_key):
        print("--tls-cert and --tls-key go together.", file=sys.stderr)
        return 2
    # A kiosk that starts its own server passes the token it will use (never stored).
    local_token = os.environ.pop("CONSULTEASE_SERVER_LOCAL_TOKEN", None)
    nice = int(os.environ.pop("CONSULTEASE_SERVER_NICE", "0") or 0)
    if nice > 0:
        # Before any thread starts (on Linux it is per thread; new threads inherit it):
        # the kiosk's screen goes first.
        os.nice(nice)
    _follow_parent(os.environ.pop("CONSULTEASE_SERVER_PARENT_PID", None))
    # Tests and benchmarks only: a subclass of the facade with their hooks ("module:attr").
    factory_path = os.environ.pop("CONSULTEASE_SERVER_BACKEND_FACTORY", "")
    factory = None
    if factory_path:
        import importlib

        module_name, _, attr = factory_path.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    try:
        return serve(
            settings,
            backend_factory=factory,
            host=args.host,
            port=args.port,
            uds=args.uds,
            certfile=args.tls_cert,
            keyfile=args.tls_key,
            local_kiosk_token=local_token,
            # A kiosk's own server: uvicorn's start/stop lines are noise on the kiosk's console.
            log_level="warning" if local_token else args.log_level,
        )
    except KioskServerRefused as err:
        print(f"consultease server: {err}", file=sys.stderr)
        return KIOSK_SERVER_REFUSED_EXIT
    except LeadershipError as err:
        print(f"consultease {getattr(args, 'command', 'server')}: {err}", file=sys.stderr)
        return 2
