"""The kiosk with its own server child (``scripts/consultease run`` with no server URL).

Offscreen Qt in this process; a ``consultease server`` child on a Unix socket, spoken
to with the same API client as a remote server (one protocol); a real Mosquitto;
improved-mode desk units; SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.importorskip("pytestqt")

from central_system.kiosk.api_backend import ApiBackend
from faculty_desk_unit.desk import DeskUnit
from tests.e2e.kiosk_flows import (
    CARD,
    WAIT_MS,
    open_request_form,
    send_request,
    tap_in,
    wait_until,
)
from tests.mqtt_probe import Probe
from tests.server_helpers import ADMIN_PASSWORD, ADMIN_USER, ROOT, create_admin, db_engine

CONNECTED = "$SYS/broker/clients/connected"
CRASH_FACTORY = "tests.e2e.crashing_backend:CrashAfterSaveBackend"
HANG_FACTORY = "tests.e2e.crashing_backend:HangingBackend"


@dataclass
class Seeded:
    """A faculty member with a desk online, and a student with card ``CARD``."""

    faculty_id: int
    student_id: int
    desk: DeskUnit


def start_local(settings: Any, **extra_env: str) -> ApiBackend:
    """The kiosk's own server child (as ``consultease run`` starts it), started."""
    backend = ApiBackend.local_server(settings)
    assert backend.local is not None
    backend.local.extra_env = dict(extra_env)
    return backend.start()


def seed(backend: ApiBackend, db_url: str, broker_port: int) -> Seeded:
    """An administrator in the database, then faculty and a student through the kiosk's API."""
    with db_engine(db_url) as engine:
        create_admin(engine)
    backend.admin_login(ADMIN_USER, ADMIN_PASSWORD)
    fac = backend.save_faculty(None, "Dr. Ana Reyes", "CS", "ana@example.edu", ADMIN_USER)
    student = backend.register_student("Maria Garcia", "2023-0001", "CS", CARD, ADMIN_USER)
    desk = DeskUnit(fac.id, "Dr. Ana Reyes", "127.0.0.1", broker_port, mode="improved").start()
    assert wait_until(lambda: (v := backend.get_faculty(fac.id)) is not None and v.can_request, 20)
    return Seeded(fac.id, student.id, desk)


@pytest.fixture
def backend(make_settings: Callable[..., Any], db_url: str) -> Iterator[ApiBackend]:
    b = start_local(make_settings(database_url=db_url))
    yield b
    b.close()


@pytest.fixture
def seeded(backend: ApiBackend, db_url: str, broker: Any) -> Iterator[Seeded]:
    s = seed(backend, db_url, broker.port)
    yield s
    s.desk.stop()


def test_the_kiosk_runs_on_its_own_server_child_and_carries_on_when_it_is_killed(
    qtbot: Any,
    api_kiosk: Callable[..., Any],
    backend: ApiBackend,
    seeded: Seeded,
    broker: Any,
) -> None:
    pid = backend.pid
    assert pid is not None
    # The child is the central system: no Qt, and the only central MQTT connection.
    assert "libQt6" not in Path(f"/proc/{pid}/maps").read_text()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("mqtt-")]
    sys_probe = Probe(broker.port, [CONNECTED], qos=0)
    try:
        assert sys_probe.wait_for(
            lambda m: any(int(x.payload) == 3 for x in m),
            10,  # the probe + the desk + the child
        ), [x.payload for x in sys_probe.messages]
    finally:
        sys_probe.close()
    kiosk = api_kiosk(backend)
    win = kiosk.window
    fid, desk = seeded.faculty_id, seeded.desk
    tap_in(qtbot, kiosk, CARD, fid)
    # A presence change at the desk reaches the card through the child's event stream.
    card = win.dashboard.cards[fid]
    desk.set_present(False)
    qtbot.waitUntil(lambda: card.pill.status() == "away", timeout=WAIT_MS)
    desk.set_present(True)
    cid = send_request(qtbot, kiosk, fid, "Could we go over my thesis outline, please?")
    assert wait_until(lambda: any(str(r.cid) == str(cid) for r in desk.queue), 20)
    assert desk.acknowledge(cid)
    qtbot.waitUntil(lambda: win.request_form.sent_status.status() == "accepted", timeout=WAIT_MS)

    # SIGKILL the child: the header says so, a new child starts, the kiosk carries on.
    os.kill(pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: "restarting" in win.mqtt_label.text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: win.mqtt_label.text() == "Desks: connected", timeout=WAIT_MS)
    assert backend.restarts == 1 and backend.pid != pid
    assert [c.id for c in backend.my_consultations(seeded.student_id)] == [cid]


