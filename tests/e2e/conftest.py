"""Fixtures of the kiosk e2e tests that run the real Qt kiosk on the server's API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.kiosk_flows import WAIT_MS


@pytest.fixture
def api_kiosk(qtbot: Any) -> Iterator[Callable[..., Any]]:
    """``api_kiosk(backend)``: an offscreen kiosk window on ``backend`` (an ``ApiBackend``),
    shown and, unless ``connected=False``, past "Desks: connected"; closed after the test."""
    from central_system.services.rfid import SimulatedRFIDReader
    from central_system.views.app import Kiosk

    made: list[Any] = []

    def start(backend: Any, *, connected: bool = True) -> Any:
        kiosk = Kiosk(None, SimulatedRFIDReader(), backend=backend)
        made.append(kiosk)
        qtbot.addWidget(kiosk.window)
        kiosk.window.show()
        if connected:
            win = kiosk.window
            qtbot.waitUntil(lambda: win.mqtt_label.text() == "Desks: connected", timeout=WAIT_MS)
        return kiosk

    yield start
    for kiosk in made:
        kiosk.close()
