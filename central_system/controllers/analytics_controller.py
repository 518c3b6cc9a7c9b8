"""Analytics for the people who run ConsultEase: every query over a date range, every result a table.

Each report returns a :class:`Table` (column names and rows) that the kiosk's admin
area shows, the web dashboard charts, and :meth:`Table.to_csv` exports. Definitions
(what "answered" and "answer rate" mean, how percentiles are computed, local time)
are in docs/analytics.md; the indexes that keep them fast are in
models/consultation.py and the figures in docs/performance.md.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, Select, case, cast, func, literal, select, text
from sqlalchemy.orm import Session

from ..models import Consultation, ConsultationStatus, Faculty
from .base import ControllerBase, DbSource

if TYPE_CHECKING:
    from ..services.async_mqtt_service import AsyncMQTTService

# A date range longer than this is refused (a typo like year 2206 would scan everything).
MAX_RANGE: Final = timedelta(days=3 * 366)
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
            writer.writerow(
                ["" if v is None else round(v, 3) if isinstance(v, float) else v for v in row]
            )
        return out.getvalue()

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile by linear interpolation (PostgreSQL's ``percentile_cont``); None if empty."""
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    low, high = float(sorted_values[lo]), float(sorted_values[hi])
    return low + (high - low) * (pos - lo)


def _rate(answered: int, expired: int) -> float | None:
    # Answer rate: of the requests that got an answer or ran out of time, the share that got
    # an answer. A student's own cancellation and a request still pending say nothing about
    # the faculty member, so they are left out (docs/analytics.md).
    decided = answered + expired
    return answered / decided if decided else None


