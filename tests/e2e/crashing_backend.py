"""A kiosk facade that misbehaves, loaded by a kiosk's server child in tests.

``CONSULTEASE_SERVER_BACKEND_FACTORY=tests.e2e.crashing_backend:CrashAfterSaveBackend``
makes ``consultease server`` serve the kiosk's calls with it: a request dies right
after saving a request, before it can answer (a central system that loses power
mid-request); ``HangingBackend`` never answers ``get_faculty``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from central_system.controllers.kiosk_facade import KioskBackend


def _crash_once() -> None:
    marker = os.environ.get("CONSULTEASE_TEST_CRASH_ONCE")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()  # only the first request: the restarted child behaves
        os._exit(1)


class CrashAfterSaveBackend(KioskBackend):
    """A request is committed (with its MQTT messages), then the process dies.

    Both ways in: ``send_request_for`` is what the server's ``POST /consultations`` calls
    (the card check in the request's own transaction), ``send_request`` the other callers.
    """

    def send_request(self, *args: Any, **kwargs: Any) -> Any:
        view = super().send_request(*args, **kwargs)
        _crash_once()
        return view

    def send_request_for(self, *args: Any, **kwargs: Any) -> Any:
        view = super().send_request_for(*args, **kwargs)
        _crash_once()
        return view


class HangingBackend(KioskBackend):
    """``get_faculty`` never answers (bounded at 10 minutes): a stuck central system."""

    def get_faculty(self, faculty_id: int) -> Any:
        time.sleep(600)
        return super().get_faculty(faculty_id)
