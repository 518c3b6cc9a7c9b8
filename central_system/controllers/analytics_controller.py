"""Analytics for the people who run ConsultEase: every query over a date range, every result a table.

Each report returns a :class:`Table` (column names and rows) that the kiosk's admin
area shows, the web dashboard charts, and :meth:`Table.to_csv` exports. Definitions
(what "answered" and "answer rate" mean, how percentiles are computed, local time)
are in docs/analytics.md; the indexes that keep them fast are in
models/consultation.py and the figures in docs/performance.md.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    Subquery,
    and_,
    bindparam,
    case,
    cast,
    delete,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..models import (
    AnalyticsRollupState,
    Consultation,
    ConsultationStatsDaily,
    ConsultationStatsHourly,
    ConsultationStatsWeekly,
    ConsultationStatus,
    DeskConnectionEvent,
    DeskUptimeDaily,
    DeskUptimeWeekly,
    Faculty,
)
from ..models.analytics import ANSWER_BUCKETS_S, BUCKET_COLUMNS, DAILY_COUNTERS, HOURLY_COUNTERS
from ..models.base import UTCDateTime
from .base import ControllerBase, DbSource
from .roster import spreadsheet_safe

if TYPE_CHECKING:
    from ..services.async_mqtt_service import AsyncMQTTService

logger = logging.getLogger(__name__)

HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)
WEEK: Final = timedelta(days=7)
# UTC days older than this are counted into the rollup tables (models/analytics.py); a
# request made then has long left "pending" (expiry), so its counts no longer change.
ROLLUP_LAG: Final = timedelta(days=2)
ROLLUP_NAME: Final = "consultations"
UPTIME_ROLLUP_NAME: Final = "desk_uptime"
# A UTC day's transitions are all written (batches, retries) this long after it ended.
UPTIME_ROLLUP_LAG: Final = timedelta(hours=1)
# Up to this many answers in a range, percentiles are exact (sorted in the database, a few
# ms); beyond, they come from the rollups' answer-time histograms (the error bound is in
# docs/analytics.md). At 20,000 the exact sort made the per-department report over a week
# of a million-request history cost 55 ms at p50 (docs/performance.md).
EXACT_PERCENTILES_MAX: Final = 5_000
# A date range longer than this is refused (a typo like year 2206 would scan everything).
MAX_RANGE: Final = timedelta(days=3 * 366)
# A float zero that PostgreSQL does not take for numeric (a UNION's types must agree).
_ZERO_S: Final = cast(literal_column("0.0"), Float)
WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
OUTCOME_STATUSES: Final = (
    ConsultationStatus.PENDING,
    ConsultationStatus.ACCEPTED,
    ConsultationStatus.BUSY,
    ConsultationStatus.DECLINED,
    ConsultationStatus.COMPLETED,
    ConsultationStatus.CANCELLED,
    ConsultationStatus.EXPIRED,
)
ANSWER_COLUMNS: Final = (
    "requests",
    "answered",
    "expired",
    "cancelled",
    "answer_rate",
    "median_answer_s",
    "p90_answer_s",
)


def _csv_cell(value: Any) -> Any:
    """None as empty, floats to 3 decimals, text that a spreadsheet would run as a formula
    (a faculty member or department named ``=HYPERLINK(…)``) defused."""
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, str):
        return spreadsheet_safe(value)
    return value


class AnalyticsError(ValueError):
    """A report was asked for with a bad name or date range; ``str(err)`` says which."""


@dataclass(frozen=True)
class Table:
    """One report: named columns and rows of plain values (str, int, float, None)."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def to_csv(self) -> str:
        """The table as CSV text with a header line (floats rounded to 3 decimals)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([_csv_cell(v) for v in row])
        return out.getvalue()

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class AnswerTotals:
    """Every consultation so far (``AnalyticsController.totals``): the ``/metrics`` numbers."""

    by_status: dict[str, int]
    # Answers per ANSWER_BUCKETS_S bucket ([bound i, bound i+1)), and their sum in seconds.
    buckets: list[int]
    answer_s_sum: float


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile by linear interpolation (PostgreSQL's ``percentile_cont``); None if empty."""
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    low, high = float(sorted_values[lo]), float(sorted_values[hi])
    return low + (high - low) * (pos - lo)


