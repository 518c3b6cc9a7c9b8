"""Three kiosks on one server: a real offscreen Qt kiosk and two API kiosks.

Real processes and components: a ``consultease server`` process (SQLite and
PostgreSQL), Mosquitto, an improved-mode desk unit. The Qt kiosk is a client of
the API only (``ApiBackend``): it runs no MQTT service and opens no database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytestqt")

from central_system.api.client import ApiClient
from central_system.config import Settings
from central_system.kiosk.api_backend import ApiBackend
from faculty_desk_unit.desk import DeskUnit
from tests.brokers import MosquittoBroker
from tests.e2e.kiosk_flows import CARD, WAIT_MS, send_request, tap_in, wait_until
from tests.server_helpers import admin_client, create_admin, db_engine, enroll, running_server


def test_a_request_from_kiosk_a_reaches_the_desk_and_qt_kiosk_b_shows_it_and_its_acceptance_live(
    qtbot: Any,
    api_kiosk: Callable[..., Any],
    db_url: str,
    broker: MosquittoBroker,
    tmp_path: Path,
) -> None:
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        create_admin(engine)
        tokens = {name: enroll(engine, name) for name in ("kiosk-a", "kiosk-b", "kiosk-c")}
        admin = admin_client(server.url)
        fac = admin.save_faculty(None, "Dr. Ana Reyes", "CS", "ana@example.edu")
        admin.register_student("Maria Garcia", "2023-0001", "CS", CARD)
        desk = DeskUnit(fac.id, "Dr. Ana Reyes", "127.0.0.1", broker.port, mode="improved").start()
        kiosk_a = ApiClient(server.url, tokens["kiosk-a"])
        kiosk_c = ApiClient(server.url, tokens["kiosk-c"])
        backend_b = ApiBackend(
            ApiClient(server.url, tokens["kiosk-b"]),
            Settings(data_dir=tmp_path / "kiosk-b", kiosk_inactivity_timeout_s=3600),
        )
        try:
            kiosk_b = api_kiosk(backend_b)
            # The Qt kiosk holds no MQTT connection of its own.
            assert not [t.name for t in threading.enumerate() if t.name.startswith("mqtt-")]
            assert wait_until(lambda: kiosk_a.faculty_member(fac.id).can_request, 20)
            win = kiosk_b.window
            # The student taps in at kiosk B and opens My consultations.
            tap_in(qtbot, kiosk_b, CARD, fac.id)
            win.show_my_consultations()
            qtbot.waitUntil(lambda: win.current_screen() is win.my_consultations, timeout=WAIT_MS)
            # Kiosk A sends the same student's request: it reaches the desk...
            made = kiosk_a.create_consultation(CARD, fac.id, "Could we go over my thesis outline?")
            assert wait_until(lambda: any(str(r.cid) == str(made.id) for r in desk.queue), 20)
            # ...and kiosk B shows it, then its acceptance, live (event stream, no polling).
            rows = win.my_consultations.rows
            qtbot.waitUntil(lambda: made.id in rows, timeout=WAIT_MS)
            assert rows[made.id].pill.status() == "pending"
            assert desk.acknowledge(made.id)
            qtbot.waitUntil(lambda: rows[made.id].pill.status() == "accepted", timeout=WAIT_MS)
            # The third kiosk reads the same state.
            assert kiosk_c.consultation(CARD, made.id).status == "accepted"
            # Kiosk B sends a request itself through its form: it reaches the desk too.
            win.my_consultations.back_button.click()
            qtbot.waitUntil(lambda: win.current_screen() is win.dashboard, timeout=WAIT_MS)
            sent = send_request(qtbot, kiosk_b, fac.id, "A second question about chapter two.")
            assert wait_until(lambda: any(str(r.cid) == str(sent) for r in desk.queue), 20)
            assert desk.acknowledge(sent)
            qtbot.waitUntil(
                lambda: win.request_form.sent_status.status() == "accepted", timeout=WAIT_MS
            )
        finally:
            kiosk_a.close()
            kiosk_c.close()
            desk.stop()
