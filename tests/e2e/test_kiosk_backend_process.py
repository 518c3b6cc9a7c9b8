"""The kiosk with its central system in a child process (``consultease run``'s design).

Offscreen Qt in this process; the database, the one MQTT service and the controllers
in a ``BackendProcess`` child; a real Mosquitto; improved-mode desk units.
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

import pytest

pytest.importorskip("pytestqt")

from central_system.services.rfid import SimulatedRFIDReader
from central_system.views.app import Kiosk
from central_system.views.backend import KioskError
from central_system.views.backend_process import (
    BACKEND_DOWN_STATE,
    BackendProcess,
    RemoteCallError,
)
from central_system.views.demo import DEMO_BACKEND
from faculty_desk_unit.desk import DeskUnit
from tests.mqtt_probe import Probe

ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 20_000
STUDENT_UID = "04A1B2C3"
CONNECTED = "$SYS/broker/clients/connected"
FACULTY = [
    ("Dr. Ana Reyes", "Computer Science", "ana@example.edu", True),
    ("Prof. Ben Cruz", "Physics", "ben@example.edu", False),
]
STUDENTS = [("Maria Garcia", "2023-0001", "CS", STUDENT_UID)]


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.fixture
def backend(make_settings: Callable[..., Any], db_url: str) -> Iterator[BackendProcess]:
    """The central system in a child process, with two faculty members and a student."""
    proc = BackendProcess(make_settings(database_url=db_url), DEMO_BACKEND).start()
    yield proc
    proc.close()


@pytest.fixture
def seeded(backend: BackendProcess) -> dict[str, Any]:
    result: dict[str, Any] = backend.demo_seed(FACULTY, STUDENTS, "admin")
    return result


@pytest.fixture
def desks(
    broker: Any, seeded: dict[str, Any], backend: BackendProcess
) -> Iterator[dict[str, DeskUnit]]:
    ids = seeded["faculty"]
    units = {
        "ana": DeskUnit(
            ids["Dr. Ana Reyes"], "Dr. Ana Reyes", "127.0.0.1", broker.port, mode="improved"
        ),
        "ben": DeskUnit(
            ids["Prof. Ben Cruz"],
            "Prof. Ben Cruz",
            "127.0.0.1",
            broker.port,
            mode="improved",
            present=False,
        ),
    }
    for unit in units.values():
        unit.start()

    def shown(fid: int, status: str) -> bool:
        v = backend.get_faculty(fid)
        return v is not None and v.desk_online and v.status == status

    assert wait_until(
        lambda: shown(ids["Dr. Ana Reyes"], "available") and shown(ids["Prof. Ben Cruz"], "away"),
        20,
    )
    yield units
    for unit in units.values():
        unit.stop()


@pytest.fixture
def kiosk(qtbot: Any, backend: BackendProcess) -> Iterator[Kiosk]:
    k = Kiosk(None, SimulatedRFIDReader(), backend=backend)
    qtbot.addWidget(k.window)
    k.window.show()
    yield k
    k.close()


def login(qtbot: Any, kiosk: Kiosk) -> None:
    kiosk.reader.tap(STUDENT_UID)
    win = kiosk.window
    qtbot.waitUntil(
        lambda: win.current_screen() is win.dashboard and len(win.dashboard.cards) >= 2,
        timeout=WAIT_MS,
    )


def test_request_acknowledge_and_presence_cross_the_process_boundary(
    qtbot: Any, kiosk: Kiosk, desks: dict[str, DeskUnit], seeded: dict[str, Any], broker: Any
) -> None:
    """Card tap, live availability, request to the desk, ACKNOWLEDGE shown as accepted."""
    # This process runs no MQTT service: the only central connection is the child's.
    assert not [t.name for t in threading.enumerate() if t.name.startswith("mqtt-")]
    # And the child loads no Qt: it is the central system, not a second kiosk.
    maps = Path(f"/proc/{kiosk.backend.pid}/maps").read_text()
    assert "libpython" in maps or "python" in maps
    assert "libQt6" not in maps and "QtCore" not in maps
    assert "libQt6Core" in Path(f"/proc/{os.getpid()}/maps").read_text()  # the check can see Qt
    sys_probe = Probe(broker.port, [CONNECTED], qos=0)
    try:
        # sys probe + 2 desks + the child's one connection
        assert sys_probe.wait_for(
            lambda m: any(x.topic == CONNECTED and int(x.payload) == 4 for x in m), 10
        ), [x.payload for x in sys_probe.messages]
    finally:
        sys_probe.close()

    login(qtbot, kiosk)
    win = kiosk.window
    ana_id = seeded["faculty"]["Dr. Ana Reyes"]
    ana = win.dashboard.cards[ana_id]
    qtbot.waitUntil(lambda: ana.request_button.isEnabled(), timeout=WAIT_MS)
    assert win.mqtt_label.text() == "Desks: connected"

    # A presence change at the desk reaches the card through the child's event stream.
    desks["ana"].set_present(False)
    qtbot.waitUntil(lambda: ana.pill.status() == "away", timeout=WAIT_MS)
    desks["ana"].set_present(True)
    qtbot.waitUntil(lambda: ana.request_button.isEnabled(), timeout=WAIT_MS)

    ana.request_button.click()
    qtbot.waitUntil(lambda: win.current_screen() is win.request_form, timeout=WAIT_MS)
    win.request_form.message_edit.setPlainText("Could we go over my thesis outline, please?")
    win.request_form.send_button.click()
    qtbot.waitUntil(lambda: win.request_form.sent is not None, timeout=WAIT_MS)
    cid = win.request_form.sent.id
    assert wait_until(lambda: any(str(r.cid) == str(cid) for r in desks["ana"].queue), 20)
    assert desks["ana"].acknowledge(cid)
    qtbot.waitUntil(lambda: win.request_form.sent_status.status() == "accepted", timeout=WAIT_MS)


def test_a_crashed_backend_is_restarted_and_the_kiosk_carries_on(
    qtbot: Any, kiosk: Kiosk, backend: BackendProcess, seeded: dict[str, Any]
) -> None:
    win = kiosk.window
    qtbot.waitUntil(lambda: win.mqtt_label.text() == "Desks: connected", timeout=WAIT_MS)
    first_pid = backend.pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: win.mqtt_label.property("state") == BACKEND_DOWN_STATE, timeout=WAIT_MS)
    assert "restarting" in win.mqtt_label.text()
    with pytest.raises(KioskError, match="lost its connection"):
        backend.list_faculty()  # while it is down: a clear error, not a hang
    # Restarted on the same database: the data is still there and the kiosk works again.
    qtbot.waitUntil(lambda: backend.restarts == 1 and backend.alive, timeout=WAIT_MS)
    assert backend.pid != first_pid
    qtbot.waitUntil(lambda: win.mqtt_label.text() == "Desks: connected", timeout=WAIT_MS)
    login(qtbot, kiosk)
    assert win.student is not None and win.student.name == "Maria Garcia"


def test_admin_screens_work_across_the_boundary(
    qtbot: Any, kiosk: Kiosk, backend: BackendProcess, seeded: dict[str, Any]
) -> None:
    """Admin login, add a faculty member, register a card by tapping, System tab, backup."""
    win = kiosk.window
    win.login.admin_button.click()
    win.admin_login.username.setText("admin")
    win.admin_login.password.setText("wrong-password-1")
    win.admin_login.login_button.click()
    qtbot.waitUntil(lambda: "Wrong" in win.admin_login.error.text(), timeout=WAIT_MS)
    win.admin_login.password.setText(seeded["admin_password"])
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

    # The System tab shows the child's MQTT service, and a backup is written by the child.
    win.admin_area.tabs.setCurrentWidget(win.admin_area.system_tab)
    sys_tab = win.admin_area.system_tab
    qtbot.waitUntil(lambda: sys_tab.values["state"].text() == "connected", timeout=WAIT_MS)
    assert sys_tab.values["backend"].text() == f"child process {backend.pid}, restarts 0"
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


def test_errors_cross_the_boundary_as_errors(
    backend: BackendProcess, seeded: dict[str, Any]
) -> None:
    with pytest.raises(KioskError, match="name"):
        backend.save_faculty(None, "", "Physics", None, "admin")  # a KioskError stays one
    with pytest.raises(RemoteCallError, match="TypeError"):
        backend.get_faculty()  # an unexpected error keeps its class name
    with pytest.raises(AttributeError):
        backend.no_such_call  # noqa: B018 - only the backend's public methods are calls
    with pytest.raises(AttributeError):
        backend._controller  # noqa: B018
    # The child refuses what is not a backend call even when asked directly.
    for name in ("disconnect_events", "_controller", "system"):
        with pytest.raises(RemoteCallError, match="AttributeError"):
            backend.call(name, "faculty")
    # The child survived all of that.
    assert [v.name for v in backend.list_faculty()] == ["Dr. Ana Reyes", "Prof. Ben Cruz"]


def test_every_backend_thread_runs_at_a_lower_cpu_priority_than_the_kiosk(
    backend: BackendProcess,
) -> None:
    """When the screen and the backend both want the CPU, the screen goes first."""
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + backend.settings.kiosk_backend_nice)
    assert backend.settings.kiosk_backend_nice == 5  # the default
    tasks = list(Path(f"/proc/{backend.pid}/task").iterdir())
    assert len(tasks) >= 4  # main + the MQTT service's writer, network and dispatch threads
    for task in tasks:
        fields = (task / "stat").read_text().rsplit(") ", 1)[1].split()
        assert int(fields[16]) == expected, (task.name, fields[16])  # field 19: nice


def test_the_backend_exits_when_the_kiosk_process_dies(
    make_settings: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """An orphaned backend would hold a second central MQTT connection: it must exit."""
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(make_settings(database_url=sqlite_url).model_dump_json())
    script = (
        "import sys, json, time\n"
        "from central_system.config import Settings\n"
        "from central_system.views.backend_process import BackendProcess\n"
        "s = Settings.model_validate_json(open(sys.argv[1]).read())\n"
        "b = BackendProcess(s).start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    kiosk = subprocess.Popen(
        [sys.executable, "-c", script, str(settings_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert kiosk.stdout is not None
        child_pid = int(kiosk.stdout.readline())
        assert _alive(child_pid)
        kiosk.send_signal(signal.SIGKILL)
        kiosk.wait(10)
        assert wait_until(lambda: not _alive(child_pid), 20), "the backend outlived its kiosk"
    finally:
        if kiosk.poll() is None:
            kiosk.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_consultease_run_starts_the_backend_process_and_stops_it_on_sigterm(
    broker: Any, tmp_path: Path
) -> None:
    """``consultease run``: one central connection online from the child; SIGTERM ends both."""
    from central_system.utils.topics import central_status_topic

    client_id = "run-e2e-central"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTEASE_")}
    env.update(
        QT_QPA_PLATFORM="offscreen",
        CONSULTEASE_MQTT_HOST="127.0.0.1",
        CONSULTEASE_MQTT_PORT=str(broker.port),
        CONSULTEASE_MQTT_CLIENT_ID=client_id,
        CONSULTEASE_DATA_DIR=str(tmp_path),
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
        # Every thread's children: the backend is started from a background thread, and
        # /proc/<pid>/task/<pid>/children lists only the main thread's.
        import psutil

        children = [str(c.pid) for c in psutil.Process(run.pid).children()]
        assert len(children) == 1, children  # the backend process
        # To the whole process group, as Ctrl+C in a terminal or systemd's default do.
        os.killpg(run.pid, signal.SIGTERM)
        out, _ = run.communicate(timeout=30)
        assert run.returncode == 0, out
        # The child flushed and said goodbye on its way out, then exited.
        assert probe.wait_for(lambda m: m[-1].payload == b"offline", 10)
        assert wait_until(lambda: not _alive(int(children[0])), 10)
    finally:
        probe.close()
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


def test_a_backend_that_cannot_start_yet_is_retried_until_it_can(
    qtbot: Any, make_settings: Callable[..., Any], pg_server_url: str
) -> None:
    """At boot the database may not be there yet: the kiosk shows, says so, and keeps trying."""
    import uuid

    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL

    name = f"consultease_late_{uuid.uuid4().hex[:8]}"
    url = pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    backend = BackendProcess(make_settings(database_url=url), DEMO_BACKEND)
    k = Kiosk(None, SimulatedRFIDReader(), backend=backend)
    qtbot.addWidget(k.window)
    k.window.show()
    win = k.window
    assert win.mqtt_label.text() == "Starting…"  # the window is up before the backend
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        backend.start_in_background()
        # The database does not exist: the child fails to start, the kiosk says so.
        qtbot.waitUntil(lambda: backend.start_failures >= 1, timeout=WAIT_MS)
        qtbot.waitUntil(
            lambda: win.mqtt_label.property("state") == "backend_failed", timeout=WAIT_MS
        )
        assert "unavailable" in win.mqtt_label.text()
        assert name in backend.last_start_error
        k.reader.tap(STUDENT_UID)  # a student taps meanwhile: a clear message, no crash
        qtbot.waitUntil(lambda: "try again" in win.login.message.text(), timeout=WAIT_MS)
        assert win.student is None

        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        qtbot.waitUntil(lambda: backend.alive, timeout=60_000)
        qtbot.waitUntil(lambda: win.mqtt_label.text() == "Desks: connected", timeout=WAIT_MS)
        assert backend.restarts == 0  # a late first start, not a crash
        backend.demo_seed(FACULTY, STUDENTS, "admin")
        k.reader.tap(STUDENT_UID)
        qtbot.waitUntil(lambda: win.student is not None, timeout=WAIT_MS)
    finally:
        k.close()
        backend.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_request_whose_answer_is_lost_is_not_lost_and_the_student_is_told(
    qtbot: Any,
    make_settings: Callable[..., Any],
    db_url: str,
    broker: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backend dies after saving a request, before answering: the request still reaches
    the desk, and the kiosk says it may have been sent instead of inviting a second one."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CONSULTEASE_TEST_CRASH_ONCE", str(tmp_path / "crashed"))
    backend = BackendProcess(
        make_settings(database_url=db_url), "tests.e2e.crashing_backend:CrashAfterSaveBackend"
    ).start()
    k = Kiosk(None, SimulatedRFIDReader(), backend=backend)
    qtbot.addWidget(k.window)
    k.window.show()
    seeded = backend.demo_seed(FACULTY, STUDENTS, "admin")
    ana_id = seeded["faculty"]["Dr. Ana Reyes"]
    desk = DeskUnit(ana_id, "Dr. Ana Reyes", "127.0.0.1", broker.port, mode="improved").start()
    try:
        assert wait_until(
            lambda: (v := backend.get_faculty(ana_id)) is not None and v.can_request, 20
        )
        login(qtbot, k)
        win = k.window
        card = win.dashboard.cards[ana_id]
        qtbot.waitUntil(card.request_button.isEnabled, timeout=WAIT_MS)
        card.request_button.click()
        form = win.request_form
        form.message_edit.setPlainText("Could we go over my lab report, please?")
        form.send_button.click()
        qtbot.waitUntil(lambda: "may have been sent" in form.form_error.text(), timeout=WAIT_MS)
        assert form.sent is None  # the kiosk does not pretend to know
        # Saved with its outbox rows before the crash: the desk gets it exactly once.
        assert wait_until(lambda: len(desk.queue) >= 1, 30), (
            "the saved request never reached the desk"
        )
        assert desk.queue[0].message.endswith("Could we go over my lab report, please?")
        qtbot.waitUntil(lambda: backend.restarts == 1 and backend.alive, timeout=WAIT_MS)
        mine = backend.my_consultations(seeded["students"]["Maria Garcia"])
        assert [(c.faculty_id, c.status) for c in mine] == [(ana_id, "pending")]
        time.sleep(1.0)
        assert len(desk.queue) == 1
    finally:
        desk.stop()
        k.close()
        backend.close()


def test_closing_the_kiosk_does_not_wait_for_a_stuck_backend(
    make_settings: Callable[..., Any], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend stuck in a call is killed on close (bounded), and the stuck call returns."""
    from central_system.views.backend import OutcomeUnknownError

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    backend = BackendProcess(
        make_settings(database_url=sqlite_url), "tests.e2e.crashing_backend:HangingBackend"
    ).start()
    pid = backend.pid
    assert pid is not None
    outcome: dict[str, BaseException] = {}

    def stuck() -> None:
        try:
            backend.hang()
        except BaseException as err:
            outcome["error"] = err

    caller = threading.Thread(target=stuck, daemon=True)
    caller.start()
    time.sleep(0.5)
    started = time.monotonic()
    backend.close(timeout=5)
    assert time.monotonic() - started < 15
    assert not _alive(pid)
    caller.join(10)
    assert isinstance(outcome.get("error"), OutcomeUnknownError)