def test_the_admin_screens_work_over_the_api_of_the_server_child(
    qtbot: Any, api_kiosk: Callable[..., Any], backend: ApiBackend, seeded: Seeded
) -> None:
    """Admin login, add a faculty member, register a card by tapping it at the kiosk,
    the System tab, a backup written by the child, the audit log."""
    kiosk = api_kiosk(backend)
    win = kiosk.window
    win.login.admin_button.click()
    win.admin_login.username.setText(ADMIN_USER)
    win.admin_login.password.setText("wrong-password-1")
    win.admin_login.login_button.click()
    qtbot.waitUntil(lambda: "Wrong" in win.admin_login.error.text(), timeout=WAIT_MS)
    win.admin_login.password.setText(ADMIN_PASSWORD)
    win.admin_login.login_button.click()
    qtbot.waitUntil(lambda: win.current_screen() is win.admin_area, timeout=WAIT_MS)

    tab = win.admin_area.faculty_tab
    tab.name.setText("Dr. Grace Uy")
    tab.department.setText("Chemistry")
    tab.save_button.click()
    qtbot.waitUntil(lambda: any(v.name == "Dr. Grace Uy" for v in tab.views), timeout=WAIT_MS)

    win.admin_area.tabs.setCurrentWidget(win.admin_area.students_tab)
    st = win.admin_area.students_tab
    st.tap_button.click()
    kiosk.reader.tap("de:ad:be:ef:01")  # the reader is in the kiosk process, the database is not
    qtbot.waitUntil(lambda: st.captured_uid == "DEADBEEF01", timeout=WAIT_MS)
    st.name.setText("Liza Ramos")
    st.number.setText("2023-0042")
    st.register_button.click()
    qtbot.waitUntil(lambda: any(v.rfid_uid == "DEADBEEF01" for v in st.views), timeout=WAIT_MS)

    # The System tab shows the child's MQTT service, and the child writes the backup.
    win.admin_area.tabs.setCurrentWidget(win.admin_area.system_tab)
    sys_tab = win.admin_area.system_tab
    qtbot.waitUntil(lambda: sys_tab.values["state"].text() == "connected", timeout=WAIT_MS)
    assert sys_tab.values["backend"].text() == f"this kiosk's own server (pid {backend.pid})"
    assert sys_tab.backup_button.isEnabled()
    sys_tab.backup_button.click()
    qtbot.waitUntil(lambda: "Backup written" in sys_tab.message.text(), timeout=60_000)
    written = Path(sys_tab.message.text().split("Backup written: ", 1)[1])
    assert written.exists() and written.stat().st_size > 0
    actions = [a.action for a in backend.list_audit(50)]
    assert "faculty.save" in actions and "student.create" in actions

    win.logout()
    kiosk.reader.tap("DEADBEEF01")  # the new card logs its student in
    qtbot.waitUntil(
        lambda: win.student is not None and win.student.name == "Liza Ramos", timeout=WAIT_MS
    )


def test_every_thread_of_the_server_child_runs_at_a_lower_cpu_priority_than_the_kiosk(
    backend: ApiBackend,
) -> None:
    """When the screen and the central system both want the CPU, the screen goes first."""
    assert backend.settings.kiosk_backend_nice == 5  # the default
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + backend.settings.kiosk_backend_nice)
    tasks = list(Path(f"/proc/{backend.pid}/task").iterdir())
    assert len(tasks) >= 4  # main + the MQTT service's writer, network and dispatch threads
    for task in tasks:
        fields = (task / "stat").read_text().rsplit(") ", 1)[1].split()
        assert int(fields[16]) == expected, (task.name, fields[16])  # field 19: nice


