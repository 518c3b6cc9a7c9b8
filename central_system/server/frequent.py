"""The kiosk's frequent calls: on the event loop, or in one worker-thread hop, on one connection.

A kiosk polls the faculty list and waiting counts, and each card tap reads the student and
their consultations: most of the server's traffic (issue 9, "Numbers"). Run as plain ``def``
dependencies and routes, each call made three or four thread-pool hops, three database
sessions (token, card, the data) and validated its answer twice. Here the route is
``async``, its dependencies only read headers, and everything that touches the database
runs on one connection: the token and the card in one indexed read
(:meth:`Authenticator.kiosk_and_card`), then the data with Core queries. Reads run on the
event loop itself (:meth:`FrequentCalls.read` says why and when not); the send goes to one
worker thread. The faculty list and waiting counts, the same for every kiosk, are read once
and shared until something changes (:class:`SharedAnswer`). The answer is serialised by
pydantic from the schema the route declares (``response_model`` stays the OpenAPI
document's schema), once.

The checks are the same as the dependencies in ``deps.py``: a missing token is a 401, an
administrator's session on a kiosk-only call a 403, an unknown or revoked kiosk token a 401
(refusals audited, throttled), an unknown card a 404; administrators may read the faculty
list and the waiting counts, through :meth:`Authenticator.admin`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from fastapi import Response
from pydantic import TypeAdapter
from sqlalchemy import Connection, Engine, Select, bindparam, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased
from starlette.concurrency import run_in_threadpool

from ..api.errors import (
    ForbiddenError,
    KioskError,
    NotAuthenticatedError,
    NotFoundError,
    TooManyRequestsError,
)
from ..api.schemas import ConsultationCreate, ConsultationView, FacultyView, StudentView
from ..controllers.consultation_controller import Admission
from ..controllers.kiosk_facade import KioskBackend, faculty_view, student_view
from ..controllers.student_controller import StudentValidationError, normalize_rfid_uid
from ..models import Consultation, Faculty, Student
from ..models.consultation import ConsultationStatus
from ..services.rfid import InvalidUIDError, normalize_uid
from .auth import (
    ADMIN_PREFIX,
    TOO_MANY_UNKNOWN_CARDS,
    AdminPrincipal,
    Authenticator,
    KioskPrincipal,
    Refused,
    WriteNeeded,
)

T = TypeVar("T")

logger = logging.getLogger(__name__)

UNKNOWN_CARD: Final = "Unknown card. Please see the department office to register it."
JSON: Final = "application/json"
# The longest a read on the event loop may wait for a lock before it goes to a worker thread.
LOOP_READ_WAIT_MS: Final = 250
# The longest a shared answer is kept (changes made outside this server show within it).
SHARED_ANSWER_TTL_S: Final = 1.0

FACULTY_LIST: Final = TypeAdapter(list[FacultyView])
WAITING: Final = TypeAdapter(dict[int, int])
STUDENT: Final = TypeAdapter(StudentView)
CONSULTATIONS: Final = TypeAdapter(list[ConsultationView])
CONSULTATION: Final = TypeAdapter(ConsultationView)

_FACULTY: Final = select(
    Faculty.id,
    Faculty.name,
    Faculty.department,
    Faculty.email,
    Faculty.status,
    Faculty.desk_online,
    Faculty.manual_status,
).order_by(Faculty.name)
_WAITING: Final = (
    select(Consultation.faculty_id, func.count())
    .where(Consultation.status == ConsultationStatus.PENDING.value)
    .group_by(Consultation.faculty_id)
)
_S = aliased(Student)
_F = aliased(Faculty)
_MINE: Final = (
    select(
        Consultation.id,
        Consultation.student_id,
        _S.name.label("student_name"),
        Consultation.faculty_id,
        _F.name.label("faculty_name"),
        Consultation.message,
        Consultation.course_code,
        Consultation.status,
        Consultation.created_at,
        Consultation.status_note,
    )
    .outerjoin(_S, _S.id == Consultation.student_id)
    .outerjoin(_F, _F.id == Consultation.faculty_id)
    .where(Consultation.student_id == bindparam("student_id"))
    .order_by(Consultation.id.desc())
    .limit(bindparam("limit"))
)


@dataclass(frozen=True, slots=True)
class KioskCall:
    """A call to answer: the runner, its bearer token, its path, the card tapped (card-holder
    calls) and whether an administrator's session may make it."""

    runner: FrequentCalls
    token: str
    path: str
    card_uid: str | None = None
    admin_allowed: bool = False


