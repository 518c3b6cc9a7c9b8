"""A kiosk facade that misbehaves, loaded by a kiosk's server child in tests.

``CONSULTEASE_SERVER_BACKEND_FACTORY=tests.e2e.crashing_backend:CrashAfterSaveBackend``
makes ``consultease server`` serve the kiosk's calls with it: ``send_request`` dies right
after saving a request, before it can answer (a central system that loses power
mid-request); ``HangingBackend`` never answers ``get_faculty``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from central_system.controllers.kiosk_facade import KioskBackend


class CrashAfterSaveBackend(KioskBackend):
    """``send_request`` commits the request (and its MQTT messages), then the process dies."""

    def send_request(self, *args: Any, **kwargs: Any) -> Any:
        view = super().send_request(*args, **kwargs)
        marker = os.environ.get("CONSULTEASE_TEST_CRASH_ONCE")
        if marker and not os.path.exists(marker):
            open(marker, "w").close()  # only the first request: the restarted child behaves
            os._exit(1)
        return view


class HangingBackend(KioskBackend):
    """``get_faculty`` never answers (bounded at 10 minutes): a stuck central system."""

    def get_faculty(self, faculty_id: int) -> Any:
        time.sleep(600)
        return super().get_faculty(faculty_id)
