"""Queue position and analytics query times (issue 12).

    flock /tmp/consultease-bench.lock .venv/bin/python benchmarks/analytics.py \
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--rows 1000000] \
        [--runs 30] [--keep]

What it does:
1. creates (or, with ``--keep``, reuses) the database ``consultease_bench_analytics`` on
   the PostgreSQL server, migrated to the newest schema;
2. fills it with fast bulk SQL (``generate_series``): 200 faculty in 10 departments,
   5,000 students, ``--rows`` consultations spread over 730 days (55 % accepted or
   completed, 10 % busy, 5 % declined, 10 % cancelled, 20 % expired; answer times
   10 s to 30 min), plus 2,000 pending requests made in the last hour (about 10 per
   faculty member); then ``VACUUM ANALYZE``;
3. counts the finished days into the rollup tables (``refresh_rollups``, timed: the
   one-off cost after an upgrade), then times, ``--runs`` times each after two warm-up calls: every report of
   ``AnalyticsController`` over the last 7, 30, 90 and 365 days, and
   ``QueueController.position`` / ``positions_for_student`` / ``waiting_counts``;
   the same queue calls on a SQLite file with the same 200 faculty and 2,000 pending
   requests (and 20,000 answered ones);
4. prints p50 / p99 / max in ms per call and PASS/FAIL against the target
   (analytics p99 <= 200 ms). A ``SELECT 1`` round trip measured in the same run is
   printed as the machine's floor. Per range, how far the per-faculty median and 90th
   percentile read from the histograms are from the exact ones (mean and max error).

``--uptime`` instead times the desk-uptime reports over a connection history, in the
database ``consultease_bench_uptime``: ``--desks`` (2,000) faculty in 20 departments,
``--history-days`` (120) of transitions: every desk online at the start, then per day
2 disconnections (1 in 20 desks: 20) at random times, each back after up to 8 % of the
interval between them; 1 desk in 100 never connected. Then the uptime rollup is brought up
to date (timed: the one-off cost after an upgrade, a day at a time), and
``desk_uptime_by_faculty`` and ``desk_uptime_by_department`` are timed over the last 7, 30
and 90 days.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, create_engine, text  # noqa: E402

from central_system import db as dbmod  # noqa: E402
from central_system.controllers.analytics_controller import AnalyticsController  # noqa: E402
from central_system.controllers.queue_controller import (  # noqa: E402
    ExpiryPolicy,
    QueueController,
)

DB_NAME = "consultease_bench_analytics"
UPTIME_DB_NAME = "consultease_bench_uptime"
TARGET_P99_MS = 200.0
FACULTY = 200
STUDENTS = 5000
PENDING = 2000
RANGES_DAYS = (7, 30, 90, 365)

_PEOPLE_SQL = [
    f"""INSERT INTO faculty (name, department, status, desk_online, created_at)
        SELECT 'Faculty ' || g, 'Department ' || (g % 10), 'available', true, now()
        FROM generate_series(1, {FACULTY}) g""",  # noqa: S608 - module constants
    f"""INSERT INTO students (name, student_id, department, rfid_uid, created_at)
        SELECT 'Student ' || g, 'S' || g, 'Department ' || (g % 10), lpad(to_hex(g), 8, '0'), now()
        FROM generate_series(1, {STUDENTS}) g""",  # noqa: S608 - module constants
]

# Statuses by one random draw r: the answered ones get an answer time from r2.
_HISTORY_SQL = """
INSERT INTO consultations (student_id, faculty_id, message, status, created_at,
                           accepted_at, busy_at, declined_at, completed_at, cancelled_at,
                           expired_at, answered_at, answer_s)
SELECT s, f, 'Benchmark request text', st, created,
       CASE WHEN st IN ('accepted', 'completed') THEN created + ans * interval '1 second' END,
       CASE WHEN st = 'busy' THEN created + ans * interval '1 second' END,
       CASE WHEN st = 'declined' THEN created + ans * interval '1 second' END,
       CASE WHEN st = 'completed' THEN created + (ans + 900) * interval '1 second' END,
       CASE WHEN st = 'cancelled' THEN created + interval '10 minutes' END,
       CASE WHEN st = 'expired' THEN created + interval '2 hours' END,
       CASE WHEN ans IS NOT NULL THEN created + ans * interval '1 second' END,
       ans
