"""A faculty member's queue as a student sees it: position, expected wait, expiry.

Read-only and cheap: a position is two counts over the pending slice of
``ix_consultations_status_faculty_created``; the wait estimate reads at most
``HISTORY_ANSWERS + 1`` recent answers of that faculty member
(``ix_consultations_faculty_answered``). How the estimate is computed:
docs/analytics.md ("Queue position and expected wait").
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from ..models import Consultation, ConsultationStatus, utcnow
from .base import ControllerBase, DbSource

if TYPE_CHECKING:
    from ..config import Settings
    from ..services.async_mqtt_service import AsyncMQTTService

PENDING: Final = ConsultationStatus.PENDING.value
# The wait estimate uses this many of a faculty member's latest answers...
HISTORY_ANSWERS: Final = 20
# ...no older than this...
HISTORY_WINDOW: Final = timedelta(days=30)
# ...and says "not enough history" with fewer than this many answer intervals.
MIN_HISTORY: Final = 3


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """When a pending request expires: after ``after_s`` seconds, and at the daily cut-off.

    ``day_end`` is a local time of day (``None``: no daily cut-off) in ``tz`` (``None``:
    the machine's zone). A request expires at the earlier of ``created + after_s`` and the
    first cut-off after it was made, so "expired by now" is one comparison:
    ``created_at < cutoff(now)``.
    """

    after_s: float = 7200.0
    day_end: time | None = time(0, 0)
    tz: ZoneInfo | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ExpiryPolicy:
        """The policy configured in ``settings``."""
        tz = ZoneInfo(settings.consultation_timezone) if settings.consultation_timezone else None
        return cls(settings.consultation_expire_after_s, settings.consultation_day_end, tz)

    @property
    def enabled(self) -> bool:
        """False when requests never expire."""
        return self.after_s > 0 or self.day_end is not None

    def _local_date(self, when: datetime) -> date:
        return (when.astimezone(self.tz) if self.tz else when.astimezone()).date()

    def _cutoff_on(self, day: date) -> datetime:
        assert self.day_end is not None
        naive = datetime.combine(day, self.day_end)
        # Without a configured zone, astimezone() on a naive time reads it as the
        # machine's local time with that day's offset (daylight saving included).
        return naive.replace(tzinfo=self.tz) if self.tz else naive.astimezone()

    def _last_day_end(self, now: datetime) -> datetime:
        today = self._cutoff_on(self._local_date(now))
        return today if today <= now else self._cutoff_on(self._local_date(now) - timedelta(days=1))

    def _next_day_end(self, created: datetime) -> datetime:
        today = self._cutoff_on(self._local_date(created))
        if today > created:
            return today
        return self._cutoff_on(self._local_date(created) + timedelta(days=1))

    def cutoff(self, now: datetime) -> datetime | None:
        """Pending requests created before this instant have expired at ``now`` (None: never)."""
        candidates: list[datetime] = []
        if self.after_s > 0:
            candidates.append(now - timedelta(seconds=self.after_s))
        if self.day_end is not None:
            candidates.append(self._last_day_end(now))
        return max(candidates) if candidates else None

    def expires_at(self, created: datetime) -> datetime | None:
        """When a request made at ``created`` expires if nobody answers it (None: never)."""
        candidates: list[datetime] = []
        if self.after_s > 0:
            candidates.append(created + timedelta(seconds=self.after_s))
        if self.day_end is not None:
            candidates.append(self._next_day_end(created))
        return min(candidates) if candidates else None


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    """A faculty member's typical time per answer, or why there is none.

    ``per_request_s`` is None when fewer than :data:`MIN_HISTORY` answer intervals
    exist in the window: the kiosk then says so instead of showing a number.
    """

    per_request_s: float | None
    samples: int

    def for_position(self, position: int) -> float | None:
        """Expected seconds until the request at ``position`` (1 = next) is answered."""
        if self.per_request_s is None:
            return None
        return self.per_request_s * max(1, position)


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """Where a pending request stands in its faculty member's queue."""

    consultation_id: int
    faculty_id: int
    position: int  # 1: the next one the faculty member sees
    waiting: int  # pending requests for this faculty member, this one included
    expected_wait_s: float | None  # None: too little history (see ``history``)
    history: int  # answer intervals the estimate is based on
    expires_at: datetime | None


def answer_intervals(rows: Iterable[tuple[datetime, datetime]]) -> list[float]:
    """Seconds a faculty member spent on each answer, from ``(created_at, answered_at)`` rows.

    The rows are sorted by answer time; each interval runs from the later of the
    request's creation and the previous answer to this answer (a desk that was idle
    starts on a request when it arrives). The first row only marks where the second
    one's interval starts.
    """
    ordered = sorted(rows, key=lambda r: r[1])
    intervals: list[float] = []
    for (_, previous), (created, answered) in pairwise(ordered):
        start = max(created, previous)
        intervals.append(max(0.0, (answered - start).total_seconds()))
    return intervals


_ME = aliased(Consultation, name="me")
_OTHER = aliased(Consultation, name="other")


def _position_query() -> Any:
    """Per pending row of ``_ME``: its position and its faculty member's waiting count."""
    ahead = (
        select(func.count())
        .select_from(_OTHER)
        .where(
            _OTHER.status == PENDING,
            _OTHER.faculty_id == _ME.faculty_id,
            # Ties on created_at: the lower id (the earlier insert) is ahead.
            or_(
                _OTHER.created_at < _ME.created_at,
                and_(_OTHER.created_at == _ME.created_at, _OTHER.id <= _ME.id),
            ),
        )
        .scalar_subquery()
    )
    waiting = (
        select(func.count())
        .select_from(_OTHER)
        .where(_OTHER.status == PENDING, _OTHER.faculty_id == _ME.faculty_id)
        .scalar_subquery()
    )
    return select(_ME.id, _ME.faculty_id, _ME.created_at, ahead, waiting).where(
        _ME.status == PENDING
    )


_POSITIONS: Final = _position_query()


class QueueController(ControllerBase):
    """Queue positions, wait estimates and waiting counts (read-only)."""

    def __init__(
        self,
        db: DbSource = None,
        mqtt: AsyncMQTTService | None = None,
        *,
        expiry: ExpiryPolicy | None = None,
    ) -> None:
        super().__init__(db, mqtt)
        self.expiry = expiry or ExpiryPolicy()

    def position(self, consultation_id: int, now: datetime | None = None) -> QueuePosition | None:
        """The request's place in its queue, or None when it is not pending (or unknown)."""
        with self.session() as session:
            found = self._positions(session, _POSITIONS.where(_ME.id == int(consultation_id)), now)
        return found[0] if found else None

    def positions_for_student(
        self, student_id: int, now: datetime | None = None
    ) -> dict[int, QueuePosition]:
        """Every pending request of a student, by consultation id."""
        with self.session() as session:
            found = self._positions(
                session, _POSITIONS.where(_ME.student_id == int(student_id)), now
            )
        return {p.consultation_id: p for p in found}

    def waiting_counts(self) -> dict[int, int]:
        """Pending requests per faculty member (faculty without any are absent)."""
        stmt = (
            select(Consultation.faculty_id, func.count())
            .where(Consultation.status == PENDING)
            .group_by(Consultation.faculty_id)
        )
        with self.session() as session:
            return {int(fid): int(n) for fid, n in session.execute(stmt)}

    def wait_estimate(self, faculty_id: int, now: datetime | None = None) -> WaitEstimate:
        """The faculty member's typical time per answer from their recent answers."""
        with self.session() as session:
            return self._estimate(session, int(faculty_id), now or utcnow())

    # ------------------------------------------------------------------ helpers

    def _positions(self, session: Session, stmt: Any, now: datetime | None) -> list[QueuePosition]:
        when = now or utcnow()
        rows = session.execute(stmt).all()
        estimates: dict[int, WaitEstimate] = {}
        result: list[QueuePosition] = []
        for cid, fid, created, position, waiting in rows:
            estimate = estimates.get(fid)
            if estimate is None:
                estimate = estimates[fid] = self._estimate(session, fid, when)
            result.append(
                QueuePosition(
                    consultation_id=int(cid),
                    faculty_id=int(fid),
                    position=int(position),
                    waiting=int(waiting),
                    expected_wait_s=estimate.for_position(int(position)),
                    history=estimate.samples,
                    expires_at=self.expiry.expires_at(created),
                )
            )
        return result

    @staticmethod
    def _estimate(session: Session, faculty_id: int, now: datetime) -> WaitEstimate:
        rows = session.execute(
            select(Consultation.created_at, Consultation.answered_at)
            .where(
                Consultation.faculty_id == faculty_id,
                Consultation.answered_at.is_not(None),
                Consultation.answered_at >= now - HISTORY_WINDOW,
            )
            .order_by(Consultation.answered_at.desc())
            .limit(HISTORY_ANSWERS + 1)
        ).all()
        intervals = answer_intervals((r[0], r[1]) for r in rows if r[1] is not None)
        if len(intervals) < MIN_HISTORY:
            return WaitEstimate(None, len(intervals))
        return WaitEstimate(statistics.median(intervals), len(intervals))
