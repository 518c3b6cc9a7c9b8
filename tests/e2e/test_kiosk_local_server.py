"""The kiosk with its own server child (``CONSULTEASE_KIOSK_BACKEND=server``): one protocol.

Offscreen Qt in this process; a ``consultease server`` child on a Unix socket,
spoken to with the same API client as a remote server; a real Mosquitto; an
improved-mode desk unit; SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.importorskip("pytestqt")

from central_system.kiosk.api_backend import ApiBackend
from central_system.services.rfid import SimulatedRFIDReader
from central_system.views.app import Kiosk
from faculty_desk_unit.desk import DeskUnit
from tests.mqtt_probe import Probe
from tests.server_helpers import ADMIN_PASSWORD, ADMIN_USER, ROOT, create_admin, db_engine

WAIT_MS = 30_000
CARD = "04A1B2C3"
CONNECTED = "$SYS/broker/clients/connected"


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.fixture
def backend(make_settings: Callable[..., Any], db_url: str) -> Iterator[ApiBackend]:
    b = ApiBackend.local_server(make_settings(database_url=db_url, kiosk_backend="server")).start()
    yield b
    b.close()


def test_the_kiosk_runs_on_its_own_server_child_and_carries_on_when_it_is_killed(
    qtbot: Any, backend: ApiBackend, db_url: str, broker: Any
) -> None:
    pid = backend.pid
    assert pid is not None
    # The child is the central system: no Qt, niced, and the only central MQTT connection.
    assert "libQt6" not in Path(f"/proc/{pid}/maps").read_text()
    child = psutil.Process(pid)
    assert child.nice() == 5
    assert not [t.name for t in threading.enumerate() if t.name.startswith("mqtt-")]
    sys_probe = Probe(broker.port, [CONNECTED], qos=0)
    try:
        assert sys_probe.wait_for(
            lambda m: any(int(x.payload) == 2 for x in m),
            10,  # the probe + the child
        ), [x.payload for x in sys_probe.messages]
    finally:
        sys_probe.close()
    # Seed through the kiosk's own API client, as an administrator.
    with db_engine(db_url) as engine:
        create_admin(engine)
    backend.admin_login(ADMIN_USER, ADMIN_PASSWORD)
    fac = backend.save_faculty(None, "Dr. Ana Reyes", "CS", "ana@example.edu", ADMIN_USER)
    backend.register_student("Maria Garcia", "2023-0001", "CS", CARD, ADMIN_USER)
    desk = DeskUnit(fac.id, "Dr. Ana Reyes", "127.0.0.1", broker.port, mode="improved").start()
    kiosk = Kiosk(None, SimulatedRFIDReader(), backend=backend)
    qtbot.addWidget(kiosk.window)
    kiosk.window.show()
    win = kiosk.window
    try:
        qtbot.waitUntil(lambda: win.mqtt_label.text() == "Desks: connected", timeout=WAIT_MS)
        kiosk.reader.tap(CARD)
        qtbot.waitUntil(
            lambda: win.current_screen() is win.dashboard and fac.id in win.dashboard.cards,
            timeout=WAIT_MS,
        )
        card = win.dashboard.cards[fac.id]
        qtbot.waitUntil(lambda: card.request_button.isEnabled(), timeout=WAIT_MS)
        card.request_button.click()
        qtbot.waitUntil(lambda: win.current_screen() is win.request_form, timeout=WAIT_MS)
        win.request_form.message_edit.setPlainText("Could we go over my thesis outline, please?")
        win.request_form.send_button.click()
        qtbot.waitUntil(lambda: win.request_form.sent is not None, timeout=WAIT_MS)
        cid = win.request_form.sent.id
        assert wait_until(lambda: any(str(r.cid) == str(cid) for r in desk.queue), 20)
        assert desk.acknowledge(cid)
        qtbot.waitUntil(
            lambda: win.request_form.sent_status.status() == "accepted", timeout=WAIT_MS
        )

        # SIGKILL the child: the header says so, a new child starts, the kiosk carries on.
        os.kill(pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: "restarting" in win.mqtt_label.text(), timeout=WAIT_MS)
        qtbot.waitUntil(lambda: win.mqtt_label.text() == "Desks: connected", timeout=WAIT_MS)
        assert backend.restarts == 1 and backend.pid != pid
        assert [c.id for c in backend.my_consultations(backend.login_by_card(CARD).id)] == [cid]
    finally:
        kiosk.close()
        desk.stop()


def test_the_server_child_exits_when_the_kiosk_process_is_killed(
    make_settings: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url=sqlite_url, kiosk_backend="server")
    script = (
        "import sys, time, json\n"
        "from central_system.config import Settings\n"
        "from central_system.kiosk.api_backend import ApiBackend\n"
        "b = ApiBackend.local_server(Settings.model_validate_json(sys.argv[1])).start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, settings.model_dump_json()],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert psutil.pid_exists(child)
        proc.kill()  # SIGKILL: the kiosk cannot tell its child anything
        proc.wait(10)
        assert wait_until(
            lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie", 20
        )
    finally:
        if proc.poll() is None:
            proc.kill()
