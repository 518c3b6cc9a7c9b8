"""The real Qt kiosk on a remote server that goes away: calm words first, help if it lasts.

A routine failover or a server restart takes a few seconds; the header then says
"Reconnecting to the central system…". Only an outage that lasts OUTAGE_CALM_MS
asks for an administrator, and once the server is back the next outage starts calm
again. Real processes: a ``consultease server`` (SQLite), Mosquitto, the kiosk on
``ApiBackend.from_settings`` as ``consultease run`` builds it with a server URL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytestqt")

from pydantic import SecretStr

from central_system.config import Settings
from central_system.kiosk.api_backend import ApiBackend
from central_system.views import main_window
from tests.brokers import MosquittoBroker
from tests.e2e.kiosk_flows import WAIT_MS
from tests.server_helpers import ServerProcess, db_engine, enroll

CALM_MS = 5000


def test_an_outage_reads_reconnecting_then_asks_for_an_administrator_only_if_it_lasts(
    qtbot: Any,
    api_kiosk: Callable[..., Any],
    sqlite_url: str,
    broker: MosquittoBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(main_window, "OUTAGE_CALM_MS", CALM_MS)
    server = ServerProcess(sqlite_url, broker.port, tmp_path).start()
    again: ServerProcess | None = None
    try:
        server.wait_role("active")
        with db_engine(sqlite_url) as engine:
            token = enroll(engine, "lobby-1")
        settings = Settings(
            server_url=server.url, server_token=SecretStr(token), data_dir=tmp_path / "kiosk"
        )
        kiosk = api_kiosk(ApiBackend.from_settings(settings))
        label = kiosk.window.mqtt_label

        server.kill()  # as a crash or a failover looks to the kiosk
        qtbot.waitUntil(lambda: label.text() == main_window.RECONNECTING, timeout=WAIT_MS)
        calm_since = time.monotonic()
        assert "administrator" not in label.text()
        # The event reader retries (and repeats the state) meanwhile: the words stay calm...
        qtbot.wait(CALM_MS - 2000)
        assert label.text() == main_window.RECONNECTING
        # ...until the outage has lasted OUTAGE_CALM_MS.
        qtbot.waitUntil(lambda: label.text() == main_window.UNAVAILABLE, timeout=CALM_MS + 3000)
        assert time.monotonic() - calm_since >= (CALM_MS - 2000) / 1000
        assert "Please call an administrator" in label.text()

        # The server comes back: no restart of the kiosk, and the header says so.
        again = ServerProcess(sqlite_url, broker.port, tmp_path, port=server.port).start()
        again.wait_role("active")
        qtbot.waitUntil(lambda: label.text() == "Desks: connected", timeout=WAIT_MS)

        # The next outage starts calm again.
        again.kill()
        qtbot.waitUntil(lambda: label.text() == main_window.RECONNECTING, timeout=WAIT_MS)
    finally:
        server.stop()
        if again is not None:
            again.stop()