def test_a_request_whose_answer_is_lost_is_not_lost_and_the_student_is_told(
    qtbot: Any,
    api_kiosk: Callable[..., Any],
    make_settings: Callable[..., Any],
    db_url: str,
    broker: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server child dies after saving a request, before answering: the request still
    reaches the desk exactly once, and the kiosk says it may have been sent instead of
    inviting a second one; the restarted child carries on with the same data."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    backend = start_local(
        make_settings(database_url=db_url),
        CONSULTEASE_SERVER_BACKEND_FACTORY=CRASH_FACTORY,
        CONSULTEASE_TEST_CRASH_ONCE=str(tmp_path / "crashed"),
    )
    seeded = seed(backend, db_url, broker.port)
    desk = seeded.desk
    try:
        kiosk = api_kiosk(backend)
        first_pid = backend.pid
        tap_in(qtbot, kiosk, CARD, seeded.faculty_id)
        form = open_request_form(qtbot, kiosk, seeded.faculty_id, "Could we go over my lab report?")
        form.send_button.click()
        qtbot.waitUntil(lambda: "may have been sent" in form.form_error.text(), timeout=WAIT_MS)
        assert form.sent is None  # the kiosk does not pretend to know
        assert (tmp_path / "crashed").exists()  # the child did die mid-request
        # Saved with its outbox rows before the crash: the desk gets it exactly once.
        assert wait_until(lambda: len(desk.queue) >= 1, 30), (
            "the saved request never reached the desk"
        )
        assert desk.queue[0].message.endswith("Could we go over my lab report?")
        qtbot.waitUntil(lambda: backend.restarts == 1 and backend.pid != first_pid, timeout=WAIT_MS)
        qtbot.waitUntil(
            lambda: kiosk.window.mqtt_label.text() == "Desks: connected", timeout=WAIT_MS
        )
        mine = backend.my_consultations(seeded.student_id)
        assert [(c.faculty_id, c.status) for c in mine] == [(seeded.faculty_id, "pending")]
        time.sleep(1.0)
        assert len(desk.queue) == 1
    finally:
        desk.stop()
        backend.close()