def histogram_percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile from bucket counts over ``ANSWER_BUCKETS_S``; None if empty.

    The same interpolation as ``percentile_cont`` between the two answers around rank
    ``q * (n - 1)``, each estimated inside its bucket (a bucket's ``c`` answers sit at the
    middles of ``c`` equal slices of it; the open last bucket answers its lower bound). Each
    estimate is in the bucket of the answer it stands for, so the result is off by less
    than the widest of those buckets (the bound in docs/analytics.md).
    """
    n = sum(counts)
    if n == 0:
        return None
    pos = q * (n - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    low = _histogram_value(counts, lo)
    high = low if hi == lo else _histogram_value(counts, hi)
    return low + (high - low) * (pos - lo)


def _histogram_value(counts: Sequence[int], rank: int) -> float:
    """The estimated answer at 0-based ``rank`` of the histogram ``counts``."""
    seen = 0
    last = len(ANSWER_BUCKETS_S) - 1
    for i, c in enumerate(counts):
        if c and rank < seen + c:
            low = float(ANSWER_BUCKETS_S[i])
            if i == last:
                return low
            return low + (ANSWER_BUCKETS_S[i + 1] - low) * (rank - seen + 0.5) / c
        seen += c
    return float(ANSWER_BUCKETS_S[last])


def _rate(answered: int, expired: int) -> float | None:
    # Answer rate: of the requests that got an answer or ran out of time, the share that got
    # an answer. A student's own cancellation and a request still pending say nothing about
    # the faculty member, so they are left out (docs/analytics.md).
    decided = answered + expired
    return answered / decided if decided else None


class AnalyticsController(ControllerBase):
    """Reports over consultations made in ``[start, end)``; local time in ``timezone``."""

    def __init__(
        self,
        db: DbSource = None,
        mqtt: AsyncMQTTService | None = None,
        *,
        timezone: str | None = None,
    ) -> None:
        super().__init__(db, mqtt)
        self.timezone = timezone
        self._rolled_until: datetime | None = None
        self._uptime_rolled_until: datetime | None = None
        self.exact_percentiles_max = EXACT_PERCENTILES_MAX
        # Refresh the rollups before a report (tests turn it off to read raw rows only).
        self.auto_refresh = True
        self.reports: dict[str, Callable[[datetime, datetime], Table]] = {
            "requests_per_day": self.requests_per_day,
            "requests_by_hour_of_week": self.requests_by_hour_of_week,
            "busiest_hours": self.busiest_hours,
            "outcomes": self.outcomes,
            "answer_times_by_faculty": self.answer_times_by_faculty,
            "answer_times_by_department": self.answer_times_by_department,
            "desk_uptime_by_faculty": self.desk_uptime_by_faculty,
            "desk_uptime_by_department": self.desk_uptime_by_department,
        }

    # ------------------------------------------------------------------ reports

    def report(self, name: str, start: datetime, end: datetime) -> Table:
        """The report called ``name`` (one of :attr:`reports`)."""
        fn = self.reports.get(name)
        if fn is None:
            raise AnalyticsError(f"Unknown report {name!r}; known: {', '.join(self.reports)}.")
        return fn(start, end)

    def summary(self, start: datetime, end: datetime) -> dict[str, Table]:
        """Every report for one range (the admin screen's summary)."""
        return {name: fn(start, end) for name, fn in self.reports.items()}

    def requests_per_day(self, start: datetime, end: datetime) -> Table:
        """Requests made per local day, with how many were answered, expired and cancelled."""
        self._check(start, end)
        with self.session() as session:
            days = self._hourly(session, start, end, "day")
        picks = [HOURLY_COUNTERS.index(n) for n in ("requests", "answered", "expired", "cancelled")]
        rows = [
            (str(day), *(counts[i] for i in picks))
            for day, counts in sorted(days.items())
            if counts[0]
        ]
        return Table(
            "requests_per_day", ("day", "requests", "answered", "expired", "cancelled"), rows
        )

    def requests_by_hour_of_week(self, start: datetime, end: datetime) -> Table:
        """Requests per (local weekday, hour): the heat map of when the kiosks are busy."""
        self._check(start, end)
        with self.session() as session:
            rows = self._hour_of_week(session, start, end)
        rows.sort(key=lambda r: (WEEKDAYS.index(r[0]), r[1]))
        return Table("requests_by_hour_of_week", ("weekday", "hour", "requests"), rows)

    def busiest_hours(self, start: datetime, end: datetime, limit: int = 10) -> Table:
        """The ``limit`` busiest (weekday, hour) slots, busiest first."""
        self._check(start, end)
        with self.session() as session:
            rows = self._hour_of_week(session, start, end)
        rows.sort(key=lambda r: (-r[2], WEEKDAYS.index(r[0]), r[1]))
        return Table("busiest_hours", ("weekday", "hour", "requests"), rows[: max(1, limit)])

    def outcomes(self, start: datetime, end: datetime) -> Table:
        """One row: requests, answered, each status, answer rate, median and p90 answer time."""
        self._check(start, end)
        names = (*HOURLY_COUNTERS, *BUCKET_COLUMNS)
        with self.session() as session:
            totals = self._hourly(session, start, end, "total", names).get(None)
            sums = totals or [0] * len(names)
            histogram = sums[len(HOURLY_COUNTERS) :]
            stats = self._percentiles(session, start, end, None, {None: histogram})
        by_name = dict(zip(HOURLY_COUNTERS, sums, strict=False))
        median, p90 = stats.get(None, (None, None))
        columns = (
            "requests",
            "answered",
            *(str(s) for s in OUTCOME_STATUSES),
            "answer_rate",
            "median_answer_s",
            "p90_answer_s",
        )
        answered, expired = by_name["answered"], by_name["expired"]
        row = (
            by_name["requests"],
            answered,
            *(by_name[str(s)] for s in OUTCOME_STATUSES),
            _rate(answered, expired),
            median,
            p90,
        )
        return Table("outcomes", columns, [row])

    def answer_times_by_faculty(self, start: datetime, end: datetime) -> Table:
        """Per faculty member: requests, answered, expired, cancelled, answer rate, median/p90."""
        self._check(start, end)
        first_bucket = len(DAILY_COUNTERS)
        with self.session() as session:
            by_faculty = self._by_faculty(session, start, end)
            people = self._faculty(session)
            histograms = {fid: v[first_bucket:] for fid, v in by_faculty.items()}
            stats = self._percentiles(session, start, end, Consultation.faculty_id, histograms)
        rows = []
        for fid, (n, a, x, c, *_buckets) in by_faculty.items():
            name, dept = people.get(fid, ("(deleted)", ""))
            median, p90 = stats.get(fid, (None, None))
            rows.append((fid, name, dept, n, a, x, c, _rate(a, x), median, p90))
        rows.sort(key=lambda r: (r[1], r[0]))
        return Table(
            "answer_times_by_faculty",
            ("faculty_id", "faculty", "department", *ANSWER_COLUMNS),
            rows,
        )

    def answer_times_by_department(self, start: datetime, end: datetime) -> Table:
        """Per department: requests, answered, expired, cancelled, answer rate, median/p90."""
        self._check(start, end)
        width = len(DAILY_COUNTERS) + len(BUCKET_COLUMNS)
        with self.session() as session:
            by_faculty = self._by_faculty(session, start, end)
            people = self._faculty(session)
            sums: dict[str, list[int]] = defaultdict(lambda: [0] * width)
            for fid, values in by_faculty.items():
                dept_sums = sums[people.get(fid, ("", ""))[1]]
                for i, v in enumerate(values):
                    dept_sums[i] += v
            first_bucket = len(DAILY_COUNTERS)
            histograms = {dept: v[first_bucket:] for dept, v in sums.items()}
            stats = self._percentiles(session, start, end, Faculty.department, histograms)
        rows = []
        for dept, (n, a, x, c, *_buckets) in sums.items():
            median, p90 = stats.get(dept, (None, None))
            rows.append((dept, n, a, x, c, _rate(a, x), median, p90))
        rows.sort(key=lambda r: r[0])
        return Table("answer_times_by_department", ("department", *ANSWER_COLUMNS), rows)

    def desk_uptime_by_faculty(
        self, start: datetime, end: datetime, now: datetime | None = None
    ) -> Table:
        """Per faculty member's desk: uptime %, disconnections, longest outage, last seen.

        Over ``[start, min(end, now))`` from ``desk_connection_events`` (docs/analytics.md
        "Desk uptime"); a desk with no row at all in or before the range never connected.
        One statement: each desk's pieces summed in SQL and joined to its faculty member.
        """
        self._check(start, end)
        end = min(end, now or datetime.now(UTC))
        f = Faculty
        with self.session() as session:
            span = _known_span(session, start, end)
            desks = self._desk_uptime(session, start, end)
            stmt = select(
                f.id, f.name, f.department, f.last_seen, *_uptime_columns(desks)
            ).outerjoin(desks, desks.c.faculty_id == f.id)
            people = session.connection().execute(stmt).all()
        rows = []
        for fid, name, dept, last_seen, online_s, drops, longest in people:
            uptime = 100.0 * float(online_s) / span if span else None
            seen = last_seen.astimezone(UTC).isoformat(timespec="seconds") if last_seen else None
            longest_s = None if longest is None else float(longest)
            rows.append((int(fid), name, dept or "", uptime, int(drops), longest_s, seen))
        rows.sort(key=lambda r: (r[1], r[0]))
        return Table(
            "desk_uptime_by_faculty",
            (
                "faculty_id",
                "faculty",
                "department",
                "uptime_pct",
                "disconnections",
                "longest_outage_s",
                "last_seen",
            ),
            rows,
        )

    def desk_uptime_by_department(
        self, start: datetime, end: datetime, now: datetime | None = None
    ) -> Table:
        """Per department: desks, uptime % (all its desks' online time over theirs in the range),
        disconnections, the longest outage of any of its desks, desks that never connected.

        The per-desk figures of :meth:`desk_uptime_by_faculty`, summed per department in the
        same statement, so one row per department leaves the database.
        """
        self._check(start, end)
        end = min(end, now or datetime.now(UTC))
        with self.session() as session:
            span = _known_span(session, start, end)
            desks = self._desk_uptime(session, start, end)
            online, drops, longest = _uptime_columns(desks)
            never = and_(online == 0, drops == 0, longest.is_(None))
            # Inline '' (not a bound value): the GROUP BY must read exactly as the column.
            dept = func.coalesce(Faculty.department, literal_column("''"))
            stmt = (
                select(
                    dept,
                    func.count(),
                    func.sum(online),
                    func.sum(drops),
                    func.max(longest),
                    func.sum(case((never, 1), else_=0)),
                )
                .select_from(Faculty)
                .outerjoin(desks, desks.c.faculty_id == Faculty.id)
                .group_by(dept)
            )
            sums = session.connection().execute(stmt).all()
        # Each desk spans the same known time, so the mean of their uptimes is their summed
        # online time over desks x span.
        rows = [
            (
                name,
                int(n),
                100.0 * float(on) / (span * n) if span else None,
                int(dropped),
                None if worst is None else float(worst),
                int(never_n),
            )
            for name, n, on, dropped, worst, never_n in sums
        ]
        rows.sort(key=lambda r: r[0])
        return Table(
            "desk_uptime_by_department",
            (
                "department",
                "desks",
                "uptime_pct",
                "disconnections",
                "longest_outage_s",
                "never_connected",
            ),
            rows,
        )

    def _desk_uptime(self, session: Session, start: datetime, end: datetime) -> Subquery:
        """Per faculty id: seconds online, disconnections and the longest outage (s; NULL:
        none) in ``[start, end)``, as a subquery (columns ``faculty_id``, ``online_s``,
        ``drops``, ``longest``) that the reports join and group further.

        Whole weeks and days come from the rollups, the partial days at the edges from the
        transitions; every piece is a row of (desk, online s, drops, an outage candidate),
        summed per desk in SQL. An outage crossing from one piece into the next is joined up
        where it ends: the days' ``close_run_s`` (cut at ``start``), or the tail's first
        stretch plus the run still open when the rollup ends (docs/analytics.md "Desk
        uptime"); so the head leaves out its last outage, which goes on into the days.
        """
        if end <= start:
            return (
                select(
                    literal(0).label("faculty_id"),
                    _ZERO_S.label("online_s"),
                    literal_column("0").label("drops"),
                    _ZERO_S.label("longest"),
                )
                .where(false())
                .subquery()
            )
        until = self._uptime_rollup_until(session)
        if session.get_bind().dialect.name == "postgresql":
            # Short queries over a few thousand groups: compiling them, or starting parallel
            # workers, costs more than it saves (docs/performance.md). One round trip for both.
            session.execute(
                text(
                    "SELECT set_config('jit', 'off', true), "
                    "set_config('max_parallel_workers_per_gather', '0', true)"
                )
            )
        first_day = _floor_day(start)
        if first_day < start:
            first_day += DAY
        last_day = min(_floor_day(end), until) if until is not None else first_day
        parts: list[Select[Any]] = []
        if last_day <= first_day:
            whole = _uptime_segments(session, start, end, "range")[0]
            parts.append(_segment_part(whole, case((_off(whole), whole.c.seconds))))
        else:
            if start < first_day:
                head = _uptime_segments(session, start, first_day, "head")[0]
                inside = and_(_off(head), head.c.nxt.is_not(None))
                parts.append(_segment_part(head, case((inside, head.c.seconds))))
            parts += self._uptime_day_parts(session, start, first_day, last_day)
            # The outage still open where the rollup ends, cut at ``start``.
            cap = bindparam("run_cap", (last_day - start).total_seconds(), type_=Float())
            if last_day < end:
                tail = _uptime_segments(session, last_day, end, "tail", run_cap=cap)[0]
                s = tail.c
                # Only the tail's first stretch carries the open run: it continues it.
                joined = case((_off(tail), s.seconds + s.run), else_=s.run)
                parts.append(_segment_part(tail, joined))
            else:
                d = DeskUptimeDaily
                parts.append(
                    select(
                        d.faculty_id, _ZERO_S, literal_column("0"), _least(d.trail_run_s, cap)
                    ).where(d.day == last_day - DAY)
                )
        rows = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
        c = list(rows.c)
        return (
            select(
                c[0].label("faculty_id"),
                func.sum(c[1]).label("online_s"),
                func.sum(c[2]).label("drops"),
                func.max(case((c[3] > 0, c[3]))).label("longest"),
            )
            .group_by(c[0])
            .subquery()
        )

    def _uptime_day_parts(
        self, session: Session, start: datetime, first_day: datetime, last_day: datetime
    ) -> list[Select[Any]]:
        """The rollup rows of the whole days ``[first_day, last_day)`` (of the whole weeks in
        it, the weekly ones): desk, online s, drops, and the longer of the longest outage
        begun inside and the outage ending inside cut at ``start``."""
        dialect = session.get_bind().dialect.name
        at_start = bindparam("days_start", start, type_=UTCDateTime())
        first_week = _floor_week(first_day)
        if first_week < first_day:
            first_week += WEEK
        last_week = _floor_week(last_day)
        if first_week < last_week:
            days = [(first_day, first_week), (last_week, last_day)]
        else:
            days = [(first_day, last_day)]
        d, w = DeskUptimeDaily, DeskUptimeWeekly
        # An outage ending on day D lasted close_run_s in all, of which the part since
        # ``start`` ends lead_off_s after D: (D - start) + lead_off_s. The same for a week.
        since = _seconds_between(dialect, at_start, d.day) + d.lead_off_s
        parts = [
            select(
                d.faculty_id,
                d.online_s,
                d.drops,
                _greater(d.inner_off_s, _least(d.close_run_s, since)),
            ).where(d.day >= a, d.day < b)
            for a, b in days
            if a < b
        ]
        if first_week < last_week:
            since_w = _seconds_between(dialect, at_start, w.week) + w.first_close_end_s
            parts.append(
                select(
                    w.faculty_id,
                    w.online_s,
                    w.drops,
                    _greater(w.other_max_s, _least(w.first_close_run_s, since_w)),
                ).where(w.week >= first_week, w.week < last_week)
            )
        return parts

    def refresh_uptime_rollup(self, now: datetime | None = None) -> bool:
        """Summarise finished UTC days (ended over an hour ago) into ``desk_uptime_daily``.

        Idempotent; the first call after an upgrade summarises the whole history once, a
        day at a time. Returns True when it added something.
        """
        target = _floor_day((now or datetime.now(UTC)) - UPTIME_ROLLUP_LAG)
        if self._uptime_rolled_until is not None and self._uptime_rolled_until >= target:
            return False
        with self.session() as session:
            state = session.get(AnalyticsRollupState, UPTIME_ROLLUP_NAME, with_for_update=True)
            if state is not None and state.until >= target:
                self._uptime_rolled_until = state.until
                return False
            if state is None:
                first = session.scalar(select(func.min(DeskConnectionEvent.at)))
                since = min(_floor_day(first), target) if first is not None else target
                state = AnalyticsRollupState(name=UPTIME_ROLLUP_NAME, until=since)
                session.add(state)
            day = state.until
            d = DeskUptimeDaily
            runs = {
                int(fid): float(run)
                for fid, run in session.execute(
                    select(d.faculty_id, d.trail_run_s).where(d.day == day - DAY)
                )
            }
            session.execute(delete(d).where(d.day >= day, d.day < target))
            since = day
            while day < target:
                runs = self._roll_up_day(session, day, runs)
                day += DAY
            self._roll_up_weeks(session, _floor_week(since), _floor_week(target))
            state.until = target
        self._uptime_rolled_until = target
        return True

    @staticmethod
    def _roll_up_day(session: Session, day: datetime, runs: dict[int, float]) -> dict[int, float]:
        """Write ``day``'s rows; ``runs``: each desk's outage open at the day's start (s)."""
        rows, after = [], {}
        for fid, p in _uptime_pieces(session, day, day + DAY).items():
            before = runs.get(fid, 0.0)
            if p.all_off:
                close, trail = None, before + DAY.total_seconds()
            else:
                close = before + p.lead_off_s if p.lead_off_s > 0 or before > 0 else None
                trail = p.trail_off_s
            after[fid] = trail
            rows.append(
                {
                    "faculty_id": fid,
                    "day": day,
                    "online_s": p.online_s,
                    "drops": p.drops,
                    "lead_off_s": p.lead_off_s,
                    "inner_off_s": p.inner_off_s,
                    "close_run_s": close,
                    "trail_run_s": trail,
                    "online_at_end": p.online_at_end,
                }
            )
        if rows:
            session.execute(insert(DeskUptimeDaily), rows)
        return after

    @staticmethod
    def _roll_up_weeks(session: Session, first: datetime, last: datetime) -> None:
        """Sum the daily rows of the whole weeks ``[first, last)`` into ``desk_uptime_weekly``."""
        if first >= last:
            return
        d, w = DeskUptimeDaily, DeskUptimeWeekly
        session.execute(delete(w).where(w.week >= first, w.week < last))
        rows: dict[tuple[int, datetime], dict[str, Any]] = {}
        days = session.execute(
            select(d).where(d.day >= first, d.day < last).order_by(d.faculty_id, d.day)
        ).scalars()
        for day in days:
            week = _floor_week(day.day)
            row = rows.get((day.faculty_id, week))
            if row is None:
                row = rows[(day.faculty_id, week)] = {
                    "faculty_id": day.faculty_id,
                    "week": week,
                    "online_s": 0.0,
                    "drops": 0,
                    "first_close_run_s": None,
                    "first_close_end_s": None,
                    "other_max_s": 0.0,
                    "trail_run_s": 0.0,
                }
            row["online_s"] += day.online_s
            row["drops"] += day.drops
            row["other_max_s"] = max(row["other_max_s"], day.inner_off_s)
            if day.close_run_s is not None:
                if row["first_close_run_s"] is None:
                    row["first_close_run_s"] = day.close_run_s
                    row["first_close_end_s"] = (day.day - week).total_seconds() + day.lead_off_s
                else:  # begun inside the week: never cut by a range holding the week
                    row["other_max_s"] = max(row["other_max_s"], day.close_run_s)
            row["trail_run_s"] = day.trail_run_s
        if rows:
            session.execute(insert(DeskUptimeWeekly), list(rows.values()))

    def _uptime_rollup_until(self, session: Session) -> datetime | None:
        """Where the uptime rollup ends (refreshing it first when a day has finished)."""
        try:
            if self.auto_refresh:
                self.refresh_uptime_rollup()
        except SQLAlchemyError:
            logger.info("desk uptime rollup refresh lost a race; reading what is there")
        state = session.get(AnalyticsRollupState, UPTIME_ROLLUP_NAME)
        return state.until if state is not None else None

    def totals(self) -> AnswerTotals:
        """Every consultation so far: counts by status and the answer-time histogram.

        For ``GET /metrics``: the hourly rollup up to where it ends, the consultations after
        it, and pending requests counted directly, so a scrape reads a few thousand rows
        whatever the history's size.
        """
        names = (*HOURLY_COUNTERS, *BUCKET_COLUMNS, "answer_s_sum")
        with self.session() as session:
            until = self._rollup_until(session)
            parts: list[Select[Any]] = []
            if until is not None:
                table = ConsultationStatsHourly
                parts.append(_part([], [getattr(table, n) for n in names], [table.hour < until]))
            raw_where = [Consultation.created_at >= until] if until is not None else []
            parts.append(_part([], [_row_value(n) for n in names], raw_where))
            (row,) = _sum_parts(session, parts, 0) or [(0,) * len(names)]
            pending = session.scalar(
                select(func.count()).where(Consultation.status == ConsultationStatus.PENDING)
            )
        sums = [c or 0 for c in row]
        counters = len(HOURLY_COUNTERS)
        by_status = {n: int(v) for n, v in zip(HOURLY_COUNTERS, sums[:counters], strict=True)}
        by_status[str(ConsultationStatus.PENDING)] = int(pending or 0)
        return AnswerTotals(
            by_status=by_status,
            buckets=[int(v) for v in sums[counters:-1]],
            answer_s_sum=float(sums[-1]),
        )

    # ------------------------------------------------------------------ rollups

    def refresh_rollups(self, now: datetime | None = None) -> bool:
        """Count finished UTC days (older than :data:`ROLLUP_LAG`) into the rollup tables.

        Idempotent and cheap when there is nothing new; the first call after an upgrade
        counts the whole history once. Returns True when it rolled something up.
        """
        target = _floor_day((now or datetime.now(UTC)) - ROLLUP_LAG)
        if self._rolled_until is not None and self._rolled_until >= target:
            return False
        with self.session() as session:
            state = session.get(AnalyticsRollupState, ROLLUP_NAME, with_for_update=True)
            if state is not None and state.until >= target:
                self._rolled_until = state.until
                return False
            if state is None:
                first = session.scalar(select(func.min(Consultation.created_at)))
                since = min(_floor_day(first), target) if first is not None else target
                state = AnalyticsRollupState(name=ROLLUP_NAME, until=since)
                session.add(state)
            since = state.until
            if since < target:
                self._roll_up(session, since, target)
            state.until = target
        self._rolled_until = target
        return True

    def _roll_up(self, session: Session, since: datetime, until: datetime) -> None:
        dialect = session.get_bind().dialect.name
        in_range = [Consultation.created_at >= since, Consultation.created_at < until]
        hour = _truncated(dialect, "hour")
        day = _truncated(dialect, "day")
        hourly, daily = ConsultationStatsHourly, ConsultationStatsDaily
        session.execute(delete(hourly).where(hourly.hour >= since, hourly.hour < until))
        session.execute(delete(daily).where(daily.day >= since, daily.day < until))
        hourly_columns = (*HOURLY_COUNTERS, *BUCKET_COLUMNS, "answer_s_sum")
        session.execute(
            insert(hourly).from_select(
                ["hour", *hourly_columns],
                select(hour, *_counters(hourly_columns))
                .where(*in_range)
                .group_by(hour)
                .order_by(hour),
            )
        )
        session.execute(
            insert(daily).from_select(
                ["day", "faculty_id", *DAILY_COUNTERS, *BUCKET_COLUMNS],
                select(day, Consultation.faculty_id, *_counters((*DAILY_COUNTERS, *BUCKET_COLUMNS)))
                .where(*in_range)
                .group_by(day, Consultation.faculty_id)
                # In key order: a range's rows then sit together on disk (fewer pages read).
                .order_by(day, Consultation.faculty_id),
            )
        )
        # Whole UTC weeks (Monday 00:00) now complete in the daily rows, summed once more.
        first_week, last_week = _floor_week(since), _floor_week(until)
        if first_week < last_week:
            weekly = ConsultationStatsWeekly
            week = _week_of(dialect, daily.day)
            columns = (*DAILY_COUNTERS, *BUCKET_COLUMNS)
            session.execute(
                delete(weekly).where(weekly.week >= first_week, weekly.week < last_week)
            )
            session.execute(
                insert(weekly).from_select(
                    ["week", "faculty_id", *columns],
                    select(week, daily.faculty_id, *(func.sum(getattr(daily, c)) for c in columns))
                    .where(daily.day >= first_week, daily.day < last_week)
                    .group_by(week, daily.faculty_id)
                    .order_by(week, daily.faculty_id),
                )
            )

    def _rollup_until(self, session: Session) -> datetime | None:
        """Where the rollups end (refreshing them first when a day has finished)."""
        try:
            if self.auto_refresh:
                self.refresh_rollups()
        except SQLAlchemyError:
            # Another kiosk or thread rolled the same days up at the same moment: theirs
            # counts; the report reads whatever is committed.
            logger.info("analytics rollup refresh lost a race; reading what is there")
        state = session.get(AnalyticsRollupState, ROLLUP_NAME)
        return state.until if state is not None else None

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check(start: datetime, end: datetime) -> None:
        if not isinstance(start, datetime) or not isinstance(end, datetime):
            raise AnalyticsError("The range needs a start and an end date and time.")
        if start.tzinfo is None or end.tzinfo is None:
            raise AnalyticsError("The range must be given with a time zone.")
        if end <= start:
            raise AnalyticsError("The end of the range must come after its start.")
        if end - start > MAX_RANGE:
            raise AnalyticsError("The range may span at most three years.")

    @staticmethod
    def _in_range(start: datetime, end: datetime) -> list[ColumnElement[bool]]:
        return [Consultation.created_at >= start, Consultation.created_at < end]

    def _to_local(self, when: datetime) -> datetime:
        return when.astimezone(ZoneInfo(self.timezone)) if self.timezone else when.astimezone()

    def _split(
        self, session: Session, start: datetime, end: datetime, unit: timedelta
    ) -> tuple[tuple[datetime, datetime] | None, list[tuple[datetime, datetime]]]:
        """The part of ``[start, end)`` the rollups cover (whole units), and the rest (raw)."""
        until = self._rollup_until(session)
        floor = _floor_day if unit == DAY else _floor_hour
        inner_start = floor(start)
        if inner_start < start:
            inner_start += unit
        inner_end = floor(end)
        if until is not None:
            inner_end = min(inner_end, until)
        if until is None or inner_start >= inner_end:
            return None, [(start, end)]
        raw = [(a, b) for a, b in ((start, inner_start), (inner_end, end)) if a < b]
        return (inner_start, inner_end), raw

    def _hourly(
        self,
        session: Session,
        start: datetime,
        end: datetime,
        by: str,
        names: Sequence[str] = HOURLY_COUNTERS,
    ) -> dict[Any, list[int]]:
        """Sums of the hourly rollup's columns ``names`` per local ``day``, ``week`` slot or
        ``total``.

        Whole UTC hours come from the rollup, the edges from the consultations; one
        statement sums both in SQL, so only the groups travel.
        """
        rolled, raw = self._split(session, start, end, HOUR)
        parts: list[Select[Any]] = []
        if rolled is not None:
            table = ConsultationStatsHourly
            keys = self._local_keys(session, table.hour, start, by)
            values = [getattr(table, n) for n in names]
            parts.append(_part(keys, values, [table.hour >= rolled[0], table.hour < rolled[1]]))
        for a, b in raw:
            keys = self._local_keys(session, Consultation.created_at, start, by)
            parts.append(_part(keys, [_row_value(n) for n in names], self._in_range(a, b)))
        n_keys = {"total": 0, "day": 1, "week": 2}[by]
        result: dict[Any, list[int]] = {}
        for row in _sum_parts(session, parts, n_keys):
            counts = [int(c or 0) for c in row[n_keys:]]
            if by == "day":
                result[str(row[0])] = counts
            elif by == "week":
                result[(int(row[0]), int(row[1]))] = counts
            else:
                result[None] = counts
        return result

    def _local_keys(self, session: Session, column: Any, at: datetime, by: str) -> list[Any]:
        """SQL for the local day, or (weekday 0 = Monday, hour), of a UTC ``column``."""
        if by == "total":
            return []
        dialect = session.get_bind().dialect.name
        local: Any
        if dialect == "postgresql":
            if self.timezone:
                local = func.timezone(self.timezone, column)  # exact, daylight saving included
            else:
                minutes = self._offset_minutes(at)
                local = func.timezone("UTC", column) + func.make_interval(0, 0, 0, 0, 0, minutes)
            if by == "day":
                return [func.to_char(local, "YYYY-MM-DD")]
            return [func.date_part("isodow", local) - 1, func.date_part("hour", local)]
        # SQLite: the zone's offset at the range's start (docs/analytics.md).
        local = func.datetime(column, f"{self._offset_minutes(at):+d} minutes")
        if by == "day":
            return [func.date(local)]
        return [
            (cast(func.strftime("%w", local), Integer) + 6) % 7,
            cast(func.strftime("%H", local), Integer),
        ]

    def _offset_minutes(self, at: datetime) -> int:
        offset = self._to_local(at).utcoffset() or timedelta(0)
        return int(offset.total_seconds() // 60)

    def _hour_of_week(
        self, session: Session, start: datetime, end: datetime
    ) -> list[tuple[str, int, int]]:
        slots = self._hourly(session, start, end, "week")
        return [(WEEKDAYS[d], h, counts[0]) for (d, h), counts in slots.items() if counts[0]]

    def _by_faculty(self, session: Session, start: datetime, end: datetime) -> dict[int, list[int]]:
        """Per faculty id: requests, answered, expired, cancelled, then the 24 histogram buckets.

        One statement sums the weekly rollup for the whole UTC weeks, the daily rollup for
        the other whole days and the consultations at the edges, grouped by faculty in SQL.
        """
        rolled, raw = self._split(session, start, end, DAY)
        periods: list[tuple[Any, Any, datetime, datetime]] = []
        if rolled is not None:
            week_start = _floor_week(rolled[0])
            if week_start < rolled[0]:
                week_start += WEEK
            # rolled[1] <= the rollups' end: every whole week before it is in the weekly table.
            week_end = _floor_week(rolled[1])
            daily, weekly = ConsultationStatsDaily, ConsultationStatsWeekly
            if week_start < week_end:
                periods.append((weekly, weekly.week, week_start, week_end))
                days = [(rolled[0], week_start), (week_end, rolled[1])]
            else:
                days = [rolled]
            periods += [(daily, daily.day, a, b) for a, b in days if a < b]
        names = (*DAILY_COUNTERS, *BUCKET_COLUMNS)
        parts = [
            _part([table.faculty_id], [getattr(table, n) for n in names], [key >= a, key < b])
            for table, key, a, b in periods
        ]
        parts += [
            _part([Consultation.faculty_id], [_row_value(n) for n in names], self._in_range(a, b))
            for a, b in raw
        ]
        result: dict[int, list[int]] = {}
        for row in _sum_parts(session, parts, 1):
            if row[1]:  # requests
                result[int(row[0])] = [int(c or 0) for c in row[1:]]
        return result

    @staticmethod
    def _faculty(session: Session) -> dict[int, tuple[str, str]]:
        rows = session.execute(select(Faculty.id, Faculty.name, Faculty.department))
        return {int(fid): (name, dept or "") for fid, name, dept in rows}

    def _percentiles(
        self,
        session: Session,
        start: datetime,
        end: datetime,
        key: Any | None,
        histograms: dict[Any, list[int]],
    ) -> dict[Any, tuple[float | None, float | None]]:
        """Median and 90th percentile of ``answer_s`` per ``key`` (None: overall).

        Exact up to :attr:`exact_percentiles_max` answers in the range; beyond, read from
        the groups' answer-time ``histograms`` (approximate, the bound in docs/analytics.md).
        """
        answered = sum(sum(h) for h in histograms.values())
        if answered > self.exact_percentiles_max:
            return {
                g: (histogram_percentile(h, 0.5), histogram_percentile(h, 0.9))
                for g, h in histograms.items()
                if sum(h)
            }
        where = [*self._in_range(start, end), Consultation.answer_s.is_not(None)]
        group_by = key if key is not None else literal(None)
        if session.get_bind().dialect.name == "postgresql":
            stmt: Select[Any] = select(
                group_by,
                func.percentile_cont(0.5).within_group(Consultation.answer_s),
                func.percentile_cont(0.9).within_group(Consultation.answer_s),
            ).where(*where)
            if key is Faculty.department:
                stmt = stmt.join(Faculty, Faculty.id == Consultation.faculty_id)
            if key is not None:
                stmt = stmt.group_by(key)
            return {
                k: (None if m is None else float(m), None if p is None else float(p))
                for k, m, p in session.execute(stmt)
            }
        # SQLite has no percentile function: read the values sorted.
        values_stmt: Select[Any] = select(group_by, Consultation.answer_s).where(*where)
        if key is Faculty.department:
            values_stmt = values_stmt.join(Faculty, Faculty.id == Consultation.faculty_id)
        values: dict[Any, list[float]] = defaultdict(list)
        for k, v in session.execute(values_stmt.order_by(Consultation.answer_s)):
            values[k].append(float(v))
        return {k: (percentile(vs, 0.5), percentile(vs, 0.9)) for k, vs in values.items()}


class UptimePiece(NamedTuple):
    """One desk over one stretch of time: online seconds, disconnections, and its outages:
    the one at the start (``lead_off_s``), the longest inside, the one at the end, the
    longest of all (None: never offline), and whether it was offline throughout."""

    online_s: float
    drops: int
    lead_off_s: float
    inner_off_s: float
    trail_off_s: float
    longest: float | None
    all_off: bool
    online_at_end: bool


def _uptime_segments(
    session: Session, start: datetime, end: datetime, name: str, run_cap: Any = None
) -> tuple[Subquery, Any]:
    """Each desk's stretches of one known state in ``[start, end)``, and the bound ``start``.

    Columns: ``faculty_id``, ``online``, ``prev`` (the state before), ``at``, ``nxt`` (when
    it ended; NULL: at ``end``), ``seconds``, ``run``. From each desk's state at ``start``
    and its rows in the range, repeats of the same state dropped; each stretch lasts until
    the next one (or ``end``). The state at ``start`` is the newest row before it; with
    ``run_cap`` (``start`` is a midnight the daily rollup has reached) the
    ``online_at_end`` of the day before instead (one indexed read, not a probe per desk),
    and that first stretch's ``run`` is the outage open at that midnight, at most
    ``run_cap`` s (0 on every other stretch). ``name`` keeps the bound values of several
    such pieces in one statement apart.
    """
    ev = DeskConnectionEvent
    utc = UTCDateTime()
    at_start = bindparam(f"{name}_start", start, type_=utc)
    at_end = bindparam(f"{name}_end", end, type_=utc)
    if run_cap is not None:
        d = DeskUptimeDaily
        initial = (
            select(
                d.faculty_id.label("faculty_id"),
                d.online_at_end.label("online"),
                _least(d.trail_run_s, run_cap).label("run"),
            )
            .where(d.day == bindparam(f"{name}_day_before", start - DAY, type_=utc))
            .subquery()
        )
    else:
        newest_before = (
            select(ev.online)
            .where(ev.faculty_id == Faculty.id, ev.at < at_start)
            .order_by(ev.at.desc(), ev.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        initial = select(
            Faculty.id.label("faculty_id"), newest_before.label("online"), _ZERO_S.label("run")
        ).subquery()
    # Not filtered on a known state here (PostgreSQL would probe the index twice per desk):
    # a NULL state adds nothing to the sums, and a desk with no known state is left out.
    rows = union_all(
        select(
            initial.c.faculty_id,
            literal(0).label("id"),
            at_start.label("at"),
            initial.c.online,
            initial.c.run,
        ),
        select(ev.faculty_id, ev.id, ev.at, ev.online, _ZERO_S).where(
            ev.at >= at_start, ev.at < at_end
        ),
    ).subquery()
    with_prev = select(
        rows.c.faculty_id,
        rows.c.at,
        rows.c.online,
        func.lag(rows.c.online)
        .over(partition_by=rows.c.faculty_id, order_by=(rows.c.at, rows.c.id))
        .label("prev"),
        rows.c.id,
        rows.c.run,
    ).subquery()
    changes = (
        select(with_prev)
        .where(or_(with_prev.c.prev.is_(None), with_prev.c.prev != with_prev.c.online))
        .subquery()
    )
    following = func.lead(changes.c.at).over(
        partition_by=changes.c.faculty_id, order_by=(changes.c.at, changes.c.id)
    )
    # Each segment's length computed once, here, not in each aggregate that reads it.
    length = _seconds_between(
        session.get_bind().dialect.name, changes.c.at, func.coalesce(following, at_end)
    )
    segments = select(
        changes.c.faculty_id,
        changes.c.online,
        changes.c.prev,
        changes.c.at,
        following.label("nxt"),
        length.label("seconds"),
        changes.c.run,
    ).subquery()
    return segments, at_start


def _off(segments: Subquery) -> ColumnElement[bool]:
    return segments.c.online == false()


def _segment_part(segments: Subquery, longest: Any) -> Select[Any]:
    """One row per stretch of ``segments``: desk, online s, 1 for a disconnection, and the
    outage ``longest`` it offers as a candidate (NULL: none)."""
    s = segments.c
    return select(
        s.faculty_id.label("faculty_id"),
        case((s.online == true(), s.seconds), else_=_ZERO_S).label("online_s"),
        case((and_(_off(segments), s.prev == true()), 1), else_=0).label("drops"),
        longest.label("longest"),
    )


def _uptime_columns(desks: Subquery) -> tuple[Any, Any, Any]:
    """``desks``' online s, drops, longest outage, 0 / 0 / NULL for a desk it has no row of."""
    c = desks.c
    return (
        func.coalesce(c.online_s, _ZERO_S),
        func.coalesce(c.drops, literal_column("0")),
        c.longest,
    )


def _known_span(session: Session, start: datetime, end: datetime) -> float:
    """Seconds of ``[start, end)`` since the history began (0 with no history at all)."""
    # Nothing is known before the history began (the upgrade to 0010, or the first desk's
    # first message): that time is not counted as offline.
    began = session.scalar(select(func.min(DeskConnectionEvent.at)))
    known_from = end if began is None else max(start, began)
    return max(0.0, (end - known_from).total_seconds())


def _uptime_pieces(session: Session, start: datetime, end: datetime) -> dict[int, UptimePiece]:
    """Per desk whose state is known in ``[start, end)``: its :class:`UptimePiece` (for the
    daily rollup). All in SQL, so only one row per desk travels."""
    segments, at_start = _uptime_segments(session, start, end, "range")
    seconds = segments.c.seconds
    is_on = segments.c.online == true()
    off = _off(segments)
    first = segments.c.at == at_start
    last = segments.c.nxt.is_(None)
    stmt = select(
        segments.c.faculty_id,
        func.coalesce(func.sum(case((is_on, seconds), else_=0.0)), 0.0),
        func.coalesce(func.sum(case((and_(off, segments.c.prev == true()), 1), else_=0)), 0),
        func.max(case((and_(off, first), seconds), else_=0.0)),
        func.max(case((and_(off, ~first, ~last), seconds), else_=0.0)),
        func.max(case((and_(off, last), seconds), else_=0.0)),
        func.max(case((off, seconds), else_=None)),
        func.max(case((and_(off, first, last), 1), else_=0)),
        func.max(case((and_(is_on, last), 1), else_=0)),
    ).group_by(segments.c.faculty_id)
    stmt = stmt.having(func.count(segments.c.online) > 0)
    return {
        int(fid): UptimePiece(
            float(on_s),
            int(drops),
            float(lead or 0.0),
            float(inner or 0.0),
            float(trail or 0.0),
            None if longest is None else float(longest),
            bool(all_off),
            bool(on_at_end),
        )
        # Core rows, not the ORM's: 2,000 of them, read twice per report (~10 ms saved).
        for fid, on_s, drops, lead, inner, trail, longest, all_off, on_at_end in (
            session.connection().execute(stmt).all()
        )
    }


def _greater(a: Any, b: Any) -> Any:
    """SQL for the larger of ``a`` and ``b`` (``a`` when ``b`` is NULL; ``a`` never is)."""
    return case((b.is_(None), a), (b > a, b), else_=a)


def _least(a: Any, b: Any) -> Any:
    """SQL for the smaller of ``a`` and ``b`` (NULL when ``a`` is NULL)."""
    return case((a.is_(None), None), (a < b, a), else_=b)


def _seconds_between(dialect: str, a: Any, b: Any) -> Any:
    """SQL for the seconds from datetime ``a`` to ``b``."""
    if dialect == "postgresql":
        # A float: EXTRACT gives numeric, several times slower to add up (PostgreSQL 14+).
        return cast(func.extract("epoch", b - a), Float)
    return (func.julianday(b) - func.julianday(a)) * 86400.0


def _counters(names: Sequence[str]) -> list[Any]:
    """SQL aggregates over consultations for the named rollup columns."""
    return [func.coalesce(func.sum(_row_value(name)), 0) for name in names]


@functools.cache
def _row_value(name: str) -> Any:
    """One consultation's share of the rollup column ``name``: 1 or 0 for a counter or a
    histogram bucket, its answer time for ``answer_s_sum`` (built once, reused)."""
    col = Consultation.answer_s
    if name == "requests":
        return literal_column("1")
    if name == "answered":
        return case((col.is_not(None), 1), else_=0)
    if name == "answer_s_sum":
        return func.coalesce(col, 0.0)
    if name in BUCKET_COLUMNS:
        i = BUCKET_COLUMNS.index(name)
        inside = col >= ANSWER_BUCKETS_S[i]
        if i + 1 < len(ANSWER_BUCKETS_S):
            inside = inside & (col < ANSWER_BUCKETS_S[i + 1])
        return case((inside, 1), else_=0)
    return case((Consultation.status == name, 1), else_=0)


def _part(keys: Sequence[Any], values: Sequence[Any], where: Sequence[Any]) -> Select[Any]:
    """One source of a summed report: its group keys and values, labelled by position."""
    return select(
        *(k.label(f"k{i}") for i, k in enumerate(keys)),
        *(v.label(f"v{i}") for i, v in enumerate(values)),
    ).where(*where)


def _sum_parts(
    session: Session, parts: Sequence[Select[Any]], n_keys: int
) -> list[tuple[Any, ...]]:
    """The values of ``parts`` (rollup rows and raw consultations alike) summed per their
    first ``n_keys`` columns, in one statement."""
    if not parts:
        return []
    if session.get_bind().dialect.name == "postgresql":
        # A few thousand rows: starting parallel workers costs more than it saves, and on a
        # busy machine their start-up is what makes the slow tail (docs/performance.md).
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    rows = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
    columns = list(rows.c)
    stmt = select(*columns[:n_keys], *(func.sum(c) for c in columns[n_keys:]))
    if n_keys:
        stmt = stmt.group_by(*columns[:n_keys])
    return [tuple(row) for row in session.execute(stmt)]


def _truncated(dialect: str, unit: str) -> Any:
    """``created_at`` truncated to its UTC hour or day, as the database stores a datetime."""
    col = Consultation.created_at
    if dialect == "postgresql":
        return func.timezone("UTC", func.date_trunc(unit, func.timezone("UTC", col)))
    # SQLite: the text form SQLAlchemy stores (so range comparisons stay lexicographic).
    pattern = "%Y-%m-%d %H:00:00.000000" if unit == "hour" else "%Y-%m-%d 00:00:00.000000"
    return func.strftime(pattern, col)


def _as_utc(value: Any) -> datetime:
    """A truncated hour or day from the database as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _floor_hour(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _floor_week(when: datetime) -> datetime:
    day = _floor_day(when)
    return day - timedelta(days=day.weekday())


def _week_of(dialect: str, column: Any) -> Any:
    """The Monday 00:00 UTC of a UTC-midnight ``column``, as the database stores it."""
    if dialect == "postgresql":
        return func.timezone("UTC", func.date_trunc("week", func.timezone("UTC", column)))
    return func.strftime("%Y-%m-%d 00:00:00.000000", column, "weekday 0", "-6 days")


def _floor_day(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