FROM (
  SELECT s, f, created, st,
         CASE WHEN st IN ('accepted', 'completed', 'busy', 'declined')
              THEN 10 + r2 * 1790 END AS ans
  FROM (
    SELECT 1 + (g::bigint * 7919) % :students AS s,
           1 + (g::bigint * 104729) % :faculty AS f,
           now() - interval '730 days' + (g::float8 / :rows) * interval '730 days' AS created,
           CASE WHEN r < 0.45 THEN 'accepted' WHEN r < 0.55 THEN 'completed'
                WHEN r < 0.65 THEN 'busy' WHEN r < 0.70 THEN 'declined'
                WHEN r < 0.80 THEN 'cancelled' ELSE 'expired' END AS st,
           r2
    FROM (SELECT g, random() AS r, random() AS r2 FROM generate_series(1, :rows) g) a
  ) b
) c
"""

_PENDING_SQL = """
INSERT INTO consultations (student_id, faculty_id, message, status, created_at)
SELECT 1 + (g * 31) % :students, 1 + g % :faculty, 'Benchmark pending request', 'pending',
       now() - interval '1 hour' + g * interval '1 second'
FROM generate_series(1, :pending) g
"""


def _times(fn: Callable[[], Any], runs: int) -> list[float]:
    fn()
    fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _line(label: str, ms: list[float], target: float | None = None) -> bool:
    p99 = _p(ms, 0.99)
    verdict = "" if target is None else ("PASS" if p99 <= target else "FAIL")
    print(
        f"  {label:<48} p50 {statistics.median(ms):8.2f}  p99 {p99:8.2f}  "
        f"max {max(ms):8.2f} ms  {verdict}"
    )
    return target is None or p99 <= target


def bench_db_url(admin_url: str, name: str = DB_NAME) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def _create_pg(admin_url: str, name: str, keep: bool) -> Engine:
    """The database ``name`` (dropped first unless ``keep``), migrated to the newest schema."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first()
        if exists and not keep:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            exists = None
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return dbmod.init_db(bench_db_url(admin_url, name))


def prepare_pg(admin_url: str, rows: int, keep: bool) -> Engine:
    engine = _create_pg(admin_url, DB_NAME, keep)
    with engine.connect() as conn:
        have = conn.execute(text("SELECT count(*) FROM consultations")).scalar_one()
    if have >= rows + PENDING:
        print(f"reusing {have:,} consultations in {DB_NAME}")
        return engine
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE consultations, students, faculty RESTART IDENTITY CASCADE"))
        for sql in _PEOPLE_SQL:
            conn.execute(text(sql))
        conn.execute(text(_HISTORY_SQL), {"rows": rows, "students": STUDENTS, "faculty": FACULTY})
        conn.execute(
            text(_PENDING_SQL), {"pending": PENDING, "students": STUDENTS, "faculty": FACULTY}
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(f"generated {rows:,} + {PENDING:,} consultations in {time.perf_counter() - t0:.1f} s")
    return engine


def _prepare_sqlite(path: Path) -> Engine:
    engine = dbmod.init_db(f"sqlite:///{path}")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO faculty (name, department, status, desk_online, created_at) "
                "VALUES (:n, 'D', 'available', 1, :t)"
            ),
            [{"n": f"Faculty {i}", "t": now.replace(tzinfo=None)} for i in range(FACULTY)],
        )
        conn.execute(
            text(
                "INSERT INTO students (name, student_id, department, rfid_uid, created_at) "
                "VALUES (:n, :s, 'D', :u, :t)"
            ),
            [
                {"n": f"S{i}", "s": f"S{i}", "u": f"{i:08X}", "t": now.replace(tzinfo=None)}
                for i in range(1, STUDENTS + 1)
            ],
        )
        history = []
        for i in range(20_000):
            created = now - timedelta(days=20) + timedelta(seconds=60 * i)
            history.append(
                {
                    "s": 1 + i % STUDENTS,
                    "f": 1 + i % FACULTY,
                    "st": "accepted",
                    "c": created.replace(tzinfo=None),
                    "a": (created + timedelta(seconds=90)).replace(tzinfo=None),
                    "x": 90.0,
                }
            )
        pending = [
            {
                "s": 1 + (i * 31) % STUDENTS,
                "f": 1 + i % FACULTY,
                "st": "pending",
                "c": (now - timedelta(hours=1) + timedelta(seconds=i)).replace(tzinfo=None),
                "a": None,
                "x": None,
            }
            for i in range(PENDING)
        ]
        conn.execute(
            text(
                "INSERT INTO consultations (student_id, faculty_id, message, status, created_at, "
                "answered_at, accepted_at, answer_s) VALUES (:s, :f, 'Bench', :st, :c, :a, :a, :x)"
            ),
            history + pending,
        )
    return engine