def stored_uid(raw: str) -> str | None:
    """A card UID as the students table stores it; None for one no card can have."""
    try:
        return normalize_rfid_uid(normalize_uid(raw))
    except (InvalidUIDError, StudentValidationError):
        return None


def consultation_view(row: Any) -> ConsultationView:
    """A consultation with its student's and faculty member's names."""
    return ConsultationView(
        id=row.id,
        student_id=row.student_id,
        student_name=row.student_name or "",
        faculty_id=row.faculty_id,
        faculty_name=row.faculty_name or "",
        message=row.message,
        course_code=row.course_code,
        status=str(row.status),
        created_at=row.created_at,
        note=row.status_note,
    )


def list_faculty(conn: Connection) -> list[FacultyView]:
    """Every faculty member with their status and desk liveness, by name."""
    return [faculty_view(row) for row in conn.execute(_FACULTY)]


def waiting_counts(conn: Connection) -> dict[int, int]:
    """Pending requests per faculty member id (faculty without any are absent)."""
    return {int(fid): int(n) for fid, n in conn.execute(_WAITING)}


def my_consultations(conn: Connection, student_id: int, limit: int) -> list[ConsultationView]:
    """A student's consultations, newest first."""
    rows = conn.execute(_MINE, {"student_id": student_id, "limit": limit})
    return [consultation_view(row) for row in rows]


Caller = KioskPrincipal | AdminPrincipal


class SharedAnswer:
    """An answer every kiosk gets alike (the faculty list, waiting counts), read once and shared.

    Twenty kiosks poll these; each poll read and serialised the same rows again. The answer
    is kept as its JSON bytes until something may have changed it (:meth:`invalidate`: the
    controllers' faculty and consultation events, any call that writes through this server)
    and never longer than :data:`SHARED_ANSWER_TTL_S`, which bounds how long a change made
    outside this server (the ``consultease`` command on the same database) goes unseen.

    A read that overlaps an invalidation is answered but not kept: it may have read the rows
    before the change it raced with (the events fire after their transaction commits).
    """

    def __init__(self, read: Callable[[Connection], bytes], ttl: float = SHARED_ANSWER_TTL_S):
        self._read = read
        self.ttl = ttl
        self._lock = threading.Lock()
        self._generation = 0
        self._body: bytes | None = None
        self._expires = 0.0
        self.reads = 0

    def invalidate(self) -> None:
        """Forget the kept answer (any thread)."""
        with self._lock:
            self._generation += 1
            self._body = None

    def read(self, conn: Connection, _caller: object = None, _student: object = None) -> bytes:
        """The kept answer, or a fresh one read on ``conn`` (kept if nothing changed meanwhile)."""
        with self._lock:
            body, generation = self._body, self._generation
            if body is not None and time.monotonic() < self._expires:
                return body
        started = time.monotonic()
        body = self._read(conn)
        with self._lock:
            self.reads += 1
            if self._generation == generation:
                self._body = body
                self._expires = started + self.ttl
        return body


def _cancelled(err: SQLAlchemyError) -> bool:
    """Whether PostgreSQL cancelled the statement (``statement_timeout``): SQLSTATE 57014."""
    return getattr(getattr(err, "orig", None), "sqlstate", None) == "57014"


def _known(student: StudentView | None) -> StudentView:
    if student is None:  # check() answered 404 already for a card-holder call
        raise NotFoundError(UNKNOWN_CARD)
    return student


class _UseThread(Exception):
    """This call cannot be read on the event loop: run it in a worker thread."""


