"""The kiosk shows queue position, expected wait, waiting counts and expiry live (issue 12).

Offscreen Qt + the real service + Mosquitto + a simulated desk, SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytestqt")

from central_system.bootstrap import System
from central_system.db import session_scope
from central_system.models import Consultation, utcnow
from central_system.views.app import Kiosk
from faculty_desk_unit.desk import DeskUnit
from tests.e2e.kiosk_flows import sign_in_admin
from tests.e2e.test_kiosk import WAIT_MS, login

# The fixtures of the kiosk tests, re-exported so that pytest finds them here.
from tests.e2e.test_kiosk import desks as desks
from tests.e2e.test_kiosk import kiosk as kiosk
from tests.e2e.test_kiosk import seeded as seeded
from tests.e2e.test_kiosk import system as system


def _answered_history(faculty_id: int, student_id: int) -> None:
    """Four requests queued an hour ago, answered two minutes apart: three intervals of 120 s."""
    start = utcnow() - timedelta(hours=1)
    with session_scope() as session:
        for k in range(4):
            created = start - timedelta(seconds=5)
            answered = start + timedelta(seconds=120 * k)
            session.add(
                Consultation(
                    student_id=student_id,
                    faculty_id=faculty_id,
                    message="An earlier question",
                    status="accepted",
                    created_at=created,
                    accepted_at=answered,
                    answered_at=answered,
                    answer_s=(answered - created).total_seconds(),
                )
            )


def test_position_and_wait_move_as_the_queue_moves_and_expiry_shows(
    qtbot: Any,
    kiosk: Kiosk,
    desks: dict[str, DeskUnit],
    seeded: dict[str, int],
    system: System,
) -> None:
    ana = seeded["ana"]
    students = system.controllers["student"]
    consultations = system.controllers["consultation"]
    others = [
        students.create_student(name=f"Other {k}", student_id=f"2023-01{k}", rfid_uid=f"0A0B0C0{k}")
        for k in range(2)
    ]
    _answered_history(ana, others[0].id)
    first = consultations.create_consultation(others[0].id, ana, "I was here first, thanks")
    second = consultations.create_consultation(others[1].id, ana, "I was here second, thanks")

    login(qtbot, kiosk)
    win = kiosk.window
    card = win.dashboard.cards[ana]
    qtbot.waitUntil(lambda: card.waiting_label.text() == "2 waiting", timeout=WAIT_MS)
    assert win.dashboard.cards[seeded["ben"]].waiting_label.text() == "No one waiting"

    qtbot.waitUntil(card.request_button.isEnabled, timeout=WAIT_MS)
    card.request_button.click()
    form = win.request_form
    form.message_edit.setPlainText("Could you look at my lab report?")
    form.send_button.click()
    qtbot.waitUntil(lambda: form.sent is not None, timeout=WAIT_MS)
    mine = form.sent.id
    qtbot.waitUntil(
        lambda: (
            form.queue_label.text()
            == "You are number 3 in Dr. Ana Reyes's queue. Expected wait: about 6 minutes."
        ),
        timeout=WAIT_MS,
    )
    qtbot.waitUntil(lambda: card.waiting_label.text() == "3 waiting", timeout=WAIT_MS)

    # The desk answers the first request: everyone moves up (the new answer took a few
    # seconds, the median of the intervals stays 120 s).
    desk = desks["ana"]
    qtbot.waitUntil(lambda: any(str(r.cid) == str(first.id) for r in desk.queue), timeout=WAIT_MS)
    desk.acknowledge(first.id)
    qtbot.waitUntil(
        lambda: (
            form.queue_label.text()
            == "You are number 2 in Dr. Ana Reyes's queue. Expected wait: about 4 minutes."
        ),
        timeout=WAIT_MS,
    )
    # The second student cancels: Maria is next.
    consultations.cancel_consultation(second.id, others[1].id)
    qtbot.waitUntil(
        lambda: form.queue_label.text().startswith("You are number 1 in Dr. Ana Reyes's queue."),
        timeout=WAIT_MS,
    )
    qtbot.waitUntil(lambda: card.waiting_label.text() == "1 waiting", timeout=WAIT_MS)

    form.my_button.click()
    page = win.my_consultations
    qtbot.waitUntil(lambda: mine in page.rows, timeout=WAIT_MS)
    row = page.rows[mine]
    qtbot.waitUntil(
        lambda: (
            row.queue.text()
            == "You are number 1 in Dr. Ana Reyes's queue. Expected wait: about 2 minutes."
        ),
        timeout=WAIT_MS,
    )

    # Nobody answers: three hours later the sweep expires it; the row says so and the
    # desk gets the cancellation.
    cancellations_before = desk.stats.cancellations
    assert consultations.expire_due(now=utcnow() + timedelta(hours=3)) == 1
    qtbot.waitUntil(lambda: row.pill.status() == "expired", timeout=WAIT_MS)
    assert row.queue.text() == "Nobody answered in time: expired."
    assert not row.cancel_button.isVisibleTo(row)
    qtbot.waitUntil(lambda: desk.stats.cancellations > cancellations_before, timeout=WAIT_MS)
    assert not any(str(r.cid) == str(mine) for r in desk.queue)


def test_admin_insight_tab_summarises_and_exports_csv(
    qtbot: Any, kiosk: Kiosk, seeded: dict[str, int], system: System
) -> None:
    ana, maria = seeded["ana"], seeded["maria"]
    now = utcnow()
    with session_scope() as session:
        # Minutes ago: answered in 60 s and 180 s, one expired, one cancelled.
        for k, (status, answer) in enumerate(
            [("accepted", 60.0), ("busy", 180.0), ("expired", None), ("cancelled", None)]
        ):
            created = now - timedelta(minutes=30 - k)
            row = Consultation(
                student_id=maria,
                faculty_id=ana,
                message="A question for the insight tab",
                status=status,
                created_at=created,
            )
            if answer is not None:
                row.answered_at, row.answer_s = created + timedelta(seconds=answer), answer
            session.add(row)
    admin_ctl = system.controllers["admin"]
    password = admin_ctl.generate_password()
    admin_ctl.create_first_admin("root", password)
    area = sign_in_admin(qtbot, kiosk, "root", password)

    tab = area.insight_tab
    area.tabs.setCurrentWidget(tab)
    tab.range_box.setCurrentIndex(1)  # the last 7 days
    qtbot.waitUntil(lambda: "4 requests" in tab.summary.text(), timeout=WAIT_MS)
    # Answer rate: 2 answered of 2 answered + 1 expired; median of [60, 180] = 120 s.
    assert tab.summary.text().startswith(
        "4 requests, 2 answered (answer rate 67%), 1 expired, 1 cancelled, 0 still waiting. "
        "Time to first answer: median 2.0 min, 90th percentile 2.8 min."
    )
    assert tab.report_box.currentData() == "answer_times_by_faculty"
    assert tab.table.rowCount() == 1
    assert tab.table.item(0, 1).text() == "Dr. Ana Reyes"
    assert tab.table.item(0, 7).text() == "67%"

    tab.export_button.click()
    qtbot.waitUntil(lambda: tab.message.text().startswith("CSV written: "), timeout=WAIT_MS)
    path = Path(tab.message.text().removeprefix("CSV written: "))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        "faculty_id,faculty,department,requests,answered,expired,cancelled,"
        "answer_rate,median_answer_s,p90_answer_s"
    )
    assert lines[1] == f"{ana},Dr. Ana Reyes,Computer Science,4,2,1,1,0.667,120.0,168.0"
    assert "analytics.export" in [a.action for a in admin_ctl.list_audit(20)]
