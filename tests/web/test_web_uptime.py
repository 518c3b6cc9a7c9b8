"""The web Insight page draws desk uptime as server-rendered SVG and exports it as CSV (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from central_system.models import DeskConnectionEvent, Faculty, utcnow
from tests.web.helpers import ADMIN_PASSWORD, ADMIN_USER, Web, running_web, seed, sign_in


@pytest.fixture
def web(db_url: str, make_settings) -> Iterator[Web]:
    with running_web(make_settings(database_url=db_url)) as w:
        w.ids = seed(w.engine)  # type: ignore[attr-defined]
        yield w


def test_insight_draws_the_lowest_uptime_first_and_exports_the_uptime_tables(web: Web) -> None:
    now = utcnow()
    with Session(web.engine) as s:
        flaky = Faculty(name="Dr. Flaky <Desk>", department="=Ops")
        s.add(flaky)
        s.flush()
        fid = flaky.id
        # 8 days ago online, 1 day ago offline (lwt) until now: 6 of the 7 days online.
        s.add_all(
            [
                DeskConnectionEvent(
                    faculty_id=fid, at=now - timedelta(days=8), online=True, reason="status"
                ),
                DeskConnectionEvent(
                    faculty_id=fid, at=now - timedelta(days=1), online=False, reason="lwt"
                ),
            ]
        )
        s.commit()
    admin = web.client()
    sign_in(admin, ADMIN_USER, ADMIN_PASSWORD)
    page = admin.get("/web/admin/insight?days=7")
    assert page.status_code == 200
    assert 'id="uptime-chart"' in page.text
    # Escaped, with its share and its one disconnection in the bar's title.
    assert "Dr. Flaky &lt;Desk&gt;: 85.7 % online, 1 disconnections</title>" in page.text
    chart = page.text.split('id="uptime-chart"', 1)[1].split("</svg>", 1)[0]
    # The seeded desks never connected (0 %) and come before the flaky one (85.7 %).
    assert chart.index(": 0.0 % online") < chart.index("Dr. Flaky")
    assert "style=" not in page.text and "<script" not in page.text  # the CSP allows neither
    assert "Desk uptime by faculty" in page.text and "Desk uptime by department" in page.text

    csv = admin.get("/web/admin/insight/desk_uptime_by_faculty.csv?days=7")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0] == (
        "faculty_id,faculty,department,uptime_pct,disconnections,longest_outage_s,last_seen"
    )
    flaky_line = next(line for line in lines if "Flaky" in line)
    # The department "=Ops" is defused for spreadsheets; 6/7 of the range online.
    assert f"{fid},Dr. Flaky <Desk>,'=Ops,85.714,1," in flaky_line
    dept = admin.get("/web/admin/insight/desk_uptime_by_department.csv?days=7").text
    assert dept.splitlines()[0] == (
        "department,desks,uptime_pct,disconnections,longest_outage_s,never_connected"
    )
    assert "'=Ops,1,85.714,1," in dept