class FrequentCalls:
    """Runs a kiosk call's checks and reads, and its request (on the event loop, or in one
    worker-thread hop), and answers it."""

    def __init__(
        self,
        engine: Engine,
        auth: Authenticator,
        backend: KioskBackend,
        *,
        reads_on_loop: bool = True,
    ) -> None:
        self.engine = engine
        self.auth = auth
        self.backend = backend
        # Reads on the event loop (see :meth:`read`); its connection is used on the loop only.
        self.reads_on_loop = reads_on_loop
        self._loop_conn: Connection | None = None
        self.loop_reads = 0  # calls read on the loop / in a worker thread (tests, diagnostics)
        self.thread_reads = 0
        # Requests sent on the loop (PostgreSQL; SQLite's writers queue on a gate, which the
        # loop must never wait on) / from a worker thread.
        self.sends_on_loop = reads_on_loop and engine.dialect.name == "postgresql"
        self.loop_sends = 0
        self.thread_sends = 0
        self._faculty = SharedAnswer(lambda conn: FACULTY_LIST.dump_json(list_faculty(conn)))
        self._waiting = SharedAnswer(lambda conn: WAITING.dump_json(waiting_counts(conn)))

    async def faculty_list(self, call: KioskCall) -> Response:
        """``GET /faculty``."""
        return Response(await self.read(call, self._faculty.read), media_type=JSON)

    async def waiting_counts(self, call: KioskCall) -> Response:
        """``GET /faculty/waiting``."""
        return Response(await self.read(call, self._waiting.read), media_type=JSON)

    def invalidate(self) -> None:
        """Something may have changed: the next faculty list and waiting counts are read anew."""
        self._faculty.invalidate()
        self._waiting.invalidate()

    # The facade's connect_events() calls these on the service threads (as the event hub's).

    def on_consultation(
        self, _consultation_id: int, _status: str, _faculty_id: int | None = None
    ) -> None:
        """A consultation changed status (or was created): waiting counts change."""
        self._waiting.invalidate()

    def on_faculty(self, _faculty_id: int) -> None:
        """A faculty member's status or desk liveness changed."""
        self._faculty.invalidate()

    def on_mqtt_state(self, _state: str) -> None:
        """The MQTT connection's state (nothing cached depends on it)."""

    async def card_holder(self, call: KioskCall) -> Response:
        """``GET /students/me``."""
        return await self.answer(call, lambda _conn, _c, student: _known(student), STUDENT)

    async def my_consultations(self, call: KioskCall, limit: int) -> Response:
        """``GET /students/me/consultations``."""
        return await self.answer(
            call,
            lambda conn, _c, student: my_consultations(conn, _known(student).id, limit),
            CONSULTATIONS,
        )

    async def send_request(self, call: KioskCall, body: ConsultationCreate) -> Response:
        """``POST /consultations``: the checks with the request's admission in one read, then
        the request (the controller's ``create_consultation_for``), on one connection: on
        PostgreSQL on the event loop when it can be (:meth:`_send_on_loop`), else in one
        worker-thread hop."""
        view = self._send_on_loop(call, body) if self.sends_on_loop else None
        if view is None:
            self.thread_sends += 1
            view = await run_in_threadpool(self._send, call, body)
        return Response(CONSULTATION.dump_json(view), status_code=201, media_type=JSON)

    def _send(self, call: KioskCall, body: ConsultationCreate) -> ConsultationView:
        """The request from a worker thread, on a pooled connection; its checks may write."""

        def admitted(conn: Connection, admission: Admission) -> Any:
            # The token, the card and the request's admission in one read.
            _caller, row = self._checked(
                conn, call, card_read=admission.by_card, **admission.params
            )
            return row

        return self.backend.send_request_for(
            admitted, body.faculty_id, body.message, body.course_code
        )

    def _send_on_loop(self, call: KioskCall, body: ConsultationCreate) -> ConsultationView | None:
        """The request on the event loop's connection (PostgreSQL); None when it must go to a
        worker thread, and then nothing of it was written.

        Two statements in autocommit, the admission read and the one ``INSERT`` of the request
        with its outbox rows, as from a worker thread, without the two hops and the interpreter
        lock passed back and forth around them (under 20 kiosks about 1.2 ms of a request's
        median). Like the loop's reads it may not write in its checks and never waits long:
        a check that would write (a token's last use, a refusal's audit row), an
        administrator's session or a failed read go to the worker thread, which starts again;
        an ``INSERT`` that waited longer than :data:`LOOP_READ_WAIT_MS` is cancelled by
        PostgreSQL before it commits (``statement_timeout`` ends before the commit) and goes
        there too. Any other error while inserting is answered as from a worker thread: the
        request may have been written, so it is never tried twice.
        """
        if call.token.startswith(ADMIN_PREFIX):
            return None
        failed_read = False

        def admitted(conn: Connection, admission: Admission) -> Any:
            nonlocal failed_read
            try:
                _caller, row = self._checked(
                    conn, call, may_write=False, card_read=admission.by_card, **admission.params
                )
            except (WriteNeeded, _UseThread):
                raise _UseThread from None
            except SQLAlchemyError:
                logger.warning("a request's read on the event loop failed", exc_info=True)
                failed_read = True
                raise _UseThread from None
            return row

        try:
            conn = self._loop_connection()
        except SQLAlchemyError:
            logger.warning("the event loop's connection could not be opened", exc_info=True)
            return None
        try:
            try:
                view = self.backend.send_request_for(
                    admitted, body.faculty_id, body.message, body.course_code, conn=conn
                )
            finally:
                with contextlib.suppress(SQLAlchemyError):
                    conn.rollback()  # (a no-op in autocommit; ends any statement left open)
        except _UseThread:
            if failed_read:
                self._drop_loop_connection()
            return None
        except SQLAlchemyError as err:
            if _cancelled(err):
                return None  # waited too long for a lock: rolled back, nothing written
            self._drop_loop_connection()
            raise
        self.loop_sends += 1
        return view

    async def answer(
        self,
        call: KioskCall,
        work: Callable[[Connection, Caller, StudentView | None], T],
        adapter: TypeAdapter[T],
        status_code: int = 200,
    ) -> Response:
        """``work(conn, caller, student)`` after the checks, its result as the JSON answer."""
        result = await self.read(call, work)
        return Response(adapter.dump_json(result), status_code=status_code, media_type=JSON)

    async def read(
        self, call: KioskCall, work: Callable[[Connection, Caller, StudentView | None], T]
    ) -> T:
        """The checks and ``work`` (reads only): on the event loop when they can be, else in
        one worker-thread hop (:meth:`run`).

        A worker-thread hop costs more than these reads: handing the call over, waking the
        thread, waking the loop again, and the interpreter lock passed back and forth each
        time (on a 2-core machine under 20 kiosks, most of such a call's time). So the reads
        run on the loop, on a connection of its own (never waiting for the pool), read-only:
        what must write (the kiosk's ``last_used_at`` once a minute, a refusal's audit row),
        an administrator's session and a database error go to the worker thread instead,
        which repeats the call from the start.
        """
        if self.reads_on_loop:
            try:
                return self._read_on_loop(call, work)
            except _UseThread:
                pass
        self.thread_reads += 1
        return await run_in_threadpool(self.run, call, work)

    def _read_on_loop(
        self, call: KioskCall, work: Callable[[Connection, Caller, StudentView | None], T]
    ) -> T:
        if call.token.startswith(ADMIN_PREFIX):
            raise _UseThread  # its checks read through the authenticator's own sessions
        try:
            conn = self._loop_connection()
            try:
                caller, student = self.check(conn, call, may_write=False)
                result = work(conn, caller, student)
            except KioskError:  # an answer (401, 404 ...) read on the loop
                self.loop_reads += 1
                raise
            finally:
                conn.rollback()  # (a no-op in autocommit; ends any read left open all the same)
            self.loop_reads += 1
            return result
        except (WriteNeeded, _UseThread):
            raise _UseThread from None
        except SQLAlchemyError:
            logger.warning("a read on the event loop failed; using a worker thread", exc_info=True)
            self._drop_loop_connection()
            raise _UseThread from None

    def _loop_connection(self) -> Connection:
        """The event loop's connection, opened again when it was closed or lost."""
        conn = self._loop_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._loop_conn = self._open_loop_connection()
        return conn

    def _open_loop_connection(self) -> Connection:
        """The event loop's read connection: autocommit, its own, and never waiting long.

        Autocommit: each read is its own statement, with no BEGIN and ROLLBACK round trips
        around it (on PostgreSQL, two of a call's three or four). Detached from the pool, so
        the short wait set here never reaches the pool's other users: a read that would wait
        on a lock longer than :data:`LOOP_READ_WAIT_MS` (SQLite's busy handler, a PostgreSQL
        statement held up by a table lock) fails at once and the call goes to a worker
        thread, where it may wait; the loop serves everyone else meanwhile.
        """
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        conn.detach()
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {LOOP_READ_WAIT_MS}")
        elif conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET statement_timeout = {LOOP_READ_WAIT_MS}")
        return conn

    def _drop_loop_connection(self) -> None:
        conn, self._loop_conn = self._loop_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Give back the event loop's connection (call it on the loop, as the server stops)."""
        self._drop_loop_connection()

    def run(
        self, call: KioskCall, work: Callable[[Connection, Caller, StudentView | None], T]
    ) -> T:
        """The checks, then ``work`` on the same connection (worker thread)."""
        with self.engine.connect() as conn:
            caller, student = self.check(conn, call)
            result = work(conn, caller, student)
            conn.commit()
        return result

    def check(
        self,
        conn: Connection,
        call: KioskCall,
        commit: Callable[[], None] | None = None,
        *,
        may_write: bool = True,
    ) -> tuple[Caller, StudentView | None]:
        """The caller, and the card holder for a card-holder call; raises the API's errors.

        ``commit`` commits ``conn``'s transaction before an unknown card's 404 (the token's
        last use); default ``conn.commit``, a session's own when ``conn`` is a session's.
        With ``may_write`` False, :class:`_UseThread` is raised for what would write.
        """
        caller, row = self._checked(conn, call, commit, may_write=may_write)
        return caller, None if row is None else student_view(row)

    def _checked(
        self,
        conn: Connection,
        call: KioskCall,
        commit: Callable[[], None] | None = None,
        *,
        may_write: bool = True,
        card_read: Select[Any] | None = None,
        **params: Any,
    ) -> tuple[Caller, Any]:
        """:meth:`check`, answering the card holder's row as read: with ``card_read`` (a read
        by the card, see :meth:`Authenticator.kiosk_and_card`) its row."""
        if call.token.startswith(ADMIN_PREFIX):
            if not call.admin_allowed:
                raise ForbiddenError(
                    "This call is made by a kiosk for the student who tapped a card."
                )
            return self._admin(call.token), None
        uid = stored_uid(call.card_uid) if call.card_uid is not None else None
        try:
            kiosk, row = self.auth.kiosk_and_card(
                conn, call.token, uid, may_write=may_write, card_read=card_read, params=params
            )
        except Refused as refused:
            if refused.audit_actor:
                if not may_write:
                    raise _UseThread from None
                self.auth.audit_refusal(
                    refused.audit_actor, "api.refused", call.path, refused.reason
                )
            raise NotAuthenticatedError(f"Kiosk token refused ({refused.reason}).") from None
        if call.card_uid is None:
            return kiosk, None
        limited = self.auth.card_calls_refused(kiosk)
        if row is None or limited:
            if may_write:
                (commit or conn.commit)()  # the token's last_used_at, if it was due
            if limited or self.auth.unknown_card(
                kiosk, uid or call.card_uid, call.path, may_write=may_write
            ):
                raise TooManyRequestsError(TOO_MANY_UNKNOWN_CARDS)
            raise NotFoundError(UNKNOWN_CARD)
        return kiosk, row

    def _admin(self, token: str) -> AdminPrincipal:
        try:
            return self.auth.admin(token)
        except Refused as refused:
            if refused.audit_actor:
                self.auth.audit_refusal(
                    refused.audit_actor, "api.refused", "admin session", refused.reason
                )
            raise NotAuthenticatedError(
                f"Administrator session refused ({refused.reason}); sign in again."
            ) from None
