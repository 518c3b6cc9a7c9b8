"""Desk uptime and disconnections (issue 12) against a hand-computed fixture, SQLite and PostgreSQL.

The range is [30 Sep 00:00, 2 Oct 00:00) UTC (in the past: a range is cut at now): 48 hours, 172,800 s. Every expected
number below is worked out by hand in the comment beside it (docs/analytics.md
"Desk uptime" gives the rules).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from central_system.controllers.analytics_controller import AnalyticsController, AnalyticsError
from central_system.db import session_scope
from central_system.models import (
    DeskConnectionEvent,
    DeskUptimeDaily,
    DeskUptimeWeekly,
    Faculty,
    utcnow,
)
from tests.brokers import MosquittoBroker
from tests.server_helpers import admin_client, create_admin, db_engine, running_server

START = datetime(2026, 9, 30, tzinfo=UTC)
END = datetime(2026, 10, 2, tzinfo=UTC)
H = 3600.0


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    month = 9 if day > 2 else 10
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# (faculty, at, online, reason)
EVENTS: list[tuple[str, datetime, bool, str]] = [
    # ana: online since before the range; out 06:00-08:00 on the 30th (lwt), out 12:00-13:00
    # on the 1st (a timeout, then a repeated offline row at 12:10 that changes nothing).
    ("ana", _at(29, 20), True, "status"),
    ("ana", _at(30, 6), False, "lwt"),
    ("ana", _at(30, 8), True, "status"),
    ("ana", _at(1, 12), False, "heartbeat timeout"),
    ("ana", _at(1, 12, 10), False, "lwt"),
    ("ana", _at(1, 13), True, "heartbeat"),
    # ben: the range starts mid-outage (offline since 22:00 the day before), back at 03:00,
    # gone again at 23:00 on the 1st until the end.
    ("ben", _at(28, 10), True, "status"),
    ("ben", _at(29, 22), False, "heartbeat timeout"),
    ("ben", _at(30, 3), True, "status"),
    ("ben", _at(1, 23), False, "heartbeat timeout"),
    # dee: first online exactly at the range's start, offline at noon; the row exactly at
    # the range's end is outside it.
    ("dee", _at(30, 0), True, "status"),
    ("dee", _at(30, 12), False, "lwt"),
    ("dee", _at(2, 0), True, "status"),
    # cy: no row at all (a desk that never connected).
]
ANA_SEEN = datetime(2026, 10, 1, 23, 59, 30, tzinfo=UTC)


@pytest.fixture(params=["raw", "rolled-up"])
def uptime(
    request: pytest.FixtureRequest, engine: Engine
) -> tuple[AnalyticsController, dict[str, int]]:
    """The fixture above; "rolled-up": every finished day is first summarised into
    ``desk_uptime_daily``, so whole days come from there (the numbers must not change)."""
    with session_scope() as session:
        people = {
            "ana": Faculty(name="Dr. Ana", department="CS", last_seen=ANA_SEEN),
            "ben": Faculty(name="Dr. Ben", department="CS"),
            "cy": Faculty(name="Dr. Cy", department="Physics"),
            "dee": Faculty(name="Dr. Dee", department="Physics"),
        }
        session.add_all(people.values())
        session.flush()
        ids = {key: f.id for key, f in people.items()}
        session.add_all(
            DeskConnectionEvent(faculty_id=ids[key], at=at, online=online, reason=reason)
            for key, at, online, reason in EVENTS
        )
    controller = AnalyticsController(db=engine, timezone="UTC")
    if request.param == "rolled-up":
        assert controller.refresh_uptime_rollup()
        with session_scope() as session:
            days = session.scalar(select(func.count()).select_from(DeskUptimeDaily))
            weeks = session.scalar(select(func.count()).select_from(DeskUptimeWeekly))
        # ana and ben from 28 Sep, dee from 30 Sep, to yesterday: a row per known day and week.
        assert days and days > 3 * 60
        assert weeks and weeks > 3 * 8
        assert not controller.refresh_uptime_rollup()  # nothing new
    else:
        controller.auto_refresh = False
    return controller, ids


def test_uptime_disconnections_and_longest_outage_per_desk(
    uptime: tuple[AnalyticsController, dict[str, int]],
) -> None:
    analytics, ids = uptime
    table = analytics.desk_uptime_by_faculty(START, END)
    assert table.columns == (
        "faculty_id",
        "faculty",
        "department",
        "uptime_pct",
        "disconnections",
        "longest_outage_s",
        "last_seen",
    )
    rows = {r["faculty"]: r for r in table.as_dicts()}
    assert list(rows) == ["Dr. Ana", "Dr. Ben", "Dr. Cy", "Dr. Dee"]
    ana, ben, cy, dee = (rows[n] for n in ("Dr. Ana", "Dr. Ben", "Dr. Cy", "Dr. Dee"))
    # ana online 00-06 (6 h), 08:00 on the 30th to 12:00 on the 1st (28 h), 13-24 (11 h):
    # 45 of 48 h = 93.75 %; two disconnections (the repeated offline row is not a third);
    # longest outage 2 h.
    assert ana["faculty_id"] == ids["ana"]
    assert ana["uptime_pct"] == pytest.approx(93.75, abs=1e-4)
    assert (ana["disconnections"], ana["longest_outage_s"]) == (2, pytest.approx(2 * H, abs=0.01))
    assert ana["last_seen"] == "2026-10-01T23:59:30+00:00"
    # ben offline at the start (the last row before it), online 03:00 on the 30th to 23:00 on
    # the 1st: 44 of 48 h; one disconnection inside the range (the one before it is not
    # counted); the longest outage is the one the range starts in, cut at the start: 3 h.
    assert ben["uptime_pct"] == pytest.approx(100 * 44 / 48, abs=1e-4)
    assert (ben["disconnections"], ben["longest_outage_s"]) == (1, pytest.approx(3 * H, abs=0.01))
    assert ben["last_seen"] is None
    # cy never connected: 0 %, no disconnection, no outage to measure.
    assert (cy["uptime_pct"], cy["disconnections"], cy["longest_outage_s"]) == (0.0, 0, None)
    # dee online 00:00-12:00 on the 30th: 12 of 48 h; out from noon to the end: 36 h.
    assert dee["uptime_pct"] == pytest.approx(25.0, abs=1e-4)
    assert (dee["disconnections"], dee["longest_outage_s"]) == (1, pytest.approx(36 * H, abs=0.01))


def test_time_before_the_history_began_is_not_counted_as_offline(
    uptime: tuple[AnalyticsController, dict[str, int]],
) -> None:
    """A range reaching back before the first recorded transition (a new installation's
    "last 30 days") is measured from where the history begins: 28 Sep 10:00, ben's first
    row. Known time: to 2 Oct 00:00, 86 h."""
    analytics, _ids = uptime
    start = datetime(2026, 9, 20, tzinfo=UTC)
    rows = {r["faculty"]: r for r in analytics.desk_uptime_by_faculty(start, END).as_dicts()}
    # ana 29 Sep 20:00 to 30 Sep 06:00 (10 h) + 28 h + 11 h = 49 h; ben 28 Sep 10:00 to
    # 29 Sep 22:00 (36 h) + 44 h = 80 h; dee 12 h; cy never connected.
    assert rows["Dr. Ana"]["uptime_pct"] == pytest.approx(100 * 49 / 86, abs=1e-4)
    assert rows["Dr. Ben"]["uptime_pct"] == pytest.approx(100 * 80 / 86, abs=1e-4)
    assert rows["Dr. Dee"]["uptime_pct"] == pytest.approx(100 * 12 / 86, abs=1e-4)
    assert rows["Dr. Cy"]["uptime_pct"] == 0.0
    cs, physics = analytics.desk_uptime_by_department(start, END).as_dicts()
    assert cs["uptime_pct"] == pytest.approx(100 * (49 + 80) / 2 / 86, abs=1e-4)
    assert physics["uptime_pct"] == pytest.approx(100 * 12 / 2 / 86, abs=1e-4)


def test_no_history_at_all_gives_no_uptime_figure(engine: Engine) -> None:
    """Before any desk ever connected there is nothing to measure: no figure, not 0 %."""
    with session_scope() as session:
        session.add(Faculty(name="Dr. New", department="CS"))
    analytics = AnalyticsController(db=engine, timezone="UTC")
    (desk,) = analytics.desk_uptime_by_faculty(START, END).as_dicts()
    assert (desk["uptime_pct"], desk["disconnections"], desk["longest_outage_s"]) == (None, 0, None)
    (cs,) = analytics.desk_uptime_by_department(START, END).as_dicts()
    assert (cs["uptime_pct"], cs["desks"], cs["never_connected"]) == (None, 1, 1)


def test_uptime_per_department(uptime: tuple[AnalyticsController, dict[str, int]]) -> None:
    analytics, _ids = uptime
    table = analytics.desk_uptime_by_department(START, END)
    assert table.columns == (
        "department",
        "desks",
        "uptime_pct",
        "disconnections",
        "longest_outage_s",
        "never_connected",
    )
    cs, physics = table.as_dicts()
    # CS: (93.75 + 91.667) / 2; 2 + 1 disconnections; longest of 2 h and 3 h.
    assert cs["department"] == "CS"
    assert cs["uptime_pct"] == pytest.approx((93.75 + 100 * 44 / 48) / 2, abs=1e-4)
    assert (cs["desks"], cs["disconnections"], cs["never_connected"]) == (2, 3, 0)
    assert cs["longest_outage_s"] == pytest.approx(3 * H, abs=0.01)
    # Physics: (0 + 25) / 2; dee's one disconnection; its 36 h outage; cy never connected.
    assert physics["department"] == "Physics"
    assert physics["uptime_pct"] == pytest.approx(12.5, abs=1e-4)
    assert (physics["desks"], physics["disconnections"], physics["never_connected"]) == (2, 1, 1)
    assert physics["longest_outage_s"] == pytest.approx(36 * H, abs=0.01)


def test_a_range_ending_in_the_future_ends_now_and_a_later_range_starts_from_the_last_row(
    uptime: tuple[AnalyticsController, dict[str, int]],
) -> None:
    analytics, _ids = uptime
    # "Now" is 1 Oct 00:00: the 48 h range counts its first 24 h only. ana: 6 + 16 of 24 h.
    table = analytics.desk_uptime_by_faculty(START, END, now=_at(1, 0))
    rows = {r["faculty"]: r for r in table.as_dicts()}
    assert rows["Dr. Ana"]["uptime_pct"] == pytest.approx(100 * 22 / 24, abs=1e-4)
    assert rows["Dr. Ana"]["disconnections"] == 1
    # 1 Oct 12:05 to 13:05: ana's state comes from the two rows before it (offline since
    # 12:00; the 12:10 repeat changes nothing): online 5 of 60 minutes, no new disconnection.
    table = analytics.desk_uptime_by_faculty(_at(1, 12, 5), _at(1, 13, 5))
    ana = next(r for r in table.as_dicts() if r["faculty"] == "Dr. Ana")
    assert ana["uptime_pct"] == pytest.approx(100 * 5 / 60, abs=1e-3)
    assert ana["disconnections"] == 0
    assert ana["longest_outage_s"] == pytest.approx(55 * 60, abs=0.01)
    with pytest.raises(AnalyticsError):
        analytics.desk_uptime_by_faculty(END, START)


def test_the_reports_are_listed_and_export_csv(
    uptime: tuple[AnalyticsController, dict[str, int]],
) -> None:
    analytics, _ids = uptime
    tables = analytics.summary(START, END)
    assert {"desk_uptime_by_faculty", "desk_uptime_by_department"} <= set(tables)
    csv_text = analytics.report("desk_uptime_by_faculty", START, END).to_csv()
    lines = csv_text.splitlines()
    assert lines[0] == (
        "faculty_id,faculty,department,uptime_pct,disconnections,longest_outage_s,last_seen"
    )
    assert lines[1].endswith(",Dr. Ana,CS,93.75,2,7200.0,2026-10-01T23:59:30+00:00")
    assert ",Dr. Cy,Physics,0.0,0,," in csv_text


DESKS = 12


def test_rolled_up_days_and_raw_transitions_agree_on_random_histories(engine: Engine) -> None:
    """Twelve desks, weeks of random transitions (repeats included): every range, cut
    anywhere, gives the same numbers from the transitions alone and with the rollups
    (whole weeks, whole days, and the transitions at the edges)."""
    rng = random.Random(12)
    base = datetime(2026, 9, 1, tzinfo=UTC)
    with session_scope() as session:
        people = [Faculty(name=f"Desk {i}", department=f"D{i % 2}") for i in range(DESKS)]
        session.add_all(people)
        session.flush()
        for f in people[1:]:  # the first never connects
            at = base + timedelta(minutes=rng.randrange(0, 3000))
            for _ in range(rng.randrange(3, 30)):
                session.add(
                    DeskConnectionEvent(
                        faculty_id=f.id, at=at, online=rng.random() < 0.55, reason="status"
                    )
                )
                # Short blips and outages over several days.
                at += timedelta(
                    minutes=rng.choice((rng.randrange(1, 600), rng.randrange(600, 5000)))
                )
    raw = AnalyticsController(db=engine)
    raw.auto_refresh = False
    ranges = [(base, base + timedelta(days=12))]
    for k in range(60):
        a = base + timedelta(minutes=rng.randrange(0, 21 * 24 * 60))
        b = a + timedelta(minutes=rng.randrange(30, 20 * 24 * 60))
        if k % 3 == 1:  # ends at midnight: no partial day after the rolled-up ones
            b = b.replace(hour=0, minute=0)
        if k % 3 == 2:  # starts at midnight: none before them
            a = a.replace(hour=0, minute=0)
        if a < b:
            ranges.append((a, b))
    # From the transitions only (no rollup yet), then from the rollup.
    wanted = [raw.desk_uptime_by_faculty(a, b).rows for a, b in ranges]
    rolled = AnalyticsController(db=engine)
    assert rolled.refresh_uptime_rollup()
    _assert_day_end_states_match_the_transitions()
    for (a, b), want in zip(ranges, wanted, strict=True):
        got = rolled.desk_uptime_by_faculty(a, b).rows
        assert len(want) == len(got) == DESKS
        for w, g in zip(want, got, strict=True):
            assert w[:3] == g[:3] and w[4] == g[4], (a, b, w, g)
            assert g[3] == pytest.approx(w[3], abs=1e-3), (a, b, w, g)
            if w[5] is None:
                assert g[5] is None, (a, b, w, g)
            else:
                assert g[5] == pytest.approx(w[5], abs=0.05), (a, b, w, g)


def _assert_day_end_states_match_the_transitions() -> None:
    """Each daily row's ``online_at_end`` is the state of the desk's newest transition
    before that day's 24:00 (a report's raw tail starts from it)."""
    ev, d = DeskConnectionEvent, DeskUptimeDaily
    with session_scope() as session:
        events: dict[int, list[tuple[datetime, int, bool]]] = {}
        for fid, at, eid, online in session.execute(select(ev.faculty_id, ev.at, ev.id, ev.online)):
            events.setdefault(fid, []).append((at, eid, online))
        days = session.execute(select(d.faculty_id, d.day, d.online_at_end)).all()
    assert days
    states = {True: 0, False: 0}
    for fid, day, online_at_end in days:
        before = [e for e in events[fid] if e[0] < day + timedelta(days=1)]
        assert before, (fid, day)
        assert online_at_end == max(before)[2], (fid, day)
        states[online_at_end] += 1
    assert states[True] and states[False]  # both states occur, so a constant cannot pass


def test_the_api_serves_and_exports_the_uptime_reports(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    """``GET /api/v1/analytics`` on a real server process carries both uptime tables."""
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        create_admin(engine)
        now = utcnow()
        with Session(engine) as s:
            desk = Faculty(name="Dr. Ana", department="CS")
            s.add(desk)
            s.flush()
            s.add(
                DeskConnectionEvent(
                    faculty_id=desk.id, at=now - timedelta(days=10), online=True, reason="status"
                )
            )
            s.add(
                DeskConnectionEvent(
                    faculty_id=desk.id, at=now - timedelta(days=1), online=False, reason="lwt"
                )
            )
            s.commit()
        admin = admin_client(server.url)
        tables = admin.analytics(7)
        (row,) = tables["desk_uptime_by_faculty"].as_dicts()
        assert row["faculty"] == "Dr. Ana" and row["disconnections"] == 1
        assert row["uptime_pct"] == pytest.approx(100 * 6 / 7, abs=0.01)
        (dept,) = tables["desk_uptime_by_department"].as_dicts()
        assert (dept["department"], dept["desks"], dept["never_connected"]) == ("CS", 1, 0)
        written = Path(admin.export_analytics("desk_uptime_by_department", 7))
        assert written.read_text(encoding="utf-8").startswith(
            "department,desks,uptime_pct,disconnections,longest_outage_s,never_connected\nCS,1,85.71"
        )
