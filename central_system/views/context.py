"""What every kiosk screen gets: the backend (worker-only), the task manager and the bridge.

The screens know the central system only as :class:`~central_system.kiosk.calls.KioskCalls`
(an interface) and the API's schemas and errors: never controllers, models or the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..kiosk.calls import KioskCalls
from .bridge import MqttBridge
from .worker import TaskManager


@dataclass
class KioskContext:
    """Shared services of the screens. ``backend`` is only ever called inside ``run``."""

    # An ApiBackend (the server's API), or a KioskBackend in this process (tests).
    backend: KioskCalls
    taskman: TaskManager
    bridge: MqttBridge
    settings: Any

    def run(
        self,
        fn: Callable[[KioskCalls], Any],
        on_success: Callable[[Any], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``fn(backend)`` on the worker thread; callbacks come back on the Qt thread."""
        backend = self.backend
        self.taskman.run(lambda: fn(backend), on_success, on_failure)
