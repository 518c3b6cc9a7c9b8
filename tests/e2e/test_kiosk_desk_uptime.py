"""The kiosk's admin Insight tab: desk uptime in the summary, as a table and as CSV (issue 12).

Offscreen Qt + the real service + Mosquitto, SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytestqt")

from central_system.bootstrap import System
from central_system.db import session_scope
from central_system.models import DeskConnectionEvent, utcnow
from central_system.views.app import Kiosk
from tests.e2e.kiosk_flows import sign_in_admin
from tests.e2e.test_kiosk import WAIT_MS

# The fixtures of the kiosk tests, re-exported so that pytest finds them here.
from tests.e2e.test_kiosk import kiosk as kiosk
from tests.e2e.test_kiosk import seeded as seeded
from tests.e2e.test_kiosk import system as system


def test_admin_insight_tab_shows_desk_uptime_and_exports_it(
    qtbot: Any, kiosk: Kiosk, seeded: dict[str, int], system: System
) -> None:
    ana = seeded["ana"]
    now = utcnow()
    with session_scope() as session:
        # Ana's desk: online since 10 days ago, its last will a day ago: 6 of the last 7 days.
        session.add_all(
            [
                DeskConnectionEvent(
                    faculty_id=ana, at=now - timedelta(days=10), online=True, reason="status"
                ),
                DeskConnectionEvent(
                    faculty_id=ana, at=now - timedelta(days=1), online=False, reason="lwt"
                ),
            ]
        )
    admin_ctl = system.controllers["admin"]
    password = admin_ctl.generate_password()
    admin_ctl.create_first_admin("root", password)
    area = sign_in_admin(qtbot, kiosk, "root", password)

    tab = area.insight_tab
    area.tabs.setCurrentWidget(tab)
    tab.range_box.setCurrentIndex(1)  # the last 7 days
    # Ana 85.7 %, Ben's desk never connected (0 %): 42.9 % on average (over the default
    # 30 days first: 9 of 30 days, 15.0 %).
    qtbot.waitUntil(lambda: "42.9 %" in tab.summary.text(), timeout=WAIT_MS)
    assert tab.summary.text() == (
        "No requests in this period. Desks: 42.9 % uptime on average, 1 disconnections, "
        "1 never connected; lowest: Prof. Ben Cruz (0.0 %)."
    )
    tab.report_box.setCurrentIndex(tab.report_box.findData("desk_uptime_by_faculty"))
    qtbot.waitUntil(lambda: tab.table.rowCount() == 2, timeout=WAIT_MS)
    assert tab.table.item(0, 1).text() == "Dr. Ana Reyes"
    assert tab.table.item(0, 3).text() == "85.7 %"
    assert tab.table.item(0, 4).text() == "1"
    assert tab.table.item(0, 5).text() == "1440.0 min"  # the last day, still out
    assert tab.table.item(1, 3).text() == "0.0 %"

    tab.export_button.click()
    qtbot.waitUntil(lambda: tab.message.text().startswith("CSV written: "), timeout=WAIT_MS)
    path = Path(tab.message.text().removeprefix("CSV written: "))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        "faculty_id,faculty,department,uptime_pct,disconnections,longest_outage_s,last_seen"
    )
    assert lines[1].startswith(f"{ana},Dr. Ana Reyes,Computer Science,85.71")
