"""The kiosk end to end: offscreen Qt + the real service + Mosquitto + simulated desk units."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt

from central_system.bootstrap import System, build_system
from central_system.controllers import AdminController
from central_system.services.rfid import SimulatedRFIDReader
from central_system.views.app import Kiosk
from faculty_desk_unit.desk import DeskUnit
from tests.e2e.kiosk_flows import sign_in_admin
from tests.qt_touch import touch

WAIT_MS = 20_000  # generous: a noisy 2-core machine
STUDENT_UID = "04A1B2C3"
UNKNOWN_UID = "FFEE0001"


@pytest.fixture
def system(make_settings: Callable[..., Any], db_url: str) -> Iterator[System]:
    """The running central system (controllers, liveness, MQTT) on the test broker."""
    settings = make_settings(database_url=db_url)
    sysm = build_system(settings)
    sysm.start()
    assert sysm.mqtt.wait_connected(15)
    yield sysm
    sysm.stop()


@pytest.fixture
def seeded(system: System) -> dict[str, int]:
    """Two faculty members and one student with a card."""
    fac = system.controllers["faculty"]
    stu = system.controllers["student"]
    ids = {
        "ana": fac.create_faculty(name="Dr. Ana Reyes", department="Computer Science").id,
        "ben": fac.create_faculty(name="Prof. Ben Cruz", department="Physics").id,
    }
    ids["maria"] = stu.create_student(
        name="Maria Garcia", student_id="2023-0001", rfid_uid=STUDENT_UID, department="CS"
    ).id
    return ids


@pytest.fixture
def desks(broker: Any, seeded: dict[str, int], system: System) -> Iterator[dict[str, DeskUnit]]:
    """Improved-mode desks: Ana present, Ben away; waits until the central system shows both."""
    units = {
        "ana": DeskUnit(seeded["ana"], "Dr. Ana Reyes", "127.0.0.1", broker.port, mode="improved"),
        "ben": DeskUnit(
            seeded["ben"],
            "Prof. Ben Cruz",
            "127.0.0.1",
            broker.port,
            mode="improved",
            present=False,
        ),
    }
    for unit in units.values():
        unit.start()
    fac = system.controllers["faculty"]

    def shown(fid: int, status: str) -> bool:
        f = fac.get_faculty(fid)
        return f is not None and f.desk_online and f.status == status

    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        shown(seeded["ana"], "available") and shown(seeded["ben"], "away")
    ):
        time.sleep(0.05)
    assert shown(seeded["ana"], "available") and shown(seeded["ben"], "away")
    yield units
    for unit in units.values():
        unit.stop()


@pytest.fixture
def kiosk(qtbot: Any, system: System) -> Iterator[Kiosk]:
    """The kiosk window on the running system, with a simulated card reader."""
    k = Kiosk(system, SimulatedRFIDReader())
    qtbot.addWidget(k.window)
    k.window.show()
    yield k
    k.close()


def login(qtbot: Any, kiosk: Kiosk, uid: str = STUDENT_UID) -> None:
    """Tap ``uid`` and wait for the dashboard with its cards."""
    kiosk.reader.tap(uid)
    win = kiosk.window
    qtbot.waitUntil(
        lambda: (
            win.student is not None
            and win.current_screen() is win.dashboard
            and len(win.dashboard.cards) >= 1
        ),
        timeout=WAIT_MS,
    )


def test_card_tap_logs_in_and_availability_is_live(
    qtbot: Any, kiosk: Kiosk, desks: dict[str, DeskUnit], seeded: dict[str, int]
) -> None:
    login(qtbot, kiosk)
    win = kiosk.window
    assert win.student is not None and win.student.name == "Maria Garcia"
    assert "Maria Garcia" in win.user_label.text()
    ana, ben = win.dashboard.cards[seeded["ana"]], win.dashboard.cards[seeded["ben"]]
    qtbot.waitUntil(lambda: ana.request_button.isEnabled(), timeout=WAIT_MS)
    assert ana.pill.status() == "available"
    assert ben.pill.status() == "away" and not ben.request_button.isEnabled()

    desks["ana"].set_present(False)  # the faculty member walks away from the desk
    qtbot.waitUntil(lambda: ana.pill.status() == "away", timeout=WAIT_MS)
    assert not ana.request_button.isEnabled()
    desks["ben"].set_present(True)
    qtbot.waitUntil(lambda: ben.request_button.isEnabled(), timeout=WAIT_MS)

    win.dashboard.search.setText("cruz")
    assert ben.isVisibleTo(win.dashboard) and not ana.isVisibleTo(win.dashboard)


def test_unknown_card_is_refused(qtbot: Any, kiosk: Kiosk, seeded: dict[str, int]) -> None:
    kiosk.reader.tap(UNKNOWN_UID)
    win = kiosk.window
    qtbot.waitUntil(lambda: "not registered" in win.login.message.text(), timeout=WAIT_MS)
    assert win.student is None
    assert win.current_screen() is win.login
    assert win.login.message.property("kind") == "error"


def test_request_reaches_the_desk_and_acknowledge_shows_accepted(
    qtbot: Any, kiosk: Kiosk, desks: dict[str, DeskUnit], seeded: dict[str, int]
) -> None:
    login(qtbot, kiosk)
    win = kiosk.window
    card = win.dashboard.cards[seeded["ana"]]
    qtbot.waitUntil(card.request_button.isEnabled, timeout=WAIT_MS)
    qtbot.mouseClick(card.request_button, Qt.MouseButton.LeftButton)
    form = win.request_form
    assert win.current_screen() is form

    form.message_edit.setPlainText("too short")
    assert not form.send_button.isEnabled()
    assert "more" in form.message_error.text() and form.char_count.text() == "9 / 500"
    form.message_edit.setPlainText("Could we discuss my thesis outline this week?")
    form.course_edit.setText("CS101")
    assert form.send_button.isEnabled() and form.message_error.text() == ""
    qtbot.mouseClick(form.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: form.sent is not None, timeout=WAIT_MS)
    assert form.sent_label.text() == "Sent to Dr. Ana Reyes's desk"
    cid = form.sent.id

    desk = desks["ana"]
    qtbot.waitUntil(lambda: any(str(r.cid) == str(cid) for r in desk.queue), timeout=WAIT_MS)
    request = next(r for r in desk.queue if str(r.cid) == str(cid))
    assert "thesis outline" in request.message

    desk.acknowledge(cid)
    qtbot.waitUntil(lambda: form.sent_status.status() == "accepted", timeout=WAIT_MS)

    qtbot.mouseClick(form.my_button, Qt.MouseButton.LeftButton)
    mine = win.my_consultations
    qtbot.waitUntil(lambda: cid in mine.rows, timeout=WAIT_MS)
    assert mine.rows[cid].pill.status() == "accepted"
    assert not mine.rows[cid].cancel_button.isVisibleTo(mine.rows[cid])


def test_pending_request_can_be_cancelled_and_the_desk_hears_it(
    qtbot: Any, kiosk: Kiosk, desks: dict[str, DeskUnit], seeded: dict[str, int]
) -> None:
    login(qtbot, kiosk)
    win = kiosk.window
    card = win.dashboard.cards[seeded["ana"]]
    qtbot.waitUntil(card.request_button.isEnabled, timeout=WAIT_MS)
    card.request_button.click()
    win.request_form.message_edit.setPlainText("Please sign my enrolment form.")
    win.request_form.send_button.click()
    qtbot.waitUntil(lambda: win.request_form.sent is not None, timeout=WAIT_MS)
    cid = win.request_form.sent.id
    desk = desks["ana"]
    qtbot.waitUntil(lambda: any(str(r.cid) == str(cid) for r in desk.queue), timeout=WAIT_MS)

    win.request_form.my_button.click()
    mine = win.my_consultations
    qtbot.waitUntil(lambda: cid in mine.rows, timeout=WAIT_MS)
    row = mine.rows[cid]
    assert row.cancel_button.isVisibleTo(row)
    row.cancel_button.click()
    qtbot.waitUntil(lambda: mine.rows[cid].pill.status() == "cancelled", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: desk.stats.cancellations >= 1, timeout=WAIT_MS)


@contextmanager
def logged_in_kiosk_with_short_timeout(qtbot: Any, settings: Any) -> Iterator[Kiosk]:
    """A system and kiosk of their own (short inactivity settings), a student logged in."""
    sysm = build_system(settings)
    sysm.start()
    try:
        sysm.controllers["student"].create_student(
            name="Maria Garcia", student_id="2023-0001", rfid_uid=STUDENT_UID
        )
        k = Kiosk(sysm, SimulatedRFIDReader())
        qtbot.addWidget(k.window)
        k.window.show()
        try:
            k.reader.tap(STUDENT_UID)
            qtbot.waitUntil(lambda: k.window.student is not None, timeout=WAIT_MS)
            yield k
        finally:
            k.close()
    finally:
        sysm.stop()


def test_auto_logout_after_inactivity_with_countdown(
    qtbot: Any, make_settings: Callable[..., Any], sqlite_url: str
) -> None:
    settings = make_settings(
        database_url=sqlite_url, kiosk_inactivity_timeout_s=3.0, kiosk_logout_warning_s=2.0
    )
    with logged_in_kiosk_with_short_timeout(qtbot, settings) as k:
        win = k.window
        qtbot.waitUntil(lambda: win.warning.isVisible(), timeout=WAIT_MS)
        assert "logging out in" in win.warning.text()
        assert win.student is not None  # warned, not yet logged out
        qtbot.waitUntil(lambda: win.student is None, timeout=WAIT_MS)
        assert win.current_screen() is win.login
        assert "inactivity" in win.login.message.text()
        assert not win.warning.isVisible()


def test_touch_postpones_auto_logout(
    qtbot: Any, make_settings: Callable[..., Any], sqlite_url: str
) -> None:
    settings = make_settings(
        database_url=sqlite_url, kiosk_inactivity_timeout_s=2.0, kiosk_logout_warning_s=1.5
    )
    with logged_in_kiosk_with_short_timeout(qtbot, settings) as k:
        win = k.window
        qtbot.waitUntil(lambda: win.warning.isVisible(), timeout=WAIT_MS)
        # A real touch reaches the window first (QTest's widget overload would skip it).
        touch(qtbot, win.dashboard.search)
        qtbot.waitUntil(lambda: not win.warning.isVisible(), timeout=WAIT_MS)
        assert win.student is not None


def test_admin_adds_faculty_and_registers_a_card_by_tapping(
    qtbot: Any, kiosk: Kiosk, system: System
) -> None:
    admin_ctl: AdminController = system.controllers["admin"]
    password = admin_ctl.generate_password()
    admin_ctl.create_first_admin("root", password)
    win = kiosk.window

    qtbot.mouseClick(win.login.admin_button, Qt.MouseButton.LeftButton)
    assert win.current_screen() is win.admin_login
    win.admin_login.username.setText("root")
    win.admin_login.password.setText("wrong-password-1")
    win.admin_login.login_button.click()
    qtbot.waitUntil(lambda: "Wrong" in win.admin_login.error.text(), timeout=WAIT_MS)
    win.admin_login.password.setText(password)
    win.admin_login.login_button.click()
    qtbot.waitUntil(lambda: win.current_screen() is win.admin_area, timeout=WAIT_MS)

    tab = win.admin_area.faculty_tab
    tab.name.setText("Dr. Grace Uy")
    tab.department.setText("Chemistry")
    tab.save_button.click()
    qtbot.waitUntil(lambda: any(v.name == "Dr. Grace Uy" for v in tab.views), timeout=WAIT_MS)
    assert any(
        f.name == "Dr. Grace Uy" and f.department == "Chemistry"
        for f in system.controllers["faculty"].list_faculty()
    )

    win.admin_area.tabs.setCurrentWidget(win.admin_area.students_tab)
    st = win.admin_area.students_tab
    st.tap_button.click()
    kiosk.reader.tap("de:ad:be:ef:01")  # the reader's raw form; stored normalised
    qtbot.waitUntil(lambda: st.captured_uid == "DEADBEEF01", timeout=WAIT_MS)
    assert win.current_screen() is win.admin_area  # the tap did not log anyone in
    st.name.setText("Liza Ramos")
    st.number.setText("2023-0042")
    st.register_button.click()
    qtbot.waitUntil(lambda: any(v.rfid_uid == "DEADBEEF01" for v in st.views), timeout=WAIT_MS)
    student = system.controllers["student"].get_by_rfid("DEADBEEF01")
    assert student is not None and student.name == "Liza Ramos"
    actions = [a.action for a in admin_ctl.list_audit(50)]
    assert "faculty.save" in actions and "student.create" in actions

    win.logout()
    kiosk.reader.tap("DEADBEEF01")  # the new card now logs its student in
    qtbot.waitUntil(
        lambda: win.student is not None and win.student.name == "Liza Ramos", timeout=WAIT_MS
    )


def test_admin_with_a_temporary_password_must_replace_it_before_entering(
    qtbot: Any, kiosk: Kiosk, system: System
) -> None:
    admin_ctl: AdminController = system.controllers["admin"]
    admin_ctl.create_first_admin("root", admin_ctl.generate_password())
    temporary = admin_ctl.reset_password("root")  # must be changed at next login
    win = kiosk.window
    win.login.admin_button.click()
    win.admin_login.username.setText("root")
    win.admin_login.password.setText(temporary)
    win.admin_login.login_button.click()
    qtbot.waitUntil(lambda: win.admin_login.changing, timeout=WAIT_MS)
    assert win.current_screen() is win.admin_login and win.admin is None

    new_password = admin_ctl.generate_password()
    win.admin_login.password.setText(new_password)
    win.admin_login.confirm.setText(new_password + "x")
    win.admin_login.login_button.click()
    assert "differ" in win.admin_login.error.text() and win.admin is None

    win.admin_login.confirm.setText(new_password)
    win.admin_login.login_button.click()
    qtbot.waitUntil(lambda: win.current_screen() is win.admin_area, timeout=WAIT_MS)
    assert not admin_ctl.must_change_password("root")
    assert admin_ctl.authenticate("root", new_password)


def test_wrong_broker_password_is_shown_on_the_kiosk(
    qtbot: Any, make_settings: Callable[..., Any], sqlite_url: str
) -> None:
    """A wrong central password stops reconnecting and the kiosk says so (issue 5)."""
    from central_system.services.provisioning import mosquitto_hash, render_password_file
    from tests.brokers import MosquittoBroker

    broker = MosquittoBroker(extra_config="allow_anonymous false")
    password_file = broker.workdir / "passwd"
    password_file.write_text(
        render_password_file([("central", mosquitto_hash("right-password-1"))])
    )
    password_file.chmod(0o600)
    broker.extra_config += f"\npassword_file {password_file}"
    broker.start()
    sysm = None
    kiosk = None
    try:
        settings = make_settings(
            database_url=sqlite_url,
            mqtt_port=broker.port,
            mqtt_username="central",
            mqtt_password="wrong-password-2",
        )
        sysm = build_system(settings)
        sysm.start()
        kiosk = Kiosk(sysm, SimulatedRFIDReader())
        qtbot.addWidget(kiosk.window)
        kiosk.window.show()
        label = kiosk.window.mqtt_label
        qtbot.waitUntil(lambda: "refused" in label.text(), timeout=WAIT_MS)
        assert sysm.mqtt.state == "auth_failed"
        assert "administrator" in label.text()
        assert "wrong-password-2" not in (sysm.mqtt.get_stats()["last_error"] or "")
    finally:
        if kiosk is not None:
            kiosk.close()
        if sysm is not None:
            sysm.stop()
        broker.cleanup()


def test_admin_provisions_rotates_and_revokes_a_desk_unit(
    qtbot: Any, kiosk: Kiosk, system: System, seeded: dict[str, int]
) -> None:
    """Desk credentials from the admin screen: shown once, hashed in the database, audited."""
    from sqlalchemy import select

    from central_system import db
    from central_system.models import DeskUnit
    from central_system.services.provisioning import verify_mosquitto_hash

    admin_ctl: AdminController = system.controllers["admin"]
    password = admin_ctl.generate_password()
    admin_ctl.create_first_admin("root", password)
    win = kiosk.window
    area = sign_in_admin(qtbot, kiosk, "root", password)
    area.tabs.setCurrentWidget(area.desks_tab)
    tab = area.desks_tab
    qtbot.waitUntil(lambda: len(tab.items) == 2, timeout=WAIT_MS)
    row = next(i for i, d in enumerate(tab.items) if d.faculty_id == seeded["ana"])

    def desk_password() -> str:
        text = tab.secret.text()
        return next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if "MQTT password" in line
        )

    def stored() -> DeskUnit:
        with db.session_scope() as s:
            return s.scalars(select(DeskUnit).where(DeskUnit.faculty_id == seeded["ana"])).one()

    tab.table.selectRow(row)
    tab.findChild(type(win.login.admin_button), "desk_provision").click()
    qtbot.waitUntil(lambda: "MQTT password" in tab.secret.text(), timeout=WAIT_MS)
    assert f"desk-{seeded['ana']}" in tab.secret.text()
    first = desk_password()
    desk = stored()
    assert desk.password_hash and first not in desk.password_hash  # only a hash is stored
    assert verify_mosquitto_hash(desk.password_hash, first)

    tab.table.selectRow(row)
    tab.findChild(type(win.login.admin_button), "desk_rotate").click()
    qtbot.waitUntil(lambda: desk_password() != first, timeout=WAIT_MS)
    assert not verify_mosquitto_hash(stored().password_hash or "", first)

    tab.table.selectRow(row)
    tab.findChild(type(win.login.admin_button), "desk_revoke").click()
    qtbot.waitUntil(lambda: "revoked" in tab.secret.text(), timeout=WAIT_MS)
    assert stored().revoked
    actions = [a.action for a in admin_ctl.list_audit(50)]
    assert {"desk.provision", "desk.rotate", "desk.revoke"} <= set(actions)

    win.logout()  # the configuration is not left on screen
    assert tab.secret.text() == ""


def type_on_screen(qtbot: Any, keyboard: Any, text: str) -> None:
    """Touch the on-screen keys that type ``text`` (Shift for capitals, ?123 for digits)."""
    from central_system.views.keyboard import SHIFT, SPACE, TO_LETTERS, TO_SYMBOLS

    for ch in text:
        wants_symbols = ch.isdigit()
        if wants_symbols != keyboard.symbols:
            touch(qtbot, keyboard.keys[TO_SYMBOLS if wants_symbols else TO_LETTERS])
        if ch.isupper():
            touch(qtbot, keyboard.keys[SHIFT])
        touch(qtbot, keyboard.keys[SPACE if ch == " " else ch.lower()])


def test_a_student_types_the_request_on_the_onscreen_keyboard(
    qtbot: Any, kiosk: Kiosk, desks: dict[str, DeskUnit], seeded: dict[str, int]
) -> None:
    """No physical keyboard at the kiosk: the message and course code are typed by touch."""
    login(qtbot, kiosk)
    win = kiosk.window
    kb = win.keyboard
    assert kb is not None and not kb.isVisible()  # the dashboard's search box has no keys up
    card = win.dashboard.cards[seeded["ana"]]
    qtbot.waitUntil(card.request_button.isEnabled, timeout=WAIT_MS)
    touch(qtbot, card.request_button)
    form = win.request_form
    qtbot.waitUntil(lambda: win.current_screen() is form, timeout=WAIT_MS)
    # The form opens ready to type, and still fits the 600 px screen above the keys.
    qtbot.waitUntil(kb.isVisible, timeout=WAIT_MS)
    assert form.message_edit.hasFocus()
    assert win.centralWidget().minimumSizeHint().height() <= 600

    type_on_screen(qtbot, kb, "Could we meet today?")
    assert form.message_edit.toPlainText() == "Could we meet today?"
    assert form.char_count.text() == "20 / 500" and form.send_button.isEnabled()
    touch(qtbot, form.course_edit)
    qtbot.waitUntil(form.course_edit.hasFocus, timeout=WAIT_MS)
    type_on_screen(qtbot, kb, "CS101")
    assert form.course_edit.text() == "CS101"

    touch(qtbot, form.send_button)
    qtbot.waitUntil(lambda: form.sent is not None, timeout=WAIT_MS)
    assert not kb.isVisible()  # nothing to type on the "sent" screen
    cid = form.sent.id
    desk = desks["ana"]
    qtbot.waitUntil(lambda: any(str(r.cid) == str(cid) for r in desk.queue), timeout=WAIT_MS)
    assert next(r for r in desk.queue if str(r.cid) == str(cid)).message.endswith(
        "Could we meet today?"
    )


def test_the_onscreen_keyboard_can_be_turned_off(qtbot: Any, system: System) -> None:
    import dataclasses

    no_keys = dataclasses.replace(
        system, settings=system.settings.model_copy(update={"kiosk_onscreen_keyboard": False})
    )
    k = Kiosk(no_keys, SimulatedRFIDReader())
    qtbot.addWidget(k.window)
    try:
        assert k.window.keyboard is None
    finally:
        k.close()


def test_every_screen_fits_1024x600_even_with_the_keyboard_up(qtbot: Any, kiosk: Kiosk) -> None:
    """Screens scroll vertically if they must, never sideways: nothing may be cut off at the right."""
    win = kiosk.window
    assert win.keyboard is not None
    win.keyboard.show()
    screens = [win.login, win.admin_login, win.dashboard, win.request_form, win.my_consultations]
    area = win.admin_area
    # The System tab with the longest values it shows (the database URL is cut at 60).
    long_stats = {key: "x" * 60 for key, _label in area.system_tab.SHOWN}
    long_stats["backend"] = "this kiosk's own server (pid 4194304), restarted 1000 times"
    area.system_tab._loaded((long_stats, True))
    # Measured as shown: a widget's size hints are only right once it is polished on screen.
    for screen in screens:
        win._show_screen(screen)
        qtbot.wait(20)
        assert screen.minimumSizeHint().width() <= 1024, type(screen).__name__
    win._show_screen(area)
    for i in range(area.tabs.count()):
        area.tabs.setCurrentIndex(i)
        qtbot.wait(20)
        tab = area.tabs.widget(i)
        assert tab.minimumSizeHint().width() <= 1024 - 20, type(tab).__name__
        assert area.minimumSizeHint().width() <= 1024
    win.keyboard.show()
    # The keyboard and the header leave room for the request form and the admin login as they are.
    room = 600 - win.centralWidget().minimumSizeHint().height()
    assert room >= 0
    for screen in (win.request_form, win.admin_login):
        assert screen.minimumSizeHint().height() <= 600 - 64 - win.keyboard.sizeHint().height()


def test_the_demo_card_reader_is_inside_the_window_on_a_1024x600_screen(
    qtbot: Any, kiosk: Kiosk, seeded: dict[str, int]
) -> None:
    """The demo's simulated reader must be tappable on the README's 1024x600 screen."""
    from PySide6.QtCore import QPoint, QRect

    win = kiosk.window
    win.move(0, 0)
    win.resize(1024, 600)
    panel = kiosk.show_simulated_reader([("Maria Garcia", STUDENT_UID), ("Unknown", UNKNOWN_UID)])
    screen = QRect(0, 0, 1024, 600)

    def on_screen(widget: Any) -> bool:
        rect = QRect(widget.mapToGlobal(QPoint(0, 0)), widget.size())
        return widget.isVisible() and screen.contains(rect) and rect.width() > 0

    qtbot.waitUntil(lambda: on_screen(panel) and on_screen(panel.toggle), timeout=WAIT_MS)
    assert panel.window() is win  # part of the kiosk window, not a window of its own
    for widget in (panel, panel.toggle, *panel.card_buttons):
        assert on_screen(widget), widget
    # It covers neither the header (log out, broker state) nor leaves the window.
    header_bottom = win.header.mapTo(win, QPoint(0, win.header.height())).y()
    assert panel.geometry().top() >= header_bottom
    assert win.rect().contains(panel.geometry())

    qtbot.mouseClick(panel.card_buttons[0], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.current_screen() is win.dashboard, timeout=WAIT_MS)
    assert not panel.isVisible()  # the dashboard is not covered after a tap
    assert on_screen(panel.toggle)
    qtbot.mouseClick(panel.toggle, Qt.MouseButton.LeftButton)
    assert on_screen(panel) and all(on_screen(b) for b in panel.card_buttons)
    win.resize(800, 480)  # a smaller screen: the panel follows the window's corner
    assert win.rect().contains(panel.geometry())