def test_closing_the_kiosk_does_not_wait_for_a_stuck_server_child(
    make_settings: Callable[..., Any], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child stuck in a call is killed on close (bounded), and the stuck call returns."""
    from central_system.api.errors import KioskError

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    backend = start_local(
        make_settings(database_url=sqlite_url), CONSULTEASE_SERVER_BACKEND_FACTORY=HANG_FACTORY
    )
    pid = backend.pid
    assert pid is not None
    outcome: dict[str, BaseException] = {}

    def stuck() -> None:
        try:
            backend.get_faculty(1)
        except BaseException as err:
            outcome["error"] = err

    caller = threading.Thread(target=stuck, daemon=True)
    caller.start()
    time.sleep(1.0)
    assert caller.is_alive()  # the call is stuck in the child
    started = time.monotonic()
    assert backend.local is not None
    backend.local.close(timeout=5)
    backend.close()
    assert time.monotonic() - started < 20
    assert wait_until(lambda: not _alive(pid), 10)
    caller.join(30)
    assert not caller.is_alive(), "the stuck call never returned"
    assert isinstance(outcome.get("error"), KioskError), outcome


def test_a_server_child_that_cannot_start_yet_is_retried_until_it_can(
    qtbot: Any,
    api_kiosk: Callable[..., Any],
    make_settings: Callable[..., Any],
    pg_server_url: str,
) -> None:
    """At boot the database may not be there yet: the kiosk shows, says it is starting,
    refuses a card tap with a clear message, and carries on once the database appears
    (the child waits as a standby for it; after 60 s the kiosk restarts it, header
    "Central system unavailable")."""
    import uuid

    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL

    name = f"consultease_late_{uuid.uuid4().hex[:8]}"
    url = pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    backend = ApiBackend.local_server(make_settings(database_url=url))
    assert backend.local is not None
    local = backend.local
    kiosk = api_kiosk(backend, connected=False)
    win = kiosk.window
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        backend.start_in_background()  # as `consultease run` does, after the window shows
        # The database does not exist: the child runs as a standby, retrying the database;
        # the kiosk waits for it to become active and says it is starting.
        qtbot.wait(3000)
        assert not local.alive
        assert win.mqtt_label.property("state") == "starting"
        assert win.mqtt_label.text() == "Starting…"
        kiosk.reader.tap(CARD)  # a student taps meanwhile: a clear message, no crash
        qtbot.waitUntil(lambda: "try again" in win.login.message.text(), timeout=WAIT_MS)
        assert win.student is None

        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        qtbot.waitUntil(lambda: local.alive, timeout=60_000)
        qtbot.waitUntil(lambda: win.mqtt_label.text() == "Desks: connected", timeout=WAIT_MS)
        assert backend.restarts == 0  # a late first start, not a crash
        with db_engine(url) as engine:
            create_admin(engine)
        backend.admin_login(ADMIN_USER, ADMIN_PASSWORD)
        backend.register_student("Maria Garcia", "2023-0001", "CS", CARD, ADMIN_USER)
        kiosk.reader.tap(CARD)
        qtbot.waitUntil(lambda: win.student is not None, timeout=WAIT_MS)
    finally:
        kiosk.close()
        backend.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_child_stopped_by_the_signal_that_stops_the_kiosk_is_not_reported_as_a_crash(
    make_settings: Callable[..., Any], sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl+C or systemd signals the whole process group: the child may be gone before the
    kiosk starts closing. That is a stop, not "exited unexpectedly" at ERROR (issue 9)."""
    backend = start_local(make_settings(database_url=sqlite_url))
    assert backend.local is not None and backend.pid is not None
    try:
        os.kill(backend.pid, signal.SIGTERM)
        assert wait_until(lambda: not backend.local.alive, 20)
        time.sleep(0.5)  # the kiosk's main thread gets to its own handler a little later
    finally:
        backend.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert backend.local.restarts == 0


def test_the_server_child_exits_when_the_kiosk_process_is_killed(
    make_settings: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """An orphaned child would hold a second central MQTT connection: it must exit."""
    settings = make_settings(database_url=sqlite_url)
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
        assert wait_until(lambda: not _alive(child), 20), "the server child outlived its kiosk"
    finally:
        if proc.poll() is None:
            proc.kill()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_consultease_run_starts_its_server_child_and_stops_it_on_sigterm(
    broker: Any, tmp_path: Path
) -> None:
    """``consultease run`` with no server URL: one central connection online, from its
    server child; SIGTERM to the process group ends both, the child saying offline."""
    from central_system.topics import central_status_topic

    client_id = "run-e2e-central"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTEASE_")}
    env.update(
        PYTHONPATH=str(ROOT),
        QT_QPA_PLATFORM="offscreen",
        CONSULTEASE_MQTT_HOST="127.0.0.1",
        CONSULTEASE_MQTT_PORT=str(broker.port),
        CONSULTEASE_MQTT_CLIENT_ID=client_id,
        CONSULTEASE_DATA_DIR=str(tmp_path),
        # Retired by issue 9: warned about once (by the kiosk, not again by its child).
        CONSULTEASE_KIOSK_BACKEND="process",
    )
    probe = Probe(broker.port, [central_status_topic(client_id)], qos=1)
    run = subprocess.Popen(
        [sys.executable, "-m", "central_system.cli", "--log-level", "WARNING", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert probe.wait_for(lambda m: any(x.payload == b"online" for x in m), 30)
        children = psutil.Process(run.pid).children()
        assert len(children) == 1, children  # the server child, and nothing else
        assert "server" in children[0].cmdline() and "--uds" in children[0].cmdline()
        # To the whole process group, as Ctrl+C in a terminal or systemd's default do.
        os.killpg(run.pid, signal.SIGTERM)
        out, _ = run.communicate(timeout=30)
        assert run.returncode == 0, out
        # Its open event stream ended cleanly: no uvicorn "Cancel 1 running task(s),
        # timeout graceful shutdown exceeded" from the child (issue 9).
        assert "graceful shutdown exceeded" not in out and "ERROR" not in out, out
        assert out.count("CONSULTEASE_KIOSK_BACKEND='process' is no longer used") == 1, out
        # The child flushed and said goodbye on its way out, then exited.
        assert probe.wait_for(lambda m: m[-1].payload == b"offline", 10)
        assert wait_until(lambda: not _alive(children[0].pid), 10)
    finally:
        probe.close()
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
