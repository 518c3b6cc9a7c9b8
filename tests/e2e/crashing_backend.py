"""Kiosk backends that misbehave, loaded by ``BackendProcess`` in its child.

``CrashAfterSaveBackend`` dies right after saving a request, before it can answer (a
central system that loses power mid-request); ``HangingBackend`` never answers ``hang()``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from central_system.views.demo_backend import DemoBackend


class CrashAfterSaveBackend(DemoBackend):
    """``send_request`` commits the request (and its MQTT messages), then the process dies."""

    def send_request(self, *args: Any, **kwargs: Any) -> Any:
        view = super().send_request(*args, **kwargs)
        marker = os.environ.get("CONSULTEASE_TEST_CRASH_ONCE")
        if marker and not os.path.exists(marker):
            open(marker, "w").close()  # only the first request: the restarted child behaves
            os._exit(1)
        return view


class HangingBackend(DemoBackend):
    """``hang()`` never returns (bounded at 10 minutes): a stuck central system."""

    def hang(self) -> None:
        time.sleep(600)
