"""Consultations: a student's request to a faculty member's desk, and the desk's answer.

Outgoing messages follow contract section 1 and are staged in the same transaction
as the row they announce; desk responses follow contract 2.2.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Select,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import topics
from ..models import (
    ALLOWED_TRANSITIONS,
    ANSWER_STATUSES,
    Consultation,
    ConsultationStatus,
    Faculty,
    Student,
    utcnow,
)
from ..services.async_mqtt_service import MQTTMessage, MQTTServiceError, OutboxBatch
from . import outbound
from .base import ConsultationEvent, ControllerBase, DbSource, Listeners, audit
from .queue_controller import ExpiryPolicy
from .schemas import (
    InboundStats,
    ResponsePayload,
    drop,
    drop_unknown_faculty,
    inbound_stats,
    parse_inbound,
)

if TYPE_CHECKING:
    from ..services.async_mqtt_service import AsyncMQTTService

logger = logging.getLogger(__name__)

_CONSULTATIONS = cast(Table, Consultation.__table__)
_STUDENTS = cast(Table, Student.__table__)
_FACULTY = cast(Table, Faculty.__table__)
_STUDENT_ATTRS: Final = [(a.key, a.columns[0]) for a in sa_inspect(Student).column_attrs]
_FACULTY_ATTRS: Final = [(a.key, a.columns[0]) for a in sa_inspect(Faculty).column_attrs]


def _admission(where: ColumnElement[bool], *, reserve_id: bool) -> Select[Any]:
    """A request's admission in one read, as plain columns (no ORM load): the student (every
    column, named as the model names them), the faculty member asked for (``:fid``; every
    column, ``f_``-prefixed; NULL when there is none), the student's pending count with them
    and, with ``reserve_id`` (PostgreSQL), the new request's id from its sequence (a refused
    request leaves a gap in the ids, as a rolled-back INSERT does)."""
    pending = (
        select(func.count())
        .select_from(_CONSULTATIONS)
        .where(
            _CONSULTATIONS.c.student_id == _STUDENTS.c.id,
            _CONSULTATIONS.c.faculty_id == bindparam("fid"),
            _CONSULTATIONS.c.status == ConsultationStatus.PENDING.value,
        )
        .scalar_subquery()
    )
    columns: list[Any] = [
        *(column.label(key) for key, column in _STUDENT_ATTRS),
        *(column.label(f"f_{key}") for key, column in _FACULTY_ATTRS),
        pending.label("pending"),
    ]
    if reserve_id:
        columns.append(
            func.nextval(func.pg_get_serial_sequence("consultations", "id")).label("next_id")
        )
    return (
        select(*columns)
        .select_from(_STUDENTS.outerjoin(_FACULTY, _FACULTY.c.id == bindparam("fid")))
        .where(where)
    )


# Built once each: they run for every request under load. By the student's id (``:sid``),
# and by the tapped card (``:uid``) for the server, which reads it with the kiosk's token
# check in one statement (``create_consultation_for``); indexed by reserve_id.
_ADMISSION_BY_ID: Final = tuple(
    _admission(_STUDENTS.c.id == bindparam("sid"), reserve_id=r) for r in (False, True)
)
_ADMISSION_BY_CARD: Final = tuple(
    _admission(_STUDENTS.c.rfid_uid == bindparam("uid"), reserve_id=r) for r in (False, True)
)
_STUDENT_EXISTS: Final = select(_STUDENTS.c.id).where(_STUDENTS.c.id == bindparam("sid"))


@dataclass(frozen=True, slots=True)
class Admission:
    """A request's admission read: its statement by the student's id (``:sid``) or by the
    tapped card (``:uid``), each with ``params`` (the faculty member asked for)."""

    reserve_id: bool
    params: dict[str, Any]

    @property
    def by_id(self) -> Select[Any]:
        return _ADMISSION_BY_ID[self.reserve_id]

    @property
    def by_card(self) -> Select[Any]:
        return _ADMISSION_BY_CARD[self.reserve_id]


_CREATE_INSERT: Final = insert(_CONSULTATIONS)
# PostgreSQL: the same with its id reserved, to run with the outbox rows as one statement.
_CREATE_INSERT_WITH_ID: Final = insert(_CONSULTATIONS).values(
    {
        column: bindparam(f"c_{column}", type_=_CONSULTATIONS.c[column].type)
        for column in (
            "id",
            "student_id",
            "faculty_id",
            "message",
            "course_code",
            "status",
            "created_at",
            "last_sent_at",
        )
    }
)
# A desk response's read and its conditional UPDATE (one per target status), built once:
# they run for every response under load.
_RESPONSE_LOOKUP: Final = (
    select(
        _CONSULTATIONS.c.student_id,
        _CONSULTATIONS.c.faculty_id,
        _CONSULTATIONS.c.status,
        _CONSULTATIONS.c.created_at,
    )
    .where(_CONSULTATIONS.c.id == bindparam("cid"))
    .with_for_update()
)
_RESPONSE_UPDATES: Final = {
    status: update(_CONSULTATIONS)
    .where(_CONSULTATIONS.c.id == bindparam("cid"), _CONSULTATIONS.c.status == bindparam("prev"))
    .values({"status": status.value, f"{status.value}_at": bindparam("at")})
    for status in ConsultationStatus
    if f"{status.value}_at" in _CONSULTATIONS.c
}
# The desk's first answer to a pending request also records when it came and how long it
# took (the queue's history for wait estimates, and the analytics: docs/analytics.md).
_FIRST_ANSWER_UPDATES: Final = {
    status: update(_CONSULTATIONS)
    .where(_CONSULTATIONS.c.id == bindparam("cid"), _CONSULTATIONS.c.status == bindparam("prev"))
    .values(
        {
            "status": status.value,
            f"{status.value}_at": bindparam("at"),
            "answered_at": bindparam("at"),
            "answer_s": bindparam("answer_s"),
        }
    )
    for status in ConsultationStatus
    if status in ANSWER_STATUSES
}
# The expiry sweep takes at most this many requests per transaction (bounded work).
EXPIRE_BATCH: Final = 200

# The largest consultation id each database's key holds (models: INTEGER primary key).
_MAX_KEY: Final = {"postgresql": 2**31 - 1}
MIN_MESSAGE_CHARS: Final = 10
MAX_MESSAGE_CHARS: Final = 500
DEFAULT_MAX_PENDING_PER_FACULTY: Final = 3
COURSE_CODE_PATTERN: Final = re.compile(r"^[A-Z]{2,5}\s?\d{2,4}[A-Z]?$")
# The deployed firmware keeps at most 10 requests; re-sending more only pushes out older ones.
RESEND_LIMIT: Final = 10
# A request reaches the broker a little after the transaction that stamps ``last_sent_at``, and a
# desk's message is handled a little after it arrived (longer on a busy database): "sent since"
# reaches back this far. The withdrawal before each re-send makes reaching back harmless.
RESEND_MARGIN: Final = timedelta(seconds=5)
# A misbehaving desk must not fill the audit log: at most this many rejections per window.
AUDIT_MAX_PER_WINDOW: Final = 20
AUDIT_WINDOW_S: Final = 60.0


class ConsultationError(ValueError):
    """A consultation request or action was refused; ``str(err)`` is fit to show on the kiosk."""


class StudentNotFoundError(ConsultationError):
    """No student with that id."""


class FacultyNotFoundError(ConsultationError):
    """No faculty member with that id."""


class FacultyUnavailableError(ConsultationError):
    """The faculty member's desk is offline or they are not available."""


