"""Desk liveness (contract section 3): the deployed firmware has no last will, so we watch.

Every live message from a desk marks it online. A periodic check marks desks
silent for ``desk_offline_after_s`` offline and shows their faculty offline.
Pending requests are re-sent on ``/messages`` exactly when the desk may not hold
them (contract 3, the rule in docs/mqtt-topics.md): after a reboot (``uptime``
went backwards, or the desk booted after we last heard from it) all of them;
after a sign of a new connection (a new presence message, or the desk coming
back online) those sent since we last heard from it; after AWAY -> AVAILABLE
those sent since it went away. A desk with a persistent session (an improved
desk that says so) gets nothing again after a reconnect: the broker kept it.

This service owns the desk-reported columns of ``Faculty`` (``status``,
``desk_online``, ``last_seen``) and the heartbeat/diagnostics of ``DeskUnit``.
To keep the database quiet with hundreds of desks, routine updates (``last_seen``,
heartbeats) are kept in memory and written in one transaction per check; only
changes that students see (online/offline, presence) are written at once. "At
once" means at the end of the MQTT handlers' current batch
(``AsyncMQTTService.call_after_batch``): one message when they trickle in, one
transaction for hundreds of desks when all of them reconnect after a broker
restart. The change's event and any re-send follow that write.

Each desk's connection (issue 12) is tracked apart from ``desk_online``: a desk is
connected from its first live message until its last will (an improved desk's
``"status": "OFFLINE"``) or the heartbeat timeout, whichever comes first. Every
change is one ``desk_connection_events`` row, inserted (executemany) in the same
transaction as the write above or as the periodic check's offline marks: never a
write of its own per message. The same check prunes rows older than
``desk_history_days`` once an hour, keeping each desk's newest one before the cut.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import Table, bindparam, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from .. import topics
from ..config import Settings, get_settings
from ..models import (
    Consultation,
    ConsultationStatus,
    DeskConnectionEvent,
    DeskTransitionReason,
    DeskUnit,
    DeskUptimeDaily,
    DeskUptimeWeekly,
    Faculty,
    FacultyStatus,
    utcnow,
)
from .base import ControllerBase, DbSource, FacultyEvent
from .outbound import faculty_status_message
from .schemas import (
    DiagnosticsPayload,
    HeartbeatPayload,
    InboundStats,
    drop_unknown_faculty,
    inbound_stats,
    parse_inbound,
)

if TYPE_CHECKING:
    from ..services.async_mqtt_service import AsyncMQTTService, MQTTMessage

logger = logging.getLogger(__name__)

# How long "this faculty id does not exist" is remembered, so junk cannot hammer the database.
UNKNOWN_FACULTY_TTL_S: Final = 5.0
_MAX_UNKNOWN_CACHE: Final = 10_000
# A desk that says it booted later than this after our last message from it has rebooted
# (its uptime and our clock disagree by network delays, never by seconds).
REBOOT_TOLERANCE: Final = timedelta(seconds=2)
# Under a burst, changes students see are written together: at most this many, this late.
VISIBLE_BATCH_ROWS: Final = 2000
VISIBLE_BATCH_WAIT_S: Final = 0.2
# Routine updates (last_seen, heartbeats) are written this many desks per transaction, with
# this pause between transactions, so that other writers (a request being created) get the
# SQLite write lock in between: 1,700 desks' rows in one transaction held it for 50+ ms.
ROUTINE_FLUSH_ROWS: Final = 250
ROUTINE_FLUSH_PAUSE_S: Final = 0.002
# The connection history is pruned this often (by the periodic check's thread).
PRUNE_EVERY_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Resend:
    """Which pending requests a desk may not hold: all (``since`` None) or those sent since ``since``."""

    since: datetime | None


@dataclass(slots=True)
class DeskState:
    """What the central system knows about one desk, in memory."""

    faculty_id: int
    online: bool
    shown: str  # Faculty.status as stored
    presence: FacultyStatus | None  # what the desk last reported, kept while it is offline
    last_seen: datetime | None
    last_seen_mono: float
    seen_dirty: bool = False
    heartbeat: dict[str, Any] | None = None
    heartbeat_at: datetime | None = None
    diagnostics: dict[str, Any] | None = None
    diagnostics_at: datetime | None = None
    has_desk_row: bool = False
    uptime_ms: int | None = None  # the desk's last reported milliseconds since boot
    presence_stamp: tuple[int | None, str] | None = None  # the last presence message seen
    doubt_since: datetime | None = None  # requests sent after this may be missing on the desk
    rebooted: bool = False  # it lost everything; re-send all once it is available
    persistent_session: bool = False  # an improved desk: the broker keeps what it misses
    utf8: bool = False  # an improved desk: its screen draws UTF-8
    connected: bool = False  # as recorded in desk_connection_events (issue 12)

    @property
    def available(self) -> bool:
        """True when students may send this faculty member requests."""
        return self.online and self.shown == FacultyStatus.AVAILABLE


class LivenessService(ControllerBase):
    """Tracks desk liveness and presence; a component with ``start()``/``stop()``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        db: DbSource = None,
        mqtt: AsyncMQTTService | None = None,
        stats: InboundStats | None = None,
        on_faculty_change: Callable[[FacultyEvent], None] | None = None,
        resend_pending: Callable[[int, datetime | None], int] | None = None,
        offline_after_s: float | None = None,
        check_interval_s: float | None = None,
    ) -> None:
        super().__init__(db, mqtt)
        self._db_source = db
        self.settings = settings or get_settings()
        self.offline_after_s = offline_after_s or self.settings.desk_offline_after_s
        self.check_interval_s = check_interval_s or self.settings.liveness_check_interval_s
        self.stats = stats or inbound_stats
        self.on_faculty_change = on_faculty_change
        self._resend = resend_pending
        self._lock = threading.RLock()
        self._desks: dict[int, DeskState] = {}
        self._unknown: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribers: list[Callable[[], None]] = []
        self.checks = 0
        self.db_writes = 0
        # Changes students see, waiting for the end of the handlers' batch (faculty id -> when).
        self._visible: dict[int, datetime] = {}
        self._visible_since = 0.0
        self._resends: list[tuple[int, Callable[[], None]]] = []  # dispatch thread only
        # Connection transitions waiting for the next write (rows of desk_connection_events).
        self._transitions: list[dict[str, Any]] = []
        self.disconnections = 0  # since start: connected -> not (GET /metrics)
        self.history_days = self.settings.desk_history_days
        self._pruned_mono: float | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load known desks, subscribe to heartbeats and diagnostics, start the periodic check."""
        if self._thread is not None:
            return
        self._load_desks()
        self._unsubscribers = [
            # State reports: under a burst only the newest per desk is handled (coalesce).
            self.mqtt.subscribe(
                topics.FACULTY_HEARTBEAT_FILTER, self.on_heartbeat_message, 1, coalesce=True
            ),
            self.mqtt.subscribe(
                topics.FACULTY_DIAGNOSTICS_FILTER, self.on_diagnostics_message, 1, coalesce=True
            ),
        ]
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="desk-liveness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the periodic check, flush what is pending in memory, unsubscribe."""
        while self._unsubscribers:
            self._unsubscribers.pop()()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        try:
            self._flush_visible()
            self._flush()
        except SQLAlchemyError:
            logger.exception("final liveness flush failed")

    def _run(self) -> None:
        while not self._stop.wait(self.check_interval_s):
            try:
                self.check()
            except Exception:
                logger.exception("liveness check failed")
            now = time.monotonic()
            if self._pruned_mono is None or now - self._pruned_mono >= PRUNE_EVERY_S:
                self._pruned_mono = now
                try:
                    self.prune_history()
                except SQLAlchemyError:
                    logger.exception("pruning the desk connection history failed")

    def prune_history(self, now: datetime | None = None) -> int:
        """Delete connection rows older than ``history_days``, except each desk's newest such row.

        That row says what state the desk was in at the cut, which an uptime report over a
        range starting later needs. Returns the number of rows deleted.
        """
        cutoff = (now or utcnow()) - timedelta(days=self.history_days)
        ev = DeskConnectionEvent
        keep = (
            select(func.max(ev.id)).where(ev.at < cutoff).group_by(ev.faculty_id).scalar_subquery()
        )
        with self.session() as session:
            result = session.execute(delete(ev).where(ev.at < cutoff, ev.id.not_in(keep)))
            # The day before the cut stays: its state at 24:00 starts a report's tail.
            day_before = DeskUptimeDaily.day < cutoff - timedelta(days=1)
            session.execute(delete(DeskUptimeDaily).where(day_before))
            session.execute(delete(DeskUptimeWeekly).where(DeskUptimeWeekly.week < cutoff))
        deleted = int(getattr(result, "rowcount", 0) or 0)
        if deleted:
            logger.info("desk connection history: %d rows older than %s pruned", deleted, cutoff)
        return deleted

    def set_resender(self, resend_pending: Callable[[int, datetime | None], int]) -> None:
        """Use ``resend_pending(faculty_id, since) -> count`` when a desk may miss requests."""
        self._resend = resend_pending

    # ------------------------------------------------------------------ inbound

    def on_heartbeat_message(self, message: MQTTMessage) -> None:
        """Subscription handler for ``consultease/faculty/+/heartbeat`` (contract 2.3)."""
        parsed = parse_inbound(HeartbeatPayload, message, self.stats)
        if parsed is None:
            return
        fid = self._fid(message)
        data = parsed.model_dump(mode="json", exclude_none=True)
        if not self.observe(
            fid,
            retained=message.retain,
            heartbeat_presence=parsed.presence(),
            heartbeat=data,
            uptime_ms=parsed.uptime_ms(),
            improved=parsed.improved(),
        ):
            drop_unknown_faculty(message, fid, self.stats)

    def on_diagnostics_message(self, message: MQTTMessage) -> None:
        """Subscription handler for ``consultease/faculty/+/diagnostics``."""
        parsed = parse_inbound(DiagnosticsPayload, message, self.stats)
        if parsed is None:
            return
        fid = self._fid(message)
        data = parsed.model_dump(mode="json")
        if not self.observe(fid, retained=message.retain, diagnostics=data):
            drop_unknown_faculty(message, fid, self.stats)

    @staticmethod
    def _fid(message: MQTTMessage) -> int:
        located = topics.parse_faculty_topic(message.topic)
        assert located is not None  # parse_inbound dropped anything else
        return located[0]

    def observe(
        self,
        faculty_id: int,
        *,
        retained: bool = False,
        presence: FacultyStatus | None = None,
        heartbeat_presence: FacultyStatus | None = None,
        heartbeat: dict[str, Any] | None = None,
        diagnostics: dict[str, Any] | None = None,
        uptime_ms: int | None = None,
        presence_message: bool = False,
        improved: tuple[bool, bool] | None = None,
    ) -> bool:
        """Record a valid message from desk ``faculty_id``; False when that faculty does not exist.

        A retained message is old news replayed by the broker, not a sign of life,
        but its presence is remembered. ``uptime_ms`` is the desk's milliseconds
        since boot; ``presence_message`` says this was a presence report (the
        firmware sends one after every connect); ``improved`` is what an improved
        desk says of itself: (persistent session, UTF-8 screen).
        """
        with self._lock:
            desk = self._desk(faculty_id)
            if desk is None:
                return False
            before_online, before_shown = desk.online, desk.shown
            before_presence, last_contact = desk.presence, desk.last_seen
            before_connected = desk.connected
            now = utcnow()
            came_back = False
            if improved is not None:
                desk.persistent_session, desk.utf8 = improved
            if not retained:
                desk.last_seen = now
                desk.last_seen_mono = time.monotonic()
                desk.seen_dirty = True
                if not desk.online:
                    desk.online = True
                    came_back = True
            if presence is not None:
                desk.presence = presence
            elif heartbeat_presence is not None and (came_back or desk.presence is None):
                # Heartbeats carry presence too: enough to restore a desk that comes back silently.
                desk.presence = heartbeat_presence
            if heartbeat is not None:
                desk.heartbeat, desk.heartbeat_at = heartbeat, now
            if diagnostics is not None:
                desk.diagnostics, desk.diagnostics_at = diagnostics, now
            desk.shown = self._shown(desk)
            resend: Resend | None = None
            if not retained:
                # Record every presence stamp, so the legacy topic's copy is known as one.
                new_presence = presence_message and self._new_presence_stamp(
                    desk, uptime_ms, presence
                )
                new_link = came_back or new_presence
                resend = self._what_to_resend(
                    desk, now, last_contact, uptime_ms, new_link, before_presence
                )
            if not retained:
                if presence == FacultyStatus.OFFLINE:
                    # An improved desk's last will: the broker says it lost the connection.
                    self._connection(desk, False, DeskTransitionReason.LWT, now)
                else:
                    self._connection(desk, True, _online_reason(presence, heartbeat), now)
            visible = desk.online != before_online or desk.shown != before_shown
            event = None
            if visible or desk.connected != before_connected:
                try:
                    self._write_change(desk, now)
                except Exception:
                    if resend is not None:  # kept for the desk's next message, not lost
                        self._keep_doubt(desk, resend)
                    raise
            if visible:
                event = FacultyEvent(
                    faculty_id, desk.shown, desk.online, before_shown, before_online, now
                )
        if came_back:
            logger.info("desk of faculty %d is back online", faculty_id)
        if event is not None:
            self._notify(event)
        if resend is not None:
            self._resend_pending(faculty_id, resend)
        return True

    def _connection(
        self, desk: DeskState, connected: bool, reason: DeskTransitionReason, now: datetime
    ) -> None:
        """Record a change of ``desk.connected`` for the next write; under the lock."""
        if desk.connected == connected:
            return
        desk.connected = connected
        if not connected:
            self.disconnections += 1
        self._transitions.append(
            {"faculty_id": desk.faculty_id, "at": now, "online": connected, "reason": str(reason)}
        )

    def _insert_transitions(self, session: Session) -> None:
        """Insert the waiting connection rows (one executemany) in ``session``; under the lock."""
        if not self._transitions:
            return
        rows, self._transitions = self._transitions, []
        session.execute(insert(DeskConnectionEvent), rows)

    @staticmethod
    def _keep_doubt(desk: DeskState, resend: Resend) -> None:
        """Undo taking ``resend`` from ``desk``: a later message decides again."""
        if resend.since is None:
            desk.rebooted = True
        else:
            desk.doubt_since = min(desk.doubt_since or resend.since, resend.since)

    @staticmethod
    def _new_presence_stamp(
        desk: DeskState, uptime_ms: int | None, presence: FacultyStatus | None
    ) -> bool:
        """False for the legacy topic's copy of the presence message we just saw."""
        stamp = (uptime_ms, str(presence))
        if uptime_ms is not None and stamp == desk.presence_stamp:
            return False
        desk.presence_stamp = stamp
        return True

    @staticmethod
    def _what_to_resend(
        desk: DeskState,
        now: datetime,
        last_contact: datetime | None,
        uptime_ms: int | None,
        new_link: bool,
        before_presence: FacultyStatus | None,
    ) -> Resend | None:
        """The re-send rule (docs/mqtt-topics.md, "When a request is sent again"); under the lock."""
        if uptime_ms is not None:
            booted_at = now - timedelta(milliseconds=uptime_ms)
            desk_uptime_before = desk.uptime_ms
            went_back = desk.uptime_ms is not None and uptime_ms < desk.uptime_ms
            # Without an earlier uptime (we restarted): did it boot after we last heard from it?
            # Not otherwise: a message handled late (a busy database) would look like a reboot.
            booted_since = (
                desk.uptime_ms is None
                and last_contact is not None
                and booted_at > last_contact + REBOOT_TOLERANCE
            )
            desk.uptime_ms = uptime_ms
            if went_back or booted_since or last_contact is None:
                # A desk we never heard from holds nothing of ours either.
                logger.info(
                    "desk of faculty %d rebooted or new (uptime %d ms, was %s; last heard of %s)",
                    desk.faculty_id,
                    uptime_ms,
                    desk_uptime_before,
                    last_contact.isoformat() if last_contact else "never",
                )
                desk.rebooted, desk.doubt_since = True, None
        since = last_contact or now
        if new_link and not desk.persistent_session and not desk.rebooted:
            # Clean session: what was published while it was away from the broker is gone.
            desk.doubt_since = min(desk.doubt_since or since, since)
        went_away = desk.presence == FacultyStatus.AWAY and before_presence != FacultyStatus.AWAY
        if went_away and not desk.rebooted:
            # The firmware drops what arrives while AWAY (contract 3.1).
            desk.doubt_since = min(desk.doubt_since or since, since)
        if not desk.available:
            return None
        if desk.rebooted:
            desk.rebooted, desk.doubt_since = False, None
            return Resend(None)
        if desk.doubt_since is not None:
            doubt, desk.doubt_since = desk.doubt_since, None
            return Resend(doubt)
        return None

    def set_presence(self, faculty_id: int, presence: FacultyStatus) -> None:
        """Record a presence set by an administrator (treated like a report, without liveness)."""
        self.observe(faculty_id, retained=True, presence=presence)

    def forget(self, faculty_id: int) -> None:
        """Drop what is cached for ``faculty_id`` (created or deleted faculty)."""
        with self._lock:
            self._desks.pop(faculty_id, None)
            self._unknown.pop(faculty_id, None)

    def shows_utf8(self, faculty_id: int) -> bool:
        """True when the desk said it draws UTF-8 (an improved desk); the firmware's font is ASCII.

        Lock-free (one dict lookup, one attribute): callers may be inside a database
        transaction, and the lock is held while liveness itself writes.
        """
        desk = self._desks.get(faculty_id)
        return desk is not None and desk.utf8

    def is_online(self, faculty_id: int) -> bool:
        """Whether the desk of ``faculty_id`` is online as far as this service knows."""
        with self._lock:
            desk = self._desks.get(faculty_id)
            return desk is not None and desk.online

    def desk_state(self, faculty_id: int) -> DeskState | None:
        """A copy of the in-memory state of one desk (admin screen, tests)."""
        with self._lock:
            desk = self._desks.get(faculty_id)
            if desk is None:
                return None
            return dataclasses.replace(desk)

    # ------------------------------------------------------------------ the periodic check

    def check(self) -> list[int]:
        """Mark desks silent for too long offline and flush routine updates; returns the ids marked offline."""
        events: list[FacultyEvent] = []
        with self._lock:
            self.checks += 1
            now_mono = time.monotonic()
            now = utcnow()
            silent = [
                d
                for d in self._desks.values()
                if d.online and now_mono - d.last_seen_mono > self.offline_after_s
            ]
            for desk in silent:
                before_shown = desk.shown
                self._connection(desk, False, DeskTransitionReason.HEARTBEAT_TIMEOUT, now)
                desk.online = False
                desk.shown = self._shown(desk)
                events.append(
                    FacultyEvent(desk.faculty_id, desk.shown, False, before_shown, True, now)
                )
            self._flush(offline=silent, now=now)
        for event in events:
            logger.warning(
                "desk of faculty %d silent for over %.0f s: offline",
                event.faculty_id,
                self.offline_after_s,
            )
            self._notify(event)
        return [e.faculty_id for e in events]

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _shown(desk: DeskState) -> str:
        # Contract 3: a silent desk shows offline whatever its last presence said;
        # the presence itself is kept in memory and restored when the desk returns.
        if not desk.online:
            return FacultyStatus.OFFLINE.value
        return (desk.presence or FacultyStatus.OFFLINE).value

    def _desk(self, faculty_id: int) -> DeskState | None:
        desk = self._desks.get(faculty_id)
        if desk is not None:
            return desk
        expiry = self._unknown.get(faculty_id)
        if expiry is not None and expiry > time.monotonic():
            return None
        with self.session() as session:
            found = session.execute(
                select(Faculty, _last_online()).where(Faculty.id == faculty_id)
            ).first()
            if found is None:
                if len(self._unknown) >= _MAX_UNKNOWN_CACHE:
                    self._unknown.clear()
                self._unknown[faculty_id] = time.monotonic() + UNKNOWN_FACULTY_TTL_S
                return None
            desk = self._state_from_row(found[0], found[1])
            desk.has_desk_row = (
                session.scalar(select(DeskUnit.id).where(DeskUnit.faculty_id == faculty_id))
                is not None
            )
        self._desks[faculty_id] = desk
        return desk

    def _state_from_row(self, faculty: Faculty, last_online: bool | None = None) -> DeskState:
        """The state of a desk as stored; ``last_online``: its newest connection row (None: none)."""
        now = utcnow()
        age = (now - faculty.last_seen).total_seconds() if faculty.last_seen else None
        # A desk that was online when we last ran counts from its stored last_seen.
        mono = time.monotonic() - (age if age is not None else self.offline_after_s + 1)
        status = faculty.status
        presence = FacultyStatus(status) if status != FacultyStatus.OFFLINE else None
        if last_online is None:
            last_online = bool(faculty.desk_online) and status != FacultyStatus.OFFLINE
        return DeskState(
            faculty_id=faculty.id,
            online=bool(faculty.desk_online),
            shown=status,
            presence=presence,
            last_seen=faculty.last_seen,
            last_seen_mono=mono,
            connected=bool(last_online),
        )

    def _load_desks(self) -> None:
        """Every faculty member's desk state in one query (not one query per desk on its first message)."""
        with self._lock, self.session() as session:
            for faculty, last_online in session.execute(select(Faculty, _last_online())).all():
                if faculty.id not in self._desks:
                    self._desks[faculty.id] = self._state_from_row(faculty, last_online)
            for fid in session.scalars(select(DeskUnit.faculty_id)).all():
                if fid in self._desks:
                    self._desks[fid].has_desk_row = True

    def _write_change(self, desk: DeskState, now: datetime) -> None:
        """Write a change students see: now, or with the rest of the handlers' batch (one transaction)."""
        first = not self._visible
        self._visible[desk.faculty_id] = now
        if not self.mqtt.on_dispatch_thread:
            self._flush_visible()
        elif first:
            self._visible_since = time.monotonic()
            self.mqtt.call_after_batch(self._flush_visible_when_due)

    def _flush_visible_when_due(self) -> None:
        """After a batch: write when the burst is over, or enough has gathered, or it waited enough."""
        if (
            self.mqtt.inbound_waiting == 0
            or len(self._visible) >= VISIBLE_BATCH_ROWS
            or time.monotonic() - self._visible_since >= VISIBLE_BATCH_WAIT_S
        ):
            self._flush_visible()
        else:
            self.mqtt.call_after_batch(self._flush_visible_when_due)

    def _flush_visible(self) -> None:
        """One ``UPDATE`` run (executemany) for every desk whose visible state changed."""
        with self._lock:
            changed, self._visible = self._visible, {}
            desks = [(self._desks.get(fid), when) for fid, when in changed.items()]
            rows = [(d, when) for d, when in desks if d is not None]
            if not rows and not self._transitions:
                return
            fac = cast(Table, Faculty.__table__)
            status = bindparam("v_status", type_=fac.c.status.type)
            statement = (
                update(fac)
                .where(fac.c.id == bindparam("k_"))
                .values(
                    status=status,
                    # SET expressions see the row as it was: the stamp moves only on a real change.
                    status_changed_at=case(
                        (fac.c.status != status, bindparam("v_when", type_=fac.c.last_seen.type)),
                        else_=fac.c.status_changed_at,
                    ),
                    desk_online=bindparam("v_online", type_=fac.c.desk_online.type),
                    last_seen=func.coalesce(
                        bindparam("v_seen", type_=fac.c.last_seen.type), fac.c.last_seen
                    ),
                )
            )
            with self.session() as session:
                self._insert_transitions(session)
                if not rows:
                    return
                session.execute(
                    statement,
                    [
                        {
                            "k_": d.faculty_id,
                            "v_status": d.shown,
                            "v_when": when,
                            "v_online": d.online,
                            "v_seen": d.last_seen,
                        }
                        for d, when in rows
                    ],
                )
            for d, _when in rows:
                d.seen_dirty = False
            self.db_writes += 1

    def _flush(self, offline: list[DeskState] | None = None, now: datetime | None = None) -> None:
        """Write routine updates (last_seen, heartbeats) and offline marks (with the first batch)."""
        with self._lock:
            offline = offline or []
            now = now or utcnow()
            dirty = [
                d
                for d in self._desks.values()
                if d.seen_dirty or d.heartbeat_at is not None or d.diagnostics_at is not None
            ]
            if not dirty and not offline and not self._transitions:
                return
            try:
                # In transactions of ROUTINE_FLUSH_ROWS desks with a pause between them: a request
                # created meanwhile waits for one of them, not for all 10,000 desks' rows.
                for start in range(0, max(1, len(dirty)), ROUTINE_FLUSH_ROWS):
                    if start:
                        time.sleep(ROUTINE_FLUSH_PAUSE_S)
                    chunk = dirty[start : start + ROUTINE_FLUSH_ROWS]
                    self._write_batch(chunk, offline if not start else [], now)
            finally:
                # A batch the database refused is not retried forever: liveness moves on.
                for desk in dirty:
                    desk.seen_dirty = False
                    desk.heartbeat_at = None
                    desk.diagnostics_at = None
            self.db_writes += 1

    def _write_batch(self, dirty: list[DeskState], offline: list[DeskState], now: datetime) -> None:
        """One transaction: offline marks, connection history, last_seen, heartbeats, diagnostics."""
        self._ensure_desk_rows(
            [d for d in dirty if not d.has_desk_row and (d.heartbeat or d.diagnostics)]
        )
        with self.session() as session:
            self._insert_transitions(session)
            for desk in offline:
                session.execute(
                    update(Faculty)
                    .where(Faculty.id == desk.faculty_id)
                    .values(desk_online=False, status=desk.shown, status_changed_at=now)
                )
                # Other kiosks learn it too (contract 1.4, source "central").
                msg = faculty_status_message(desk.faculty_id, desk.shown)
                self.mqtt.stage(session, msg.topic, msg.payload, msg.qos)
            # executemany: one round trip per kind, whatever the number of desks.
            fac, unit = cast(Table, Faculty.__table__), cast(Table, DeskUnit.__table__)
            _update_many(
                session,
                fac,
                "id",
                [
                    (d.faculty_id, {"last_seen": d.last_seen})
                    for d in dirty
                    if d.seen_dirty and d.last_seen is not None
                ],
            )
            _update_many(
                session,
                unit,
                "faculty_id",
                [
                    (
                        d.faculty_id,
                        {"last_heartbeat": d.heartbeat, "last_heartbeat_at": d.heartbeat_at},
                    )
                    for d in dirty
                    if d.heartbeat_at is not None and d.has_desk_row
                ],
            )
            _update_many(
                session,
                unit,
                "faculty_id",
                [
                    (
                        d.faculty_id,
                        {
                            "last_diagnostics": d.diagnostics,
                            "last_diagnostics_at": d.diagnostics_at,
                        },
                    )
                    for d in dirty
                    if d.diagnostics_at is not None and d.has_desk_row
                ],
            )

    def _ensure_desk_rows(self, desks: list[DeskState]) -> None:
        """Create missing DeskUnit rows: one transaction for all, row by row if that collides."""
        if not desks:
            return
        try:
            self._create_desk_rows(desks)
        except IntegrityError:
            for desk in desks:  # an admin registered one of these desks meanwhile
                with contextlib.suppress(IntegrityError):
                    self._create_desk_rows([desk])
        for desk in desks:
            desk.has_desk_row = True

    def _create_desk_rows(self, desks: list[DeskState]) -> None:
        ids = [d.faculty_id for d in desks]
        with self.session() as session:
            have = set(
                session.scalars(select(DeskUnit.faculty_id).where(DeskUnit.faculty_id.in_(ids)))
            )
            known = set(session.scalars(select(Faculty.id).where(Faculty.id.in_(ids))))
            rows = [{"faculty_id": fid} for fid in ids if fid in known and fid not in have]
            # One executemany INSERT, not an ORM object per desk (a fleet's first heartbeats).
            if rows:
                session.execute(insert(DeskUnit), rows)

    def _notify(self, event: FacultyEvent) -> None:
        if self.on_faculty_change is None:
            return
        # After the batch's write (scheduled before it): a listener that reads the row sees the change.
        self.mqtt.call_after_batch(partial(self._notify_now, event))

    def _notify_now(self, event: FacultyEvent) -> None:
        listener = self.on_faculty_change
        if listener is None:
            return
        try:
            listener(event)
        except Exception:
            logger.exception("faculty change listener failed")

    def _resend_pending(self, faculty_id: int, resend: Resend) -> None:
        call = partial(self._resend_now, faculty_id, resend)
        if not self.mqtt.on_dispatch_thread:
            call()
            return
        self._resends.append((faculty_id, call))
        if len(self._resends) == 1:
            self.mqtt.call_after_batch(self._resend_batch)

    def _resend_batch(self) -> None:
        """The batch's re-sends, after its write; one query first finds who has anything pending."""
        todo, self._resends = self._resends, []
        if len(todo) > 1:
            try:
                waiting = self._faculty_with_pending([fid for fid, _ in todo])
            except SQLAlchemyError:
                logger.exception("finding pending requests failed; re-sending to every desk")
            else:
                todo = [(fid, call) for fid, call in todo if fid in waiting]
        for _fid, call in todo:
            call()

    def _faculty_with_pending(self, faculty_ids: list[int]) -> set[int]:
        found: set[int] = set()
        with self.session() as session:
            for i in range(0, len(faculty_ids), 500):
                found.update(
                    session.scalars(
                        select(Consultation.faculty_id)
                        .where(
                            Consultation.faculty_id.in_(faculty_ids[i : i + 500]),
                            Consultation.status == ConsultationStatus.PENDING.value,
                        )
                        .distinct()
                    )
                )
        return found

    def _resend_now(self, faculty_id: int, resend: Resend) -> None:
        resend_fn = self._resend
        if resend_fn is None:
            from .consultation_controller import ConsultationController

            resend_fn = ConsultationController(db=self._db_source, mqtt=self._mqtt).resend_pending
            self._resend = resend_fn
        try:
            resend_fn(faculty_id, resend.since)
        except Exception:
            logger.exception(
                "re-sending pending requests to faculty %d failed; trying again at its next message",
                faculty_id,
            )
            with self._lock:
                desk = self._desks.get(faculty_id)
                if desk is not None:
                    self._keep_doubt(desk, resend)


