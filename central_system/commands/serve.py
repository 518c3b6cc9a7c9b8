"""``consultease serve``: the headless central system."""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``serve`` sub-command."""
    p = subparsers.add_parser(
        "serve",
        help="run the headless central system with no API (no kiosk window; "
        "`server` serves kiosks)",
    )
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
    """Start ConsultEase headless and run until SIGINT/SIGTERM."""
    from ..config import get_settings
    from ..main import ConsultEaseApp
    from ..services.embedded_broker import EmbeddedBroker
    from . import install_signal_handlers

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
    app = ConsultEaseApp(settings, headless=True)
    install_signal_handlers(app.stop)
    app.start()
    print(
        f"ConsultEase central system running; database {settings.effective_database_url.split('@')[-1]}; "
        f"MQTT {settings.mqtt_host}:{settings.mqtt_port}. Ctrl+C stops.",
        flush=True,
    )
    try:
        app.wait()
    finally:
        app.stop()
        if broker is not None:
            broker.stop()
    return 0