def _queue_calls(engine: Engine, runs: int, label: str) -> None:
    queue = QueueController(db=engine, expiry=ExpiryPolicy())
    with engine.connect() as conn:
        cid, sid = conn.execute(
            text(
                "SELECT id, student_id FROM consultations WHERE status = 'pending' "
                "ORDER BY created_at DESC LIMIT 1"
            )
        ).one()
        floor = _times(lambda: conn.execute(text("SELECT 1")).scalar_one(), runs)
    position = queue.position(cid)
    assert position is not None
    print(
        f"{label}: {FACULTY} faculty, {PENDING:,} pending; the request timed is number "
        f"{position.position} of {position.waiting} (history {position.history})"
    )
    _line("SELECT 1 round trip (the floor)", floor)
    _line("QueueController.position (one request)", _times(lambda: queue.position(cid), runs))
    _line(
        "QueueController.positions_for_student",
        _times(lambda: queue.positions_for_student(sid), runs),
    )
    _line("QueueController.waiting_counts (all faculty)", _times(queue.waiting_counts, runs))


# Per desk d: online at the start of the history, then per day n disconnections (n = 20 for
# 1 desk in 20, else 2) at random points of their slot, each back online after up to 8 % of
# the slot; desks with d % 100 = 0 have no row (never connected).
_UPTIME_SQL = """
WITH slots AS (
  SELECT d, n, j, interval '1 day' / n AS slot, random() AS r1, random() AS r2
  FROM (SELECT d, CASE WHEN d % 20 = 0 THEN 20 ELSE 2 END AS n
        FROM generate_series(1, :desks) d WHERE d % 100 <> 0) desks
  CROSS JOIN LATERAL generate_series(0, :days * n - 1) j
), outages AS (
  SELECT d, now() - :days * interval '1 day' + j * slot + (0.05 + 0.85 * r1) * slot AS off_at,
         slot * 0.08 * r2 AS down
  FROM slots
)
INSERT INTO desk_connection_events (faculty_id, at, online, reason)
SELECT d, now() - :days * interval '1 day', true, 'upgrade'
FROM generate_series(1, :desks) d WHERE d % 100 <> 0
UNION ALL SELECT d, off_at, false, 'heartbeat timeout' FROM outages
UNION ALL SELECT d, off_at + down, true, 'status' FROM outages
"""


