"""The ConsultEase application: starts the one MQTT service and everything that uses it.

``ConsultEaseApp(headless=True)`` runs without Qt (``consultease serve``);
``ConsultEaseApp()`` additionally shows the kiosk window.
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
    """Composition of database, the one MQTT service, the controllers and (unless headless) the kiosk."""

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