def _count_status(status: str) -> Any:
    return func.sum(case((Consultation.status == status, 1), else_=0))


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
        self.reports: dict[str, Callable[[datetime, datetime], Table]] = {
            "requests_per_day": self.requests_per_day,
            "requests_by_hour_of_week": self.requests_by_hour_of_week,
            "busiest_hours": self.busiest_hours,
            "outcomes": self.outcomes,
            "answer_times_by_faculty": self.answer_times_by_faculty,
            "answer_times_by_department": self.answer_times_by_department,
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
            day = self._local_day(session, start)
            stmt = (
                select(
                    day.label("day"),
                    func.count(),
                    func.count(Consultation.answer_s),
                    _count_status(ConsultationStatus.EXPIRED),
                    _count_status(ConsultationStatus.CANCELLED),
                )
                .where(*self._in_range(start, end))
                .group_by(text("1"))
                .order_by(text("1"))
            )
            rows = [
                (str(d), int(n), int(a), int(x or 0), int(c or 0))
                for d, n, a, x, c in session.execute(stmt)
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
        with self.session() as session:
            counts = session.execute(
                select(
                    func.count(),
                    func.count(Consultation.answer_s),
                    *(_count_status(s) for s in OUTCOME_STATUSES),
                ).where(*self._in_range(start, end))
            ).one()
            stats = self._answer_percentiles(session, start, end, None)
        requests, answered, *by_status = (int(v or 0) for v in counts)
        median, p90 = stats.get(None, (None, None))
        expired = by_status[OUTCOME_STATUSES.index(ConsultationStatus.EXPIRED)]
        columns = (
            "requests",
            "answered",
            *(str(s) for s in OUTCOME_STATUSES),
            "answer_rate",
            "median_answer_s",
            "p90_answer_s",
        )
        row = (requests, answered, *by_status, _rate(answered, expired), median, p90)
        return Table("outcomes", columns, [row])

    def answer_times_by_faculty(self, start: datetime, end: datetime) -> Table:
        """Per faculty member: requests, answered, expired, cancelled, answer rate, median/p90."""
        self._check(start, end)
        with self.session() as session:
            counts = self._group_counts(session, start, end, Consultation.faculty_id)
            stats = self._answer_percentiles(session, start, end, Consultation.faculty_id)
            people = {
                fid: (name, dept)
                for fid, name, dept in session.execute(
                    select(Faculty.id, Faculty.name, Faculty.department)
                )
            }
        rows = []
        for fid, (n, a, x, c) in counts.items():
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
        with self.session() as session:
            counts = self._group_counts(session, start, end, Faculty.department)
            stats = self._answer_percentiles(session, start, end, Faculty.department)
        rows = []
        for dept, (n, a, x, c) in counts.items():
            median, p90 = stats.get(dept, (None, None))
            rows.append((dept or "", n, a, x, c, _rate(a, x), median, p90))
        rows.sort(key=lambda r: r[0])
        return Table("answer_times_by_department", ("department", *ANSWER_COLUMNS), rows)

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

    def _offset_minutes(self, at: datetime) -> int:
        local = at.astimezone(ZoneInfo(self.timezone)) if self.timezone else at.astimezone()
        offset = local.utcoffset() or timedelta(0)
        return int(offset.total_seconds() // 60)

    def _local(self, session: Session, at: datetime) -> Any:
        """``created_at`` as a local wall-clock time (naive) in SQL."""
        col = Consultation.created_at
        if session.get_bind().dialect.name == "postgresql":
            if self.timezone:
                return func.timezone(self.timezone, col)  # exact, daylight saving included
            minutes = self._offset_minutes(at)
            return func.timezone("UTC", col) + func.make_interval(0, 0, 0, 0, 0, minutes)
        # SQLite stores naive UTC text: shift by the zone's offset at the range's start.
        return func.datetime(col, f"{self._offset_minutes(at):+d} minutes")

    def _local_day(self, session: Session, at: datetime) -> Any:
        local = self._local(session, at)
        if session.get_bind().dialect.name == "postgresql":
            return func.to_char(local, "YYYY-MM-DD")
        return func.date(local)

    def _hour_of_week(
        self, session: Session, start: datetime, end: datetime
    ) -> list[tuple[str, int, int]]:
        local = self._local(session, start)
        dow: Any
        hour: Any
        if session.get_bind().dialect.name == "postgresql":
            dow = func.date_part("isodow", local) - 1  # 0 = Monday
            hour = func.date_part("hour", local)
        else:
            dow = (cast(func.strftime("%w", local), Integer) + 6) % 7  # %w: 0 = Sunday
            hour = cast(func.strftime("%H", local), Integer)
        stmt = (
            select(dow.label("dow"), hour.label("hour"), func.count())
            .where(*self._in_range(start, end))
            .group_by(text("1"), text("2"))
        )
        return [(WEEKDAYS[int(d)], int(h), int(n)) for d, h, n in session.execute(stmt)]

    def _group_counts(
        self, session: Session, start: datetime, end: datetime, key: Any
    ) -> dict[Any, tuple[int, int, int, int]]:
        stmt: Select[Any] = select(
            key,
            func.count(),
            func.count(Consultation.answer_s),
            _count_status(ConsultationStatus.EXPIRED),
            _count_status(ConsultationStatus.CANCELLED),
        ).where(*self._in_range(start, end))
        if key is Faculty.department:
            stmt = stmt.join(Faculty, Faculty.id == Consultation.faculty_id)
        stmt = stmt.group_by(key)
        return {
            k: (int(n), int(a), int(x or 0), int(c or 0)) for k, n, a, x, c in session.execute(stmt)
        }

    def _answer_percentiles(
        self, session: Session, start: datetime, end: datetime, key: Any | None
    ) -> dict[Any, tuple[float | None, float | None]]:
        """Median and 90th percentile of ``answer_s`` per ``key`` (None: overall)."""
        where = [*self._in_range(start, end), Consultation.answer_s.is_not(None)]
        group = key if key is not None else literal(None)
        if session.get_bind().dialect.name == "postgresql":
            stmt: Select[Any] = select(
                group,
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
        # SQLite has no percentile function: read the (small, kiosk-sized) values sorted.
        values_stmt: Select[Any] = select(group, Consultation.answer_s).where(*where)
        if key is Faculty.department:
            values_stmt = values_stmt.join(Faculty, Faculty.id == Consultation.faculty_id)
        values: dict[Any, list[float]] = defaultdict(list)
        for k, v in session.execute(values_stmt.order_by(Consultation.answer_s)):
            values[k].append(float(v))
        return {k: (percentile(vs, 0.5), percentile(vs, 0.9)) for k, vs in values.items()}