def _online_reason(
    presence: FacultyStatus | None, heartbeat: dict[str, Any] | None
) -> DeskTransitionReason:
    if presence is not None:
        return DeskTransitionReason.STATUS
    if heartbeat is not None:
        return DeskTransitionReason.HEARTBEAT
    return DeskTransitionReason.MESSAGE


def _last_online() -> Any:
    """Per ``Faculty`` row: ``online`` of its desk's newest connection row (NULL: none)."""
    ev = DeskConnectionEvent
    return (
        select(ev.online)
        .where(ev.faculty_id == Faculty.id)
        .order_by(ev.at.desc(), ev.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _update_many(
    session: Session, table: Table, key: str, rows: list[tuple[int, dict[str, object]]]
) -> None:
    """One ``UPDATE table SET ... WHERE key = ?`` run for every row (executemany, one round trip).

    Every row sets the same columns. Bind names carry a prefix because SQLAlchemy does
    not allow a bind parameter named like a column it updates.
    """
    if not rows:
        return
    columns = list(rows[0][1])
    statement = (
        update(table)
        .where(table.c[key] == bindparam("k_"))
        .values({c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns})
    )
    session.execute(
        statement, [{"k_": k, **{f"v_{c}": values[c] for c in columns}} for k, values in rows]
    )
