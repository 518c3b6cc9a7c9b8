"""Analytics checked against a hand-computed fixture, on SQLite and PostgreSQL (issue 12)."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select

from central_system.controllers.analytics_controller import (
    AnalyticsController,
    AnalyticsError,
    histogram_percentile,
    percentile,
)
from central_system.db import session_scope
from central_system.models import (
    AnalyticsRollupState,
    Consultation,
    ConsultationStatsDaily,
    ConsultationStatsHourly,
    ConsultationStatsWeekly,
    Faculty,
    Student,
)
from central_system.models.analytics import ANSWER_BUCKETS_S

MANILA = ZoneInfo("Asia/Manila")  # UTC+8 all year: local days and hours below are by hand
# [2026-11-30 00:00, 2026-12-02 00:00) Manila time.
START = datetime(2026, 11, 30, tzinfo=MANILA)
END = datetime(2026, 12, 2, tzinfo=MANILA)


def _utc(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# (faculty, created UTC, final status, seconds to the first answer or None)
ROWS: list[tuple[str, datetime, str, float | None]] = [
    ("ana", _utc(30, 1, 0), "accepted", 60),  # Mon 09:00 local
    ("ana", _utc(30, 1, 30), "busy", 120),  # Mon 09:30
    ("ana", _utc(30, 2, 10), "declined", 300),  # Mon 10:10
    ("ana", _utc(30, 2, 20), "expired", None),  # Mon 10:20
    ("ben", _utc(30, 2, 40), "accepted", 30),  # Mon 10:40
    ("ben", _utc(30, 15, 30), "cancelled", None),  # Mon 23:30
    ("ben", _utc(30, 16, 30), "completed", 90),  # Tue 00:30 (still Monday in UTC)
    ("cy", _utc(1, 3, 0, month=12), "expired", None),  # Tue 11:00
    ("cy", _utc(1, 3, 5, month=12), "pending", None),  # Tue 11:05
    # Outside the range: one minute before it (Sun 23:59 local) and exactly at its end.
    ("ana", _utc(29, 15, 59), "accepted", 10),
    ("ben", _utc(1, 16, 0, month=12), "pending", None),
]


@pytest.fixture(params=["raw", "rolled-up"])
def analytics(request: pytest.FixtureRequest, engine: Engine) -> AnalyticsController:
    """The fixture above in the database, and a controller reading Manila time.

    "rolled-up": every day of the fixture is first counted into the rollup tables, so
    the reports read them (and the raw rows only at the range's partial UTC days); the
    expected numbers are the same.
    """
    with session_scope() as session:
        student = Student(name="S", student_id="1", rfid_uid="AABBCCDD")
        people = {
            "ana": Faculty(name="Dr. Ana", department="CS"),
            "ben": Faculty(name="Dr. Ben", department="CS"),
            "cy": Faculty(name="Dr. Cy", department="Physics"),
        }
        session.add_all([student, *people.values()])
        session.flush()
        for key, created, status, answer in ROWS:
            row = Consultation(
                student_id=student.id,
                faculty_id=people[key].id,
                message="A question for the analytics",
                status=status,
                created_at=created,
            )
            if answer is not None:
                answered = created + timedelta(seconds=answer)
                row.answered_at, row.answer_s = answered, float(answer)
                first = "accepted" if status == "completed" else status
                setattr(row, f"{first}_at", answered)
            if status in ("cancelled", "expired"):
                setattr(row, f"{status}_at", created + timedelta(hours=1))
            session.add(row)
    controller = AnalyticsController(db=engine, timezone="Asia/Manila")
    if request.param == "rolled-up":
        assert controller.refresh_rollups(now=END + timedelta(days=3))
        with session_scope() as session:
            hours = session.scalar(select(func.sum(ConsultationStatsHourly.requests)))
            days = session.scalar(select(func.count()).select_from(ConsultationStatsDaily))
        assert hours == len(ROWS)  # every request of the fixture, the ones outside the range too
        assert days == 5  # (29 Nov: ana), (30 Nov: ana, ben), (1 Dec: cy, ben) in UTC days
        assert not controller.refresh_rollups(now=END + timedelta(days=3))  # nothing new
    else:
        controller.refresh_rollups(now=START - timedelta(days=30))  # nothing rolled up
    return controller


def _ids(analytics: AnalyticsController) -> dict[str, int]:
    table = analytics.answer_times_by_faculty(START, END)
    return {r["faculty"]: r["faculty_id"] for r in table.as_dicts()}


def test_requests_per_local_day(analytics: AnalyticsController) -> None:
    table = analytics.requests_per_day(START, END)
    assert table.columns == ("day", "requests", "answered", "expired", "cancelled")
    assert table.rows == [("2026-11-30", 6, 4, 1, 1), ("2026-12-01", 3, 1, 1, 0)]


def test_hour_of_week_and_busiest_hours(analytics: AnalyticsController) -> None:
    assert analytics.requests_by_hour_of_week(START, END).rows == [
        ("Monday", 9, 2),
        ("Monday", 10, 3),
        ("Monday", 23, 1),
        ("Tuesday", 0, 1),
        ("Tuesday", 11, 2),
    ]
    assert analytics.busiest_hours(START, END, limit=3).rows == [
        ("Monday", 10, 3),
        ("Monday", 9, 2),
        ("Tuesday", 11, 2),
    ]


def test_outcomes_answer_rate_and_percentiles(analytics: AnalyticsController) -> None:
    (row,) = analytics.outcomes(START, END).as_dicts()
    # Answer times [30, 60, 90, 120, 300]: median 90; p90 at 0.9 * 4 = 3.6 -> 120 + 0.6 * 180.
    assert row == {
        "requests": 9,
        "answered": 5,
        "pending": 1,
        "accepted": 2,
        "busy": 1,
        "declined": 1,
        "completed": 1,
        "cancelled": 1,
        "expired": 2,
        "answer_rate": pytest.approx(5 / 7),
        "median_answer_s": pytest.approx(90),
        "p90_answer_s": pytest.approx(228),
    }


def test_answer_times_per_faculty_and_department(analytics: AnalyticsController) -> None:
    ids = _ids(analytics)
    approx = pytest.approx
    assert analytics.answer_times_by_faculty(START, END).rows == [
        # [60, 120, 300]: median 120, p90 at 1.8 -> 120 + 0.8 * 180 = 264; 3 of 3 + 1 expired.
        (ids["Dr. Ana"], "Dr. Ana", "CS", 4, 3, 1, 0, approx(0.75), approx(120), approx(264)),
        # [30, 90]: median 60, p90 at 0.9 -> 30 + 0.9 * 60 = 84; the cancellation does not count.
        (ids["Dr. Ben"], "Dr. Ben", "CS", 3, 2, 0, 1, approx(1.0), approx(60), approx(84)),
        # Nothing answered, one expired: rate 0, no answer times.
        (ids["Dr. Cy"], "Dr. Cy", "Physics", 2, 0, 1, 0, approx(0.0), None, None),
    ]
    assert analytics.answer_times_by_department(START, END).rows == [
        ("CS", 7, 5, 1, 1, approx(5 / 6), approx(90), approx(228)),
        ("Physics", 2, 0, 1, 0, approx(0.0), None, None),
    ]


def test_every_report_exports_csv(analytics: AnalyticsController) -> None:
    tables = analytics.summary(START, END)
    assert set(tables) == set(analytics.reports)
    for name, table in tables.items():
        lines = table.to_csv().splitlines()
        assert lines[0] == ",".join(table.columns), name
        assert len(lines) == 1 + len(table.rows), name
    assert tables["requests_per_day"].to_csv() == (
        "day,requests,answered,expired,cancelled\n2026-11-30,6,4,1,1\n2026-12-01,3,1,1,0\n"
    )
    faculty_csv = tables["answer_times_by_department"].to_csv().splitlines()
    assert faculty_csv[1] == "CS,7,5,1,1,0.833,90.0,228.0"
    assert faculty_csv[2] == "Physics,2,0,1,0,0.0,,"


def test_a_narrower_range_and_bad_ranges(analytics: AnalyticsController) -> None:
    monday = analytics.outcomes(START, START + timedelta(days=1)).as_dicts()[0]
    assert (monday["requests"], monday["answered"], monday["expired"]) == (6, 4, 1)
    with pytest.raises(AnalyticsError, match="after its start"):
        analytics.outcomes(END, START)
    with pytest.raises(AnalyticsError, match="time zone"):
        analytics.outcomes(START.replace(tzinfo=None), END)
    with pytest.raises(AnalyticsError, match="three years"):
        analytics.outcomes(START, START + timedelta(days=2000))
    with pytest.raises(AnalyticsError, match="Unknown report"):
        analytics.report("nope", START, END)


def test_long_ranges_read_percentiles_from_answer_time_histograms(
    analytics: AnalyticsController,
) -> None:
    # Past this many answers the percentiles come from the histograms (buckets 30-45, 60-90,
    # 90-120, 120-180, 300-420 s hold 30, 60, 90, 120, 300). The answer at 0-based rank k of
    # a bucket [low, high) with c answers, t = k - answers in earlier buckets, is estimated
    # at low + (high - low) * (t + 0.5) / c; a percentile at rank r interpolates between the
    # estimates of ranks floor(r) and ceil(r), like percentile_cont between the answers.
    analytics.exact_percentiles_max = 0
    (row,) = analytics.outcomes(START, END).as_dicts()
    # median rank 2 -> 90-120 alone -> 105; p90 rank 3.6: rank 3 -> 120-180 alone -> 150,
    # rank 4 -> 300-420 alone -> 360, so 150 + 0.6 * 210 = 276 (exact: 228).
    assert (row["median_answer_s"], row["p90_answer_s"]) == (105, pytest.approx(276))
    by_faculty = {
        r["faculty"]: (r["median_answer_s"], r["p90_answer_s"])
        for r in analytics.answer_times_by_faculty(START, END).as_dicts()
    }
    # Ana [60, 120, 300]: rank 1 -> 150; rank 1.8 -> 150 + 0.8 * (360 - 150) = 318.
    # Ben [30, 90]: ranks 0 -> 37.5 and 1 -> 105: 0.5 -> 71.25, 0.9 -> 98.25.
    assert by_faculty == {
        "Dr. Ana": (150, pytest.approx(318)),
        "Dr. Ben": (pytest.approx(71.25), pytest.approx(98.25)),
        "Dr. Cy": (None, None),
    }
    by_department = {
        r["department"]: (r["median_answer_s"], r["p90_answer_s"])
        for r in analytics.answer_times_by_department(START, END).as_dicts()
    }
    assert by_department == {"CS": (105, pytest.approx(276)), "Physics": (None, None)}


def test_weekly_daily_and_raw_paths_agree(engine: Engine) -> None:
    """Six weeks of requests: reports from rollups (weeks, days, raw edges) equal raw reports."""
    first_day = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
    statuses = ("accepted", "busy", "expired", "cancelled", "declined", "completed", "pending")
    with session_scope() as session:
        student = Student(name="S", student_id="1", rfid_uid="AABBCCDD")
        people = [
            Faculty(name=f"Dr. {n}", department=d)
            for n, d in (("A", "CS"), ("B", "CS"), ("C", "Math"))
        ]
        session.add_all([student, *people])
        session.flush()
        for d in range(42):
            for k, f in enumerate(people):
                for j in range(3):
                    created = first_day + timedelta(days=d, hours=1 + 7 * j, minutes=13 * k)
                    status = statuses[(d + k + j) % len(statuses)]
                    row = Consultation(
                        student_id=student.id,
                        faculty_id=f.id,
                        message="A question over six weeks",
                        status=status,
                        created_at=created,
                    )
                    if status in ("accepted", "busy", "declined", "completed"):
                        seconds = float((d * 37 + k * 11 + j * 101) % 4000 + 5)
                        row.answer_s = seconds
                        row.answered_at = created + timedelta(seconds=seconds)
                    session.add(row)
    # Mid-day Wednesday to mid-day Friday five weeks later: partial days and weeks at both ends.
    start = datetime(2026, 10, 7, 13, 30, tzinfo=UTC)
    end = datetime(2026, 11, 13, 7, 0, tzinfo=UTC)
    raw = AnalyticsController(db=engine, timezone="Asia/Manila")
    raw.auto_refresh = False  # no rollups at all: every number from the consultations
    rolled = AnalyticsController(db=engine, timezone="Asia/Manila")
    for controller in (raw, rolled):
        controller.exact_percentiles_max = 0  # histograms on both paths
    expected = raw.summary(start, end)
    assert expected["outcomes"].rows[0][0] > 300
    assert rolled.refresh_rollups(now=datetime(2026, 12, 1, tzinfo=UTC))
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ConsultationStatsWeekly)) == 3 * 6
    got = rolled.summary(start, end)
    assert got == expected
    # And the exact percentiles (below the threshold) agree too.
    raw.exact_percentiles_max = rolled.exact_percentiles_max = 10**9
    assert rolled.summary(start, end) == raw.summary(start, end)


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ([0] * 24, 0.5, None),
        ([0, 0, 0, 0, 10] + [0] * 19, 0.5, 75.0),  # ten answers in 60-90 s: rank 4.5 -> 75
        ([0] * 23 + [4], 0.9, 86400.0),  # the open last bucket answers its lower bound
    ],
)
def test_histogram_percentile(counts: list[int], q: float, expected: float | None) -> None:
    assert histogram_percentile(counts, q) == expected


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 0.5, None), ([7.0], 0.9, 7.0), ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5), ([0, 10], 0.9, 9.0)],
)
def test_percentile_interpolates_like_percentile_cont(
    values: list[Any], q: float, expected: float | None
) -> None:
    assert percentile(values, q) == expected


def _bucket_width(value: float) -> float:
    """The width of the histogram bucket that holds ``value`` (inf for the open last one)."""
    bounds = ANSWER_BUCKETS_S
    for low, high in itertools.pairwise(bounds):
        if low <= value < high:
            return float(high - low)
    return math.inf


def _seed_spread_answers(days: int, per_day: int) -> None:
    """Three faculty in two departments; answers spread log-uniformly from 1 s to 5 h."""
    first_day = datetime(2026, 10, 5, tzinfo=UTC)
    rng = random.Random(12)
    with session_scope() as session:
        student = Student(name="S", student_id="1", rfid_uid="AABBCCDD")
        people = [
            Faculty(name=f"Dr. {n}", department=d)
            for n, d in (("A", "CS"), ("B", "CS"), ("C", "Math"))
        ]
        session.add_all([student, *people])
        session.flush()
        for i in range(days * per_day):
            created = first_day + timedelta(seconds=i * 86400 // per_day + rng.randrange(600))
            status = rng.choice(("accepted", "accepted", "busy", "expired", "cancelled"))
            row = Consultation(
                student_id=student.id,
                faculty_id=people[rng.randrange(3)].id,
                message="A question with a spread-out answer time",
                status=status,
                created_at=created,
            )
            if status in ("accepted", "busy"):
                row.answer_s = round(math.exp(rng.uniform(0.0, math.log(5 * 3600))), 3)
                row.answered_at = created + timedelta(seconds=row.answer_s)
            session.add(row)


def test_rollup_percentiles_agree_with_exact_ones_within_the_stated_bound(engine: Engine) -> None:
    """docs/analytics.md: a percentile from the buckets is off by less than the widths of the
    buckets of the two answers it interpolates between (so < 15 s + 50 % under 6 h)."""
    _seed_spread_answers(days=21, per_day=60)
    start = datetime(2026, 10, 5, 9, 30, tzinfo=UTC)
    end = datetime(2026, 10, 24, 17, 0, tzinfo=UTC)
    exact = AnalyticsController(db=engine, timezone="Asia/Manila")
    exact.exact_percentiles_max = 10**9
    approx = AnalyticsController(db=engine, timezone="Asia/Manila")
    approx.exact_percentiles_max = 0
    assert approx.refresh_rollups(now=datetime(2026, 12, 1, tzinfo=UTC))
    with session_scope() as session:
        rows = session.execute(
            select(Consultation.faculty_id, Faculty.department, Consultation.answer_s)
            .join(Faculty, Faculty.id == Consultation.faculty_id)
            .where(Consultation.created_at >= start, Consultation.created_at < end)
            .where(Consultation.answer_s.is_not(None))
        ).all()
    answers: dict[Any, list[float]] = {None: sorted(a for _f, _d, a in rows)}
    for fid, dept, a in rows:
        answers.setdefault(fid, []).append(a)
        answers.setdefault(dept, []).append(a)
    compared = 0
    for report, group_of in (
        ("outcomes", lambda r: None),
        ("answer_times_by_faculty", lambda r: r["faculty_id"]),
        ("answer_times_by_department", lambda r: r["department"]),
    ):
        got = approx.report(report, start, end).as_dicts()
        want = exact.report(report, start, end).as_dicts()
        assert len(got) == len(want) > 0
        for g, w in zip(got, want, strict=True):
            values = sorted(answers[group_of(w)])
            assert len(values) > 100
            for column, q in (("median_answer_s", 0.5), ("p90_answer_s", 0.9)):
                pos = q * (len(values) - 1)
                low, high = values[math.floor(pos)], values[math.ceil(pos)]
                t = pos - math.floor(pos)
                bound = (1 - t) * _bucket_width(low) + t * _bucket_width(high)
                assert w[column] == pytest.approx(percentile(values, q))
                assert abs(g[column] - w[column]) < bound, (report, g, w, column)
                assert abs(g[column] - w[column]) < 15 + 0.5 * w[column]
                compared += 1
    assert compared == 2 * (1 + 3 + 2)


def test_rolled_up_and_recent_raw_ranges_combine(engine: Engine) -> None:
    """A range across the rollups' end: finished days from the rollups, the recent ones (not
    yet rolled up) from the consultations; the sums, the histograms and /metrics' totals are
    the numbers of a raw scan."""
    _seed_spread_answers(days=14, per_day=24)
    start = datetime(2026, 10, 6, 5, 30, tzinfo=UTC)
    end = datetime(2026, 10, 19, 2, 0, tzinfo=UTC)
    raw = AnalyticsController(db=engine, timezone="Asia/Manila")
    raw.auto_refresh = False
    expected: dict[int, Any] = {}
    for threshold in (0, 10**9):  # histogram and exact percentiles
        raw.exact_percentiles_max = threshold
        expected[threshold] = raw.summary(start, end)
    expected_totals = raw.totals()
    assert expected_totals.by_status["accepted"] > 50
    assert (
        sum(expected_totals.buckets)
        == expected_totals.by_status["accepted"] + (expected_totals.by_status["busy"])
    )

    rolled = AnalyticsController(db=engine, timezone="Asia/Manila")
    now = datetime(2026, 10, 14, 13, 0, tzinfo=UTC)  # rolls up the days before 12 Oct
    assert rolled.refresh_rollups(now=now)
    rolled.auto_refresh = False  # keep the rollups' end inside the range
    with session_scope() as session:
        until = session.get(AnalyticsRollupState, "consultations")
        assert until is not None
        assert start < until.until.astimezone(UTC) == datetime(2026, 10, 12, tzinfo=UTC) < end
        hourly = session.scalar(select(func.sum(ConsultationStatsHourly.requests)))
        assert 0 < hourly < len(session.scalars(select(Consultation.id)).all())
    for threshold in (0, 10**9):
        rolled.exact_percentiles_max = threshold
        assert rolled.summary(start, end) == expected[threshold]
    assert rolled.totals() == expected_totals
