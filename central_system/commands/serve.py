"""``consultease serve``: the same program as ``consultease server``, with an optional embedded broker.

Before issue 9 ``serve`` ran the central system with no API and took no lock, so
beside a ``server`` it made a second publisher. Now it *is* ``server``: the same
leadership (the SQLite file lock, the PostgreSQL advisory lock), the same API on
the same listener options; ``--embedded-broker`` starts a broker in the process
for a zero-setup run.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``serve`` sub-command."""
    from . import server

    p = subparsers.add_parser(
        "serve",
        help="the same as `server` (one active server per database, its API on 127.0.0.1:8080 "
        "by default), optionally with an embedded MQTT broker",
    )
    server.add_arguments(p)
    p.add_argument(
        "--embedded-broker",
        action="store_true",
        help="start an in-process MQTT broker (amqtt, MQTT 3.1.1) on 127.0.0.1 for a zero-setup run",
    )
    p.add_argument(
        "--broker-port", type=int, default=None, help="port of the embedded broker (default: free)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``consultease server`` with these options, after starting the embedded broker if asked."""
    from ..config import get_settings
    from ..services.embedded_broker import EmbeddedBroker
    from . import server

    settings = get_settings()
    broker = None
    if args.embedded_broker:
        broker = EmbeddedBroker(port=args.broker_port).start()
        settings = settings.model_copy(
            update={
                "mqtt_host": broker.host,
                "mqtt_port": broker.port,
                "mqtt_protocol": "3.1.1"
                if settings.mqtt_protocol == "auto"
                else settings.mqtt_protocol,
            }
        )
        print(f"embedded MQTT broker listening on {broker.host}:{broker.port}", flush=True)
    try:
        return server.run(args, settings)
    finally:
        if broker is not None:
            broker.stop()