def _uptime(admin_url: str, desks: int, days: int, runs: int, keep: bool) -> bool:
    engine = _create_pg(admin_url, UPTIME_DB_NAME, keep)
    with engine.connect() as conn:
        have = conn.execute(text("SELECT count(*) FROM faculty")).scalar_one()
    if have != desks:
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE desk_connection_events, faculty RESTART IDENTITY CASCADE"))
            conn.execute(
                text(
                    "INSERT INTO faculty (name, department, status, desk_online, created_at) "
                    "SELECT 'Faculty ' || g, 'Department ' || (g % 20), 'available', true, now() "
                    "FROM generate_series(1, :desks) g"
                ),
                {"desks": desks},
            )
            conn.execute(text(_UPTIME_SQL), {"desks": desks, "days": days})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        print(f"generated the connection history in {time.perf_counter() - t0:.1f} s")
    with engine.connect() as conn:
        events = conn.execute(text("SELECT count(*) FROM desk_connection_events")).scalar_one()
        floor = _times(lambda: conn.execute(text("SELECT 1")).scalar_one(), runs)
    print(f"{desks:,} desks, {events:,} transitions over {days} days; {runs} runs each:")
    _line("SELECT 1 round trip (the floor)", floor)
    analytics = AnalyticsController(db=engine)
    t0 = time.perf_counter()
    rolled = analytics.refresh_uptime_rollup()
    print(
        f"uptime rollup refreshed in {time.perf_counter() - t0:.1f} s "
        f"({'summarised the history' if rolled else 'already up to date'})"
    )
    now = datetime.now(UTC)
    ok = True
    for range_days in (7, 30, 90):
        start = now - timedelta(days=range_days)
        with engine.connect() as conn:
            n = conn.execute(
                text("SELECT count(*) FROM desk_connection_events WHERE at >= :s"), {"s": start}
            ).scalar_one()
        print(f"the last {range_days} days ({n:,} transitions in the range):")
        for name in ("desk_uptime_by_faculty", "desk_uptime_by_department"):
            ms = _times(lambda name=name, start=start: analytics.report(name, start, now), runs)
            ok = _line(name, ms, TARGET_P99_MS) and ok
    dbmod.dispose_db()
    print("uptime target (p99 <= 200 ms):", "PASS" if ok else "FAIL")
    return ok


def _accuracy(analytics: AnalyticsController, start: datetime, end: datetime) -> None:
    """How far the histogram percentiles are from the exact ones (every faculty member)."""
    saved = analytics.exact_percentiles_max
    try:
        analytics.exact_percentiles_max = 10**12
        exact = analytics.answer_times_by_faculty(start, end).as_dicts()
        analytics.exact_percentiles_max = 0
        approx = analytics.answer_times_by_faculty(start, end).as_dicts()
    finally:
        analytics.exact_percentiles_max = saved
    for column in ("median_answer_s", "p90_answer_s"):
        errors = [
            abs(a[column] - e[column]) / e[column]
            for a, e in zip(approx, exact, strict=True)
            if e[column]
        ]
        print(
            f"  histogram vs exact {column:<16} per faculty: mean error "
            f"{100 * statistics.fmean(errors):5.2f} %, max {100 * max(errors):5.2f} %"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="reuse the generated database")
    parser.add_argument("--uptime", action="store_true", help="time the desk-uptime reports only")
    parser.add_argument("--desks", type=int, default=2000)
    parser.add_argument("--history-days", type=int, default=120)
    args = parser.parse_args()
    runs = max(5, min(args.runs, 1000))
    if args.uptime:
        desks = max(1, min(args.desks, 100_000))
        days = max(1, min(args.history_days, 3 * 366))
        return 0 if _uptime(args.pg, desks, days, runs, args.keep) else 1

    engine = prepare_pg(args.pg, max(1, min(args.rows, 20_000_000)), args.keep)
    _queue_calls(engine, runs, "PostgreSQL")
    analytics = AnalyticsController(db=engine, timezone="Asia/Manila")
    t0 = time.perf_counter()
    rolled = analytics.refresh_rollups()
    print(
        f"rollups refreshed in {time.perf_counter() - t0:.1f} s "
        f"({'counted the history' if rolled else 'already up to date'})"
    )
    now = datetime.now(UTC)
    ok = True
    for days in RANGES_DAYS:
        start = now - timedelta(days=days)
        with engine.connect() as conn:
            n = conn.execute(
                text("SELECT count(*) FROM consultations WHERE created_at >= :s"), {"s": start}
            ).scalar_one()
        print(f"analytics over the last {days} days ({n:,} consultations), {runs} runs each:")
        for name in analytics.reports:
            ms = _times(lambda name=name, start=start: analytics.report(name, start, now), runs)
            ok = _line(name, ms, TARGET_P99_MS) and ok
        _accuracy(analytics, start, now)
    dbmod.dispose_db()

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = _prepare_sqlite(Path(tmp) / "bench.db")
        _queue_calls(sqlite, runs, "SQLite")
        dbmod.dispose_db()
    print("analytics target (every report p99 <= 200 ms):", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
