"""Render every kiosk screen at 1024×600 into docs/screenshots/ (offscreen, seeded demo data).

.venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from central_system.demo.environment import (  # noqa: E402
    DEMO_ADMIN,
    DEMO_FACULTY,
    DEMO_STUDENTS,
    UNKNOWN_CARD,
    DemoEnvironment,
    demo_cards,
)
from central_system.services.rfid import SimulatedRFIDReader  # noqa: E402
from central_system.views.app import Kiosk, ensure_qapp  # noqa: E402

WAIT_S = 20.0


def main() -> int:
    """Start the demo environment, walk through the screens, save one PNG per screen."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    app = ensure_qapp(sys.argv[:1])
    # As `consultease run` and the demo run it: the central system in a server child.
    env = DemoEnvironment().start()
    kiosk = Kiosk(None, SimulatedRFIDReader(), backend=env.backend)
    win = kiosk.window
    win.resize(1024, 600)
    win.show()
    saved: list[str] = []

    def pump(seconds: float = 0.15) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def wait(pred: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            app.processEvents()
            if pred():
                pump()
                return
            time.sleep(0.01)
        raise SystemExit(f"screenshots: timed out waiting for {what}")

    def shot(name: str, widget=None) -> None:
        pump()
        path = args.out / f"{name}.png"
        (widget or win).grab().save(str(path))
        saved.append(path.name)

    try:
        shot("01-login")
        kiosk.reader.tap(UNKNOWN_CARD)
        wait(lambda: "not registered" in win.login.message.text(), "unknown card message")
        shot("02-login-unknown-card")

        kiosk.reader.tap(DEMO_STUDENTS[0][3])
        wait(
            lambda: win.student is not None and len(win.dashboard.cards) == len(DEMO_FACULTY),
            "dashboard",
        )
        shot("03-dashboard")

        fid = env.faculty_ids[DEMO_FACULTY[0][0]]
        win.dashboard.cards[fid].request_button.click()
        form = win.request_form
        form.message_edit.setPlainText("Hi")
        form.course_edit.setText("CS 101!")
        shot("04-request-form-validation")
        form.message_edit.setPlainText(
            "Could we go over the feedback on my project proposal before Friday, please?"
        )
        form.course_edit.setText("CS101")
        shot("05-request-form")
        form.send_button.click()
        wait(lambda: form.sent is not None, "sent state")
        shot("06-request-sent")
        cid = form.sent.id
        desk = env.desk(DEMO_FACULTY[0][0])
        wait(lambda: any(str(r.cid) == str(cid) for r in desk.queue), "desk received")
        import threading

        threading.Thread(target=desk.acknowledge, args=(cid,), daemon=True).start()
        wait(lambda: form.sent_status.status() == "accepted", "accepted")
        shot("07-request-accepted")

        # A second, still pending request so "My consultations" shows both states.
        win.show_dashboard()
        fid2 = env.faculty_ids[DEMO_FACULTY[1][0]]
        wait(lambda: win.dashboard.cards[fid2].request_button.isEnabled(), "second faculty")
        win.dashboard.cards[fid2].request_button.click()
        form.message_edit.setPlainText("Can you sign my enrolment form for next term?")
        form.send_button.click()
        wait(lambda: form.sent is not None and form.sent.id != cid, "second request")
        form.my_button.click()
        wait(lambda: len(win.my_consultations.rows) == 2, "my consultations")
        shot("08-my-consultations")

        win._show_warning(9)  # the countdown banner as it appears before auto-logout
        shot("09-logout-warning")
        win.logout()

        win.login.admin_button.click()
        win.admin_login.username.setText(DEMO_ADMIN)
        win.admin_login.password.setFocus()
        if win.keyboard is not None:  # as after a touch on the password field
            win.keyboard.show_for(win.admin_login.password)
        shot("10-admin-login")
        win.admin_login.password.setText(env.admin_password or "")
        win.admin_login.login_button.click()
        wait(lambda: win.current_screen() is win.admin_area, "admin area")
        area = win.admin_area
        # By widget, not by position: a tab added later (Insight) must not shift the files.
        tabs = [
            ("faculty", area.faculty_tab),
            ("students", area.students_tab),
            ("desk-units", area.desks_tab),
            ("consultations", area.consultations_tab),
            ("audit-log", area.audit_tab),
            ("system", area.system_tab),
        ]
        for index, (name, tab) in enumerate(tabs):
            area.tabs.setCurrentWidget(tab)
            if name == "students":
                area.students_tab.wait_for_card()
                kiosk.reader.tap("0A0B0C0D")
                area.students_tab.name.setText("New Student")
                area.students_tab.number.setText("2024-0100")
            pump(0.6)
            shot(f"{11 + index:02d}-admin-{name}")
        area.tabs.setCurrentWidget(area.insight_tab)
        pump(1.0)
        shot("18-admin-insight")

        win.logout()
        wait(lambda: win.current_screen() is win.login, "login screen")
        kiosk.show_simulated_reader(demo_cards())
        pump(0.3)
        shot("17-demo-simulated-reader")
    finally:
        kiosk.close()
        env.stop()
    print(f"wrote {len(saved)} screenshots to {args.out}:")
    for name in saved:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
