"""Where a kiosk's own central system may run, and ``serve`` beside ``server`` (issue 9).

A kiosk with no ``CONSULTEASE_SERVER_URL`` starts its own ``consultease server`` child.
It must be its database's one central system: beside a ``consultease server`` (or, on
PostgreSQL, another kiosk's own server) it says so once and is not restarted, and on
PostgreSQL it gives way when a ``consultease server`` starts. Real processes, a real
Mosquitto, SQLite and PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytestqt")

from central_system.kiosk.api_backend import ApiBackend
from central_system.kiosk.local_server import (
    BACKEND_REFUSED_STATE,
    REFUSED_EXIT,
    LocalServer,
)
from central_system.server.central import KIOSK_SERVER_REFUSED_EXIT
from tests.e2e.kiosk_flows import WAIT_MS, wait_until
from tests.server_helpers import ROOT, ServerProcess, running_server

# Longer than the kiosk's first restart delay (1 s): a refused child is never restarted.
NO_RESTART_S = 3.0


def _local(settings: Any) -> tuple[LocalServer, list[str]]:
    states: list[str] = []
    return LocalServer(settings, on_state=states.append, log_level="WARNING"), states


def test_the_exit_status_of_a_refused_kiosk_server_is_the_one_its_kiosk_knows() -> None:
    assert REFUSED_EXIT == KIOSK_SERVER_REFUSED_EXIT  # the kiosk may not import the server


def test_a_kiosk_beside_a_server_on_its_sqlite_file_says_so_and_does_not_restart_its_child(
    qtbot: Any,
    api_kiosk: Callable[..., Any],
    make_settings: Callable[..., Any],
    sqlite_url: str,
    broker: Any,
    tmp_path: Path,
) -> None:
    """A Pi that runs `consultease server` and also a kiosk without SERVER_URL (section 10a)."""
    with running_server(sqlite_url, broker.port, tmp_path) as server:
        backend = ApiBackend.local_server(make_settings(database_url=sqlite_url))
        local = backend.local
        assert local is not None
        kiosk = api_kiosk(backend, connected=False)
        win = kiosk.window
        try:
            backend.start_in_background()  # as `consultease run` does
            qtbot.waitUntil(
                lambda: win.mqtt_label.property("state") == BACKEND_REFUSED_STATE, timeout=WAIT_MS
            )
            # Plain words for the public screen; the setting is named in the log.
            assert "Please call an administrator" in win.mqtt_label.text()
            assert "CONSULTEASE" not in win.mqtt_label.text()
            assert "retrying" not in win.mqtt_label.text()
            qtbot.wait(int(NO_RESTART_S * 1000))
            assert local.start_failures == 1 and not local.alive
            assert "consultease server" in local.last_start_error
            assert "CONSULTEASE_SERVER_URL" in local.last_start_error
            assert win.mqtt_label.property("state") == BACKEND_REFUSED_STATE
            health = server.health()
            assert health is not None and health["role"] == "active"
        finally:
            backend.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_kiosks_own_server_runs_only_alone_and_gives_way_to_a_server(
    make_settings: Callable[..., Any], db_url: str, broker: Any, tmp_path: Path
) -> None:
    """Several kiosks on one PostgreSQL without SERVER_URL: the first runs, the next is told
    to run `consultease server`; a server that starts takes the active role from the kiosk."""
    first, first_states = _local(make_settings(database_url=db_url))
    second, second_states = _local(make_settings(database_url=db_url))
    late, late_states = _local(make_settings(database_url=db_url))
    server = ServerProcess(db_url, broker.port, tmp_path, client_id="real-server")
    try:
        first.start()  # alone on the database: it runs
        assert first.alive

        second.start_in_background()
        assert wait_until(lambda: BACKEND_REFUSED_STATE in second_states, 60), second_states
        time.sleep(NO_RESTART_S)
        assert second.start_failures == 1 and not second.alive
        assert "CONSULTEASE_SERVER_URL" in second.last_start_error
        assert first.alive and first.state == "running"

        # A `consultease server` starts on the database: the kiosk's own server gives way
        # (it never stays active beside one) and the real server becomes the active one.
        server.start()
        assert wait_until(lambda: BACKEND_REFUSED_STATE in first_states, 30), first_states
        assert not first.alive and first.restarts == 0
        assert server.wait_role("active", 30)["role"] == "active"

        # A kiosk started now is refused at once, and the server stays active.
        late.start_in_background()
        assert wait_until(lambda: BACKEND_REFUSED_STATE in late_states, 60), late_states
        time.sleep(NO_RESTART_S)
        assert late.start_failures == 1 and not late.alive
        health = server.health()
        assert health is not None and health["role"] == "active"
    finally:
        for local in (first, second, late):
            local.close()
        server.stop()


def test_serve_next_to_a_running_server_on_the_same_sqlite_file_refuses(
    sqlite_url: str, broker: Any, tmp_path: Path
) -> None:
    """`serve` is `server`: one per SQLite file, a clear line, exit 2; the server carries on."""
    with running_server(sqlite_url, broker.port, tmp_path) as server:
        env = dict(server.env)
        env["CONSULTEASE_MQTT_CLIENT_ID"] = "serve-beside"
        result = subprocess.run(
            [sys.executable, "-m", "central_system.cli", "serve", "--port", "0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert lines and "Traceback" not in result.stderr, result.stderr
        assert lines[-1].startswith("consultease serve: another ConsultEase server (pid ")
        assert "already runs on this SQLite database" in lines[-1]
        health = server.health()
        assert health is not None and health["role"] == "active"
