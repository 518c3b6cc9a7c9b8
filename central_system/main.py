"""The central system in this process: the one MQTT service and everything that uses it.

``ConsultEaseApp`` builds and starts :func:`bootstrap.build_system` with no API and no
leadership: tests and benchmarks use it to drive the controllers directly. No command
runs it: ``consultease server`` (and ``serve``, the same program) start the central
system through ``server/central.py``, only while they hold the active role, and the
kiosk is a client of such a server (its own child or a remote one). It never shows a
window; ``headless`` is kept for its callers and changes nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .bootstrap import System, build_system
from .config import Settings, get_settings
from .services.async_mqtt_service import AsyncMQTTService

logger = logging.getLogger(__name__)


class ConsultEaseApp:
    """Composition of database, the one MQTT service and the controllers (no API, no lock)."""

    def __init__(self, settings: Settings | None = None, *, headless: bool = False) -> None:
        self.settings = settings or get_settings()
        self.headless = headless
        self.system: System | None = None
        self._stopped = threading.Event()

    @property
    def async_mqtt_service(self) -> AsyncMQTTService:
        """The one MQTT service (plan, step 1.1)."""
        assert self.system is not None, "start() first"
        return self.system.mqtt

    @property
    def controllers(self) -> dict[str, Any]:
        """The controllers by name."""
        assert self.system is not None, "start() first"
        return self.system.controllers

    def start(self) -> None:
        """Wire the database, start the async MQTT service once, attach every subscription."""
        if self.system is not None:
            return
        self.system = build_system(self.settings)
        self.system.start()
        logger.info("ConsultEase central system started (headless=%s)", self.headless)

    def stop(self) -> None:
        """Stop subscriptions and timers, flush the MQTT service, close the database."""
        if self.system is None:
            return
        self.system.stop()
        self.system = None
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``stop()`` (the CLI's main thread waits here)."""
        return self._stopped.wait(timeout)