class InvalidMessageError(ConsultationError):
    """The request text is too short, too long or not text."""


class InvalidCourseCodeError(ConsultationError):
    """The course code does not look like ``CS101`` or ``MATH 2010``."""


class TooManyPendingError(ConsultationError):
    """The student already has the maximum of pending requests with this faculty member."""


class ConsultationNotFoundError(ConsultationError):
    """No consultation with that id."""


class NotOwnConsultationError(ConsultationError):
    """A student tried to act on someone else's consultation."""


class NotCancellableError(ConsultationError):
    """Only pending consultations can be cancelled."""


class WebAnswerError(ConsultationError):
    """A browser answer the consultation's state does not allow."""


class ResponseOutcome(StrEnum):
    """What happened to a desk's response."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


def normalize_course_code(course_code: str | None) -> str | None:
    """``None`` for no course; else the upper-cased code, or :class:`InvalidCourseCodeError`."""
    if course_code is None:
        return None
    if not isinstance(course_code, str):
        raise InvalidCourseCodeError("The course code must be text, like CS101.")
    code = " ".join(course_code.split()).upper()
    if not code:
        return None
    if not COURSE_CODE_PATTERN.match(code):
        raise InvalidCourseCodeError(
            "The course code should look like CS101 or MATH 2010 (letters, then digits)."
        )
    return code


def normalize_message(message: str) -> str:
    """The request text without control characters, 10–500 characters, or :class:`InvalidMessageError`."""
    if not isinstance(message, str):
        raise InvalidMessageError("The request must be text.")
    text = outbound.sanitize_request_text(message)
    if len(text) < MIN_MESSAGE_CHARS:
        raise InvalidMessageError(
            f"Please describe your request in at least {MIN_MESSAGE_CHARS} characters."
        )
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidMessageError(
            f"Please keep your request under {MAX_MESSAGE_CHARS} characters (it has {len(text)})."
        )
    return text


def _as_id(value: object, error: type[ConsultationError], what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise error(f"Unknown {what}.")
    try:
        return int(value)
    except ValueError as err:
        raise error(f"Unknown {what}.") from err


def _new_request(student: Student, faculty: Faculty, text: str, code: str | None) -> Consultation:
    """An admitted request, transient, its id still to come. The caller gets the same
    attributes as from a load, the student and faculty member included (no reload)."""
    now = utcnow()
    consultation = Consultation(
        student_id=student.id,
        faculty_id=faculty.id,
        message=text,
        course_code=code,
        status=ConsultationStatus.PENDING.value,
        created_at=now,
        last_sent_at=now,
    )
    consultation.student = student
    consultation.faculty = faculty
    return consultation


def _foreign_key_failed(err: IntegrityError) -> bool:
    """The INSERT named a student or faculty member that is gone (PostgreSQL's SQLSTATE
    23503, SQLite's message)."""
    return getattr(err.orig, "sqlstate", None) == "23503" or "FOREIGN KEY" in str(err.orig)


def _insert_values(c: Consultation) -> dict[str, Any]:
    return {
        "student_id": c.student_id,
        "faculty_id": c.faculty_id,
        "message": c.message,
        "course_code": c.course_code,
        "status": c.status,
        "created_at": c.created_at,
        "last_sent_at": c.last_sent_at,
    }


class DeskLiveness(Protocol):
    """What this controller asks of the desk liveness service (``liveness.LivenessService``).

    A protocol, not an import: the liveness service re-sends pending requests through this
    controller, so it sits above it (no import circle).
    """

    def observe(self, faculty_id: int, *, retained: bool = False) -> bool: ...

    def shows_utf8(self, faculty_id: int) -> bool: ...


class ConsultationController(ControllerBase):
    """Creates, cancels and lists consultations; applies desk responses (contract 2.2)."""

    def __init__(
        self,
        db: DbSource = None,
        mqtt: AsyncMQTTService | None = None,
        *,
        liveness: DeskLiveness | None = None,
        stats: InboundStats | None = None,
        max_pending_per_faculty: int = DEFAULT_MAX_PENDING_PER_FACULTY,
        expiry: ExpiryPolicy | None = None,
    ) -> None:
        super().__init__(db, mqtt)
        self.expiry = expiry or ExpiryPolicy()
        self.liveness = liveness
        self.stats = stats or inbound_stats
        self.max_pending_per_faculty = max_pending_per_faculty
        self._listeners: Listeners[ConsultationEvent] = Listeners("consultation")
        self._unsubscribers: list[Callable[[], None]] = []
        self._audit_times: dict[int, deque[float]] = {}
        self._audit_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Subscribe to every desk's responses."""
        if not self._unsubscribers:
            self._unsubscribers.append(
                self.mqtt.subscribe(topics.FACULTY_RESPONSES_FILTER, self.on_response_message, 1)
            )

    def stop(self) -> None:
        """Remove the subscriptions."""
        while self._unsubscribers:
            self._unsubscribers.pop()()

    def add_listener(self, callback: Callable[[ConsultationEvent], None]) -> Callable[[], None]:
        """Call ``callback(ConsultationEvent)`` after every committed status change; returns the remover."""
        return self._listeners.add(callback)

    # ------------------------------------------------------------------ kiosk API

    def create_consultation(
        self,
        student_id: int,
        faculty_id: int,
        message: str,
        course_code: str | None = None,
    ) -> Consultation:
        """Validate and store a request and stage its three messages in the same transaction."""
        sid = _as_id(student_id, StudentNotFoundError, "student")

        def by_id(conn: Connection, admission: Admission) -> Any:
            if sid > _MAX_KEY.get(conn.dialect.name, 2**63 - 1):
                return None  # no such key (PostgreSQL would refuse the parameter)
            return conn.execute(admission.by_id, {"sid": sid, **admission.params}).first()

        return self.create_consultation_for(by_id, faculty_id, message, course_code)

    def create_consultation_for(
        self,
        admitted: Callable[[Connection, Admission], Any],
        faculty_id: int,
        message: str,
        course_code: str | None = None,
        *,
        conn: Connection | None = None,
    ) -> Consultation:
        """:meth:`create_consultation` for the student whose admission row
        ``admitted(conn, admission)`` answers, on ``conn`` when given (the server's event
        loop's own connection, in autocommit; PostgreSQL only), else on one of the pool's.

        The server runs ``admission.by_card`` (with its ``params`` and the card's ``:uid``)
        in one statement with its check of the kiosk's token, so a request reads once, not
        twice (issue 9, "Numbers"). ``admitted`` may write (a kiosk token's last use) and may
        refuse by raising; None is an unknown student. When this method refuses (a
        :class:`ConsultationError`, raised before anything of the request is written) what
        ``admitted`` wrote is committed all the same.

        The kiosk's most frequent write, on a Core connection: no session, no ORM load.
        On SQLite it is one transaction. On PostgreSQL the read runs in autocommit and the
        request and its outbox rows are one INSERT statement (atomic, and durable when it
        returns): two round trips where a transaction took six (BEGIN, the card, the
        admission, two INSERTs, COMMIT). Between the read and the INSERT nothing is locked,
        as it was not in the transaction either (READ COMMITTED); a student or faculty member
        deleted meanwhile makes the INSERT fail on its foreign key, answered as such.
        """
        fid = _as_id(faculty_id, FacultyNotFoundError, "faculty member")
        with self.engine.connect() if conn is None else contextlib.nullcontext(conn) as conn:
            pg = conn.dialect.name == "postgresql"
            if pg and conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            # An id no key can have asks for faculty 0, which no row has.
            fits = 0 < fid <= _MAX_KEY.get(conn.dialect.name, 2**63 - 1)
            row = admitted(conn, Admission(pg, {"fid": fid if fits else 0}))
            try:
                text = normalize_message(message)
                code = normalize_course_code(course_code)
                student, faculty, reserved = self._admit(row, reserve_id=pg)
            except ConsultationError:
                conn.commit()  # nothing of the request; the token's last use, if written
                raise
            consultation = _new_request(student, faculty, text, code)
            try:
                if reserved is not None:
                    batch = self._insert_in_one_statement(conn, consultation, reserved)
                else:
                    batch = self._insert_and_commit(conn, consultation)
            except IntegrityError as err:
                if not _foreign_key_failed(err):
                    raise
                conn.rollback()
                raise self._vanished(conn, student.id) from None
        batch.committed()
        logger.info(
            "consultation %d created: student %d -> faculty %d", consultation.id, student.id, fid
        )
        self._emit(consultation, None)
        return consultation

    def _admit(self, row: Any, *, reserve_id: bool) -> tuple[Student, Faculty, int | None]:
        """The student and the faculty member of a request that may be sent, from its
        admission row, and with ``reserve_id`` (PostgreSQL) the new request's id."""
        if row is None or row.id is None:
            raise StudentNotFoundError("Your student record was not found; please ask an admin.")
        values = row._mapping
        if values["f_id"] is None:
            raise FacultyNotFoundError("That faculty member no longer exists.")
        student = Student(**{key: values[key] for key, _ in _STUDENT_ATTRS})
        faculty = Faculty(**{key: values[f"f_{key}"] for key, _ in _FACULTY_ATTRS})
        pending = values["pending"]
        if not faculty.is_available:
            raise FacultyUnavailableError(
                f"{faculty.name} is not available right now; please try again later."
            )
        if (pending or 0) >= self.max_pending_per_faculty:
            raise TooManyPendingError(
                f"You already have {pending} pending requests with {faculty.name}; "
                "please wait for an answer or cancel one."
            )
        return student, faculty, values["next_id"] if reserve_id else None

    @staticmethod
    def _vanished(conn: Connection, sid: int) -> ConsultationError:
        """The refusal for a request whose student or faculty member does not exist."""
        if conn.execute(_STUDENT_EXISTS, {"sid": sid}).first() is None:
            return StudentNotFoundError("Your student record was not found; please ask an admin.")
        return FacultyNotFoundError("That faculty member no longer exists.")

    def _insert_and_commit(self, conn: Connection, consultation: Consultation) -> OutboxBatch:
        """The request and its messages' outbox rows in one transaction (SQLite)."""
        inserted = conn.execute(_CREATE_INSERT, _insert_values(consultation))
        key = cast("CursorResult[Any]", inserted).inserted_primary_key
        assert key is not None  # a single-row INSERT always reports its key
        consultation.id = key[0]
        batch = self._messages(consultation)
        batch.write(conn)
        conn.commit()
        return batch

    def _insert_in_one_statement(
        self, conn: Connection, consultation: Consultation, reserved: int
    ) -> OutboxBatch:
        """The request (its id reserved) and its messages' outbox rows in one statement, run
        in autocommit (PostgreSQL: one statement is one transaction)."""
        consultation.id = reserved
        batch = self._messages(consultation)
        params = {f"c_{key}": value for key, value in _insert_values(consultation).items()}
        batch.write_with(conn, _CREATE_INSERT_WITH_ID, {"c_id": reserved, **params})
        return batch

    def _messages(self, consultation: Consultation) -> OutboxBatch:
        """The request's three messages and its event, checked and encoded."""
        # Lock-free (a dict lookup): safe while this transaction may hold the write lock.
        utf8 = self._desk_shows_utf8(consultation.faculty_id)
        messages = outbound.consultation_messages(
            consultation, consultation.student, consultation.faculty, utf8=utf8
        )
        messages.append(self._event_message(consultation, None))
        return self.mqtt.batch((m.topic, m.payload, m.qos, m.retain) for m in messages)

    def _publish_consultation(self, consultation: Consultation) -> bool:
        """Publish a consultation on its three topics (contract 1, plan step 2.1); True when queued."""
        try:
            with self.session() as session:
                current = session.get(Consultation, consultation.id)
                if current is None:
                    logger.error("cannot publish consultation %s: not found", consultation.id)
                    return False
                self.publish(
                    outbound.consultation_messages(
                        current,
                        current.student,
                        current.faculty,
                        utf8=self._desk_shows_utf8(current.faculty_id),
                    )
                )
                current.last_sent_at = utcnow()
        except MQTTServiceError as err:
            logger.error("publishing consultation %s failed: %s", consultation.id, err)
            return False
        logger.info("published consultation %d to 3 topics", consultation.id)
        return True

    def cancel_consultation(self, consultation_id: int, student_id: int) -> Consultation:
        """Cancel a pending consultation of this student and announce it on ``/cancellations``."""
        cid = _as_id(consultation_id, ConsultationNotFoundError, "consultation")
        sid = _as_id(student_id, NotOwnConsultationError, "student")
        with self.session() as session:
            consultation = self._load_for_update(session, cid)
            if consultation is None:
                raise ConsultationNotFoundError("That request no longer exists.")
            if consultation.student_id != sid:
                raise NotOwnConsultationError("You can only cancel your own requests.")
            if consultation.status != ConsultationStatus.PENDING:
                raise NotCancellableError(
                    f"This request is already {consultation.status} and can no longer be cancelled."
                )
            now = utcnow()
            previous = consultation.status
            consultation.status = ConsultationStatus.CANCELLED.value
            consultation.cancelled_at = now
            self.stage(
                session,
                [
                    outbound.cancellation_message(consultation, consultation.student, now),
                    self._event_message(consultation, previous),
                ],
            )
        logger.info("consultation %d cancelled by student %d", cid, sid)
        self._emit(consultation, previous)
        return consultation

    def expire_due(self, now: datetime | None = None, max_batches: int = 50) -> int:
        """Expire pending requests past their time (``self.expiry``); returns how many.

        Each expired request gets the status ``expired`` and the desk a cancellation
        (contract 1.3, with ``"reason": "expired"``), staged in the same transaction.
        At most ``max_batches`` × :data:`EXPIRE_BATCH` per call: the rest waits for the
        next sweep.
        """
        when = now or utcnow()
        cutoff = self.expiry.cutoff(when)
        if cutoff is None:
            return 0
        total = 0
        for _ in range(max_batches):
            expired = self._expire_batch(cutoff, when)
            total += len(expired)
            for consultation in expired:
                self._emit(consultation, ConsultationStatus.PENDING.value)
            if len(expired) < EXPIRE_BATCH:
                break
        if total:
            logger.info("%d pending requests expired (made before %s)", total, cutoff.isoformat())
        return total

    def _expire_batch(self, cutoff: datetime, now: datetime) -> list[Consultation]:
        with self.session() as session:
            due = list(
                session.scalars(
                    select(Consultation)
                    .where(
                        Consultation.status == ConsultationStatus.PENDING.value,
                        Consultation.created_at < cutoff,
                    )
                    .order_by(Consultation.created_at, Consultation.id)
                    .limit(EXPIRE_BATCH)
                    .with_for_update(of=Consultation)
                ).unique()
            )
            for consultation in due:
                consultation.status = ConsultationStatus.EXPIRED.value
                consultation.expired_at = now
                self.stage(
                    session,
                    [
                        outbound.cancellation_message(
                            consultation, consultation.student, now, reason="expired"
                        ),
                        self._event_message(consultation, ConsultationStatus.PENDING.value),
                    ],
                )
        return due

    def get_consultation(self, consultation_id: int) -> Consultation | None:
        """The consultation, or None."""
        try:
            cid = int(consultation_id)
        except (TypeError, ValueError):
            return None
        with self.session() as session:
            return session.get(Consultation, cid)

    def list_by_student(
        self, student_id: int, status: str | None = None, limit: int = 100
    ) -> list[Consultation]:
        """A student's consultations, newest first."""
        return self._list(Consultation.student_id == int(student_id), status, limit)

    def list_by_faculty(
        self, faculty_id: int, status: str | None = None, limit: int = 100
    ) -> list[Consultation]:
        """A faculty member's consultations, newest first."""
        return self._list(Consultation.faculty_id == int(faculty_id), status, limit)

    # The plan's older names.
    get_student_consultations = list_by_student
    get_faculty_consultations = list_by_faculty

    def _list(self, criterion: object, status: str | None, limit: int) -> list[Consultation]:
        stmt = select(Consultation).where(criterion)  # type: ignore[arg-type]
        if status is not None:
            stmt = stmt.where(Consultation.status == str(status))
        stmt = stmt.order_by(Consultation.created_at.desc(), Consultation.id.desc()).limit(
            max(1, min(int(limit), 1000))
        )
        with self.session() as session:
            return list(session.scalars(stmt).unique())

    # ------------------------------------------------------------------ re-sending (liveness)

    def _desk_shows_utf8(self, faculty_id: int) -> bool:
        return self.liveness is not None and self.liveness.shows_utf8(faculty_id)

    def resend_pending(self, faculty_id: int, since: datetime | None = None) -> int:
        """Re-send pending requests on ``/messages``: all of them (``since`` None, the desk
        rebooted), or those sent since ``since`` (it may have missed them), each right after
        a withdrawal so that a desk that did get it does not show it twice; returns how many.
        """
        now = utcnow()
        utf8 = self._desk_shows_utf8(int(faculty_id))
        stmt = select(Consultation).where(
            Consultation.faculty_id == int(faculty_id),
            Consultation.status == ConsultationStatus.PENDING.value,
        )
        if since is not None:
            stmt = stmt.where(
                (Consultation.last_sent_at.is_(None))
                | (Consultation.last_sent_at >= since - RESEND_MARGIN)
            )
        stmt = stmt.order_by(Consultation.created_at, Consultation.id).limit(RESEND_LIMIT)
        with self.session() as session:
            pending = list(session.scalars(stmt).unique())
            for consultation in pending:
                messages = [outbound.request_message(consultation, consultation.student, utf8=utf8)]
                if since is not None:
                    messages.insert(0, outbound.withdrawal_message(consultation))
                self.stage(session, messages)
                consultation.last_sent_at = now
        if pending:
            logger.info(
                "re-sent %d pending requests to faculty %d (%s)",
                len(pending),
                faculty_id,
                "all: the desk rebooted" if since is None else f"sent since {since.isoformat()}",
            )
        return len(pending)

    # ------------------------------------------------------------------ desk responses (contract 2.2)

    def on_response_message(self, message: MQTTMessage) -> None:
        """Subscription handler for ``consultease/faculty/+/responses``."""
        located = topics.parse_faculty_topic(message.topic)
        if located is None:
            drop(message, "bad_topic", stats=self.stats)
            return
        fid = located[0]
        response = parse_inbound(ResponsePayload, message, self.stats, check_faculty=False)
        if response is None:
            return
        if self.liveness is not None:
            if not self.liveness.observe(fid, retained=message.retain):
                drop_unknown_faculty(message, fid, self.stats)
                return
        elif not self._faculty_exists(fid):
            drop_unknown_faculty(message, fid, self.stats)
            return
        self.apply_response(fid, response)

    def apply_response(self, topic_faculty_id: int, response: ResponsePayload) -> ResponseOutcome:
        """Apply a parsed desk response if topic, payload and consultation agree and the transition is allowed."""
        cid = response.message_id
        target = response.target_status
        with self.session() as session:
            # Core, not the ORM: a desk response needs four columns and one UPDATE, and it
            # runs for every request under load (no unit of work, no joined student/faculty).
            # An id beyond what this database's key can hold names no consultation (PostgreSQL's
            # INTEGER key stops at 2**31 - 1; SQLite's reaches 2**63 - 1): never sent to it.
            fits = cid <= _MAX_KEY.get(session.get_bind().dialect.name, 2**63 - 1)
            found = session.execute(_RESPONSE_LOOKUP, {"cid": cid}).first() if fits else None
            reason: str | None = None
            if response.faculty_id != topic_faculty_id:
                reason = (
                    f"payload faculty_id {response.faculty_id} != topic faculty {topic_faculty_id}"
                )
            elif found is None:
                reason = "no such consultation"
            elif found.faculty_id != topic_faculty_id:
                reason = f"consultation belongs to faculty {found.faculty_id}"
            elif found.status == target:
                logger.info("duplicate %s for consultation %d ignored", response.response_type, cid)
                return ResponseOutcome.DUPLICATE
            elif target not in ALLOWED_TRANSITIONS.get(found.status, frozenset()):
                reason = f"transition {found.status} -> {target} not allowed"
            if reason is not None or found is None:
                self._reject(session, topic_faculty_id, response, reason or "no such consultation")
                return ResponseOutcome.REJECTED
            previous = found.status
            # "AND status = previous": a change committed since the read (SQLite reads outside
            # the write transaction) makes this match nothing instead of being overwritten.
            at = utcnow()
            if previous == ConsultationStatus.PENDING and target in ANSWER_STATUSES:
                answer_s = max(0.0, (at - found.created_at).total_seconds())
                result = session.execute(
                    _FIRST_ANSWER_UPDATES[target],
                    {"cid": cid, "prev": previous, "at": at, "answer_s": answer_s},
                )
            else:
                result = session.execute(
                    _RESPONSE_UPDATES[target], {"cid": cid, "prev": previous, "at": at}
                )
            if cast("CursorResult[Any]", result).rowcount != 1:
                logger.info("consultation %d changed meanwhile; %s ignored", cid, target.value)
                return ResponseOutcome.DUPLICATE
            consultation = Consultation(
                id=cid,
                student_id=found.student_id,
                faculty_id=found.faculty_id,
                status=target.value,
            )  # transient: only what the event messages need
            self.stage(session, [self._event_message(consultation, previous)])
        logger.info(
            "consultation %d: %s -> %s (%s from faculty %d)",
            cid,
            previous,
            target.value,
            response.response_type,
            topic_faculty_id,
        )
        self._emit(consultation, previous)
        return ResponseOutcome.APPLIED

    def answer_from_web(
        self, consultation_id: int, faculty_id: int, target: str, actor: str
    ) -> Consultation:
        """A faculty member's answer given in the browser: the desk's transition, audited.

        The same rules as a desk's button (ownership, ``ALLOWED_TRANSITIONS``, the first
        answer's time), then the desk is told on ``/cancellations`` so the request
        leaves its screen: the deployed firmware removes the request named after
        ``consultation_id`` whatever the rest of the JSON says (contract 3.1;
        docs/mqtt-topics.md, ``consultation_answered``).
        """
        cid = _as_id(consultation_id, ConsultationNotFoundError, "consultation")
        fid = _as_id(faculty_id, NotOwnConsultationError, "faculty")
        try:
            status = ConsultationStatus(target)
        except ValueError:
            raise WebAnswerError(f"Unknown answer {target!r}.") from None
        with self.session() as session:
            consultation = self._load_for_update(session, cid)
            if consultation is None or consultation.faculty_id != fid:
                audit(
                    session,
                    actor,
                    "consultation.web_answer",
                    f"consultation:{cid}",
                    success=False,
                    details={"reason": "not theirs or missing", "target": target},
                )
                session.commit()
                raise ConsultationNotFoundError("No such request of yours.")
            previous = str(consultation.status)
            if status not in ALLOWED_TRANSITIONS.get(previous, frozenset()):
                audit(
                    session,
                    actor,
                    "consultation.web_answer",
                    f"consultation:{cid}",
                    success=False,
                    details={"reason": f"{previous} -> {status.value} not allowed"},
                )
                session.commit()
                raise WebAnswerError(
                    f"This request is already {previous}; it cannot be marked {status.value}."
                )
            at = utcnow()
            consultation.status = status.value
            setattr(consultation, f"{status.value}_at", at)
            if previous == ConsultationStatus.PENDING and status in ANSWER_STATUSES:
                consultation.answered_at = at
                consultation.answer_s = max(0.0, (at - consultation.created_at).total_seconds())
            messages = [self._event_message(consultation, previous)]
            if previous == ConsultationStatus.PENDING:
                messages.insert(0, outbound.answered_elsewhere_message(consultation, at))
            self.stage(session, messages)
            audit(
                session,
                actor,
                "consultation.web_answer",
                f"consultation:{cid}",
                success=True,
                details={"from": previous, "to": status.value},
            )
        logger.info("consultation %d: %s -> %s (web, %s)", cid, previous, status.value, actor)
        self._emit(consultation, previous)
        return consultation

    def _reject(self, session: Session, fid: int, response: ResponsePayload, reason: str) -> None:
        logger.warning(
            "rejected %s for consultation %d on faculty %d's topic: %s",
            response.response_type,
            response.message_id,
            fid,
            reason,
        )
        self.stats.count_drop("response_rejected")
        if not self._audit_allowed(fid):
            self.stats.count_drop("audit_suppressed")
            return
        audit(
            session,
            f"desk:{fid}",
            "consultation_response_rejected",
            f"consultation:{response.message_id}",
            success=False,
            details={
                "reason": reason,
                "response_type": response.response_type,
                "payload_faculty_id": response.faculty_id,
                "topic_faculty_id": fid,
            },
        )

    def _audit_allowed(self, fid: int) -> bool:
        now = time.monotonic()
        with self._audit_lock:
            if len(self._audit_times) > 10_000:
                self._audit_times.clear()
            times = self._audit_times.setdefault(fid, deque())
            while times and now - times[0] > AUDIT_WINDOW_S:
                times.popleft()
            if len(times) >= AUDIT_MAX_PER_WINDOW:
                return False
            times.append(now)
            return True

    # ------------------------------------------------------------------ helpers

    def _faculty_exists(self, fid: int) -> bool:
        with self.session() as session:
            return session.get(Faculty, fid) is not None

    @staticmethod
    def _load_for_update(session: Session, cid: int) -> Consultation | None:
        # FOR UPDATE serialises a desk response against a cancellation on PostgreSQL;
        # SQLite serialises writers anyway.
        return session.get(Consultation, cid, with_for_update={"of": Consultation})

    def _event_message(self, consultation: Consultation, previous: str | None) -> outbound.Outgoing:
        return outbound.consultation_event_message(
            consultation, previous, utcnow(), self.mqtt.client_id
        )

    def _emit(self, consultation: Consultation, previous: str | None) -> None:
        self._listeners.emit(
            ConsultationEvent(
                consultation_id=consultation.id,
                student_id=consultation.student_id,
                faculty_id=consultation.faculty_id,
                status=str(consultation.status),
                previous_status=previous,
                at=utcnow(),
            )
        )
