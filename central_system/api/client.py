"""A blocking client of the server's API (the kiosk's worker thread, tools, tests, benchmarks).

Given several server URLs it finds the active one by itself: a server that does
not answer, or answers 503 (a standby), is skipped and the next one is tried.
Those cases never reached a server that acts, so trying again elsewhere is safe.
A request that was sent but whose answer never came is different: a ``POST``
then raises :class:`OutcomeUnknownError` (it may have been carried out) instead
of being sent twice; a ``GET`` is simply tried on the next server.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import ssl
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, TypeAdapter

from .errors import ERRORS_BY_CODE, KioskError, OutcomeUnknownError, UnavailableError
from .schemas import (
    AdminExists,
    AdminSession,
    AnalyticsTable,
    AuditView,
    ConsultationView,
    DeskView,
    Event,
    FacultyView,
    QueueView,
    StudentView,
    TextAnswer,
)
from .transport import ConnectFailed, Response, SendFailed, Transport

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 3.0
# How long a kiosk call waits for its answer. A server that accepts the connection and
# then says nothing (its host lost power or network, a frozen VM, a stopped process: no
# reset ever comes) must not hold a student, and every call queued behind theirs on the
# kiosk's one worker thread, for minutes: after this a GET goes on to the next URL and a
# POST reports that it may have been sent. It is a little longer than the slowest answer
# a live server gives a kiosk: a write waits at most 10 s for the server's SQLite write
# gate (db.SQLITE_WRITE_GATE_TIMEOUT_S, a test keeps the two in step).
KIOSK_READ_TIMEOUT_S: Final = 12.0
# An administrator's backup of a large database or a report over a long period.
ADMIN_READ_TIMEOUT_S: Final = 300.0
# The server sends a keepalive every 15 s (server.events.KEEPALIVE_S): a stream silent for
# longer than this means the server is gone, and the kiosk says so and looks elsewhere.
EVENTS_READ_TIMEOUT_S: Final = 20.0
NO_SERVER = "No ConsultEase server answers. The kiosk keeps trying; please try again in a moment."
UNTRUSTED = (
    "The server's certificate is not signed by the CA this kiosk trusts "
    "(CONSULTEASE_SERVER_CA_FILE): the kiosk refuses to talk to it. Please call an administrator."
)


def _untrusted(err: BaseException | None) -> bool:
    """True when ``err`` is (or wraps) a failed certificate verification."""
    while err is not None:
        if isinstance(err, ssl.SSLCertVerificationError):
            return True
        err = err.__cause__ or err.__context__
    return False


M = TypeVar("M", bound=BaseModel)


@functools.cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    """One ``TypeAdapter`` per type: building one costs more than the validation it does
    (about 0.9 ms for ``list[FacultyView]``, on the kiosk's worker, per call)."""
    return TypeAdapter(tp)


_QUEUES: Final = TypeAdapter(dict[int, QueueView])
_COUNTS: Final = TypeAdapter(dict[int, int])
_TABLES: Final = TypeAdapter(dict[str, AnalyticsTable])


def split_urls(value: str | Sequence[str]) -> list[str]:
    """``"https://a:8080, https://b:8080"`` → the list of base URLs (no trailing slash)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    urls = [u.strip().rstrip("/") for u in items if u.strip()]
    if not urls:
        raise ValueError("no server URL given")
    return urls


def sends_token_in_clear(url: str) -> bool:
    """True for an ``http://`` URL of another machine: a token sent there crosses the
    network unencrypted (loopback stays on this machine)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: another machine


def _error_from(response: Response) -> KioskError:
    try:
        body = response.json()
        code, detail = str(body.get("error", "")), str(body.get("detail", ""))
    except (ValueError, AttributeError):
        code, detail = "", response.text[:200]
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        cls = next(
            (c for c in ERRORS_BY_CODE.values() if c.status_code == response.status),
            KioskError,
        )
    return cls(detail or f"The server answered {response.status}.")


class ApiClient:
    """Calls the API with one token; thread-safe (one call at a time per connection)."""

    def __init__(
        self,
        urls: str | Sequence[str],
        token: str | None,
        *,
        ca_file: Path | str | None = None,
        uds: str | None = None,
        timeout: float = KIOSK_READ_TIMEOUT_S,
    ) -> None:
        self.urls = split_urls(urls)
        self.token = token
        self.admin_token: str | None = None
        context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self._http = Transport(
            ssl_context=context, uds=uds, connect_timeout=CONNECT_TIMEOUT_S, read_timeout=timeout
        )
        self._events_http = Transport(
            ssl_context=context,
            uds=uds,
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=EVENTS_READ_TIMEOUT_S,
        )
        self._active = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()
        self._events_http.close()

    @property
    def active_url(self) -> str:
        """The URL that answered last."""
        return self.urls[self._active]

    # ------------------------------------------------------------------ transport

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        card_uid: str | None = None,
        admin: bool = False,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one call to the active server; the decoded JSON answer, or the API's error.

        ``timeout``: how long to wait for the answer (default: the client's, for kiosk calls).
        """
        # Calls both may make (the faculty list) go with the kiosk token, else the session.
        token = self.admin_token if admin else (self.token or self.admin_token)
        if admin and not token:
            raise KioskError("Sign in as an administrator first.")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if card_uid is not None:
            headers["X-Card-UID"] = card_uid
        content = None if body is None else json.dumps(body).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
        if params:
            path = f"{path}?{urlencode(params)}"
        start = self._active
        last: Exception | None = None
        for i in range(len(self.urls)):
            index = (start + i) % len(self.urls)
            try:
                response = self._http.request(
                    method, self.urls[index], path, body=content, headers=headers, timeout=timeout
                )
            except ConnectFailed as err:
                last = err  # never reached the server: the next one may be the active one
                continue
            except SendFailed as err:
                if method == "GET":
                    last = err
                    continue
                raise OutcomeUnknownError(
                    "The central system did not answer; what you did may or may not have "
                    "been saved."
                ) from err
            if response.status == 503:
                last = _error_from(response)
                continue
            self._active = index
            if response.status >= 400:
                raise _error_from(response)
            if response.status == 204 or not response.body:
                return None
            return response.json()
        raise UnavailableError(UNTRUSTED if _untrusted(last) else NO_SERVER) from last

    def _get(self, model: type[M], path: str, **kw: Any) -> M:
        return model.model_validate(self.request("GET", path, **kw))

    def _list(self, model: type[M], path: str, **kw: Any) -> list[M]:
        return _adapter(list[model]).validate_python(self.request("GET", path, **kw))  # type: ignore[valid-type, no-any-return]

    # ------------------------------------------------------------------ health

    def health(self, url: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """``GET /healthz`` of one server (default: the active one); TransportError when it
        does not answer."""
        response = self._http.request("GET", url or self.active_url, "/healthz", timeout=timeout)
        result: dict[str, Any] = response.json()
        return result

    # ------------------------------------------------------------------ the card holder

    def student(self, card_uid: str) -> StudentView:
        """The student whose card was tapped (NotFoundError: unknown card)."""
        return self._get(StudentView, "/api/v1/students/me", card_uid=card_uid)

    def my_consultations(self, card_uid: str, limit: int = 50) -> list[ConsultationView]:
        """The card holder's consultations, newest first."""
        return self._list(
            ConsultationView,
            "/api/v1/students/me/consultations",
            card_uid=card_uid,
            params={"limit": limit},
        )

    def create_consultation(
        self, card_uid: str, faculty_id: int, message: str, course_code: str | None = None
    ) -> ConsultationView:
        """Send the card holder's request to a faculty member."""
        body = {"faculty_id": faculty_id, "message": message, "course_code": course_code}
        data = self.request("POST", "/api/v1/consultations", body=body, card_uid=card_uid)
        return ConsultationView.model_validate(data)

    def queue_positions(self, card_uid: str) -> dict[int, QueueView]:
        """Where each of the card holder's pending requests stands, by consultation id."""
        data = self.request("GET", "/api/v1/students/me/queue", card_uid=card_uid)
        return _QUEUES.validate_python(data)

    def queue_position(self, card_uid: str, consultation_id: int) -> QueueView | None:
        """Where one of the card holder's requests stands (None: not pending)."""
        data = self.request(
            "GET", f"/api/v1/consultations/{consultation_id}/queue", card_uid=card_uid
        )
        return None if data is None else QueueView.model_validate(data)

    def waiting_counts(self) -> dict[int, int]:
        """Pending requests per faculty member id."""
        data = self.request("GET", "/api/v1/faculty/waiting")
        return _COUNTS.validate_python(data)

    def consultation(self, card_uid: str, consultation_id: int) -> ConsultationView:
        """One of the card holder's consultations."""
        return self._get(
            ConsultationView, f"/api/v1/consultations/{consultation_id}", card_uid=card_uid
        )

    def cancel(self, card_uid: str, consultation_id: int) -> ConsultationView:
        """Cancel one of the card holder's pending requests."""
        data = self.request(
            "POST", f"/api/v1/consultations/{consultation_id}/cancel", card_uid=card_uid
        )
        return ConsultationView.model_validate(data)

    # ------------------------------------------------------------------ everyone

    def faculty(self) -> list[FacultyView]:
        """Every faculty member."""
        return self._list(FacultyView, "/api/v1/faculty")

    def faculty_member(self, faculty_id: int) -> FacultyView:
        """One faculty member."""
        return self._get(FacultyView, f"/api/v1/faculty/{faculty_id}")

    def admin_exists(self) -> bool:
        """Whether an administrator account exists."""
        return self._get(AdminExists, "/api/v1/admin/exists").exists

    # ------------------------------------------------------------------ administrators

    def sign_in(self, username: str, password: str) -> AdminSession:
        """Sign in; later admin calls use this session."""
        data = self.request(
            "POST", "/api/v1/admin/session", body={"username": username, "password": password}
        )
        session = AdminSession.model_validate(data)
        self.admin_token = session.token
        return session

    def sign_out(self) -> None:
        """End the administrator session."""
        if self.admin_token:
            try:
                self.request("DELETE", "/api/v1/admin/session", admin=True)
            finally:
                self.admin_token = None

    def change_password(self, current: str, new: str) -> None:
        """Replace the signed-in administrator's password."""
        self.request(
            "POST",
            "/api/v1/admin/password",
            body={"current_password": current, "new_password": new},
            admin=True,
        )

    def save_faculty(
        self, faculty_id: int | None, name: str, department: str, email: str | None
    ) -> FacultyView:
        """Create (``faculty_id`` None) or update a faculty member."""
        body = {"name": name, "department": department, "email": email}
        if faculty_id is None:
            data = self.request("POST", "/api/v1/faculty", body=body, admin=True)
        else:
            data = self.request("PUT", f"/api/v1/faculty/{faculty_id}", body=body, admin=True)
        return FacultyView.model_validate(data)

    def delete_faculty(self, faculty_id: int) -> None:
        """Delete a faculty member."""
        self.request("DELETE", f"/api/v1/faculty/{faculty_id}", admin=True)

    def students(self) -> list[StudentView]:
        """Every student."""
        return self._list(StudentView, "/api/v1/students", admin=True)

    def register_student(
        self, name: str, student_number: str, department: str, card_uid: str
    ) -> StudentView:
        """Register a student with a tapped card."""
        body = {
            "name": name,
            "student_id": student_number,
            "department": department,
            "rfid_uid": card_uid,
        }
        data = self.request("POST", "/api/v1/students", body=body, admin=True)
        return StudentView.model_validate(data)

    def delete_student(self, student_pk: int) -> None:
        """Delete a student."""
        self.request("DELETE", f"/api/v1/students/{student_pk}", admin=True)

    def desks(self) -> list[DeskView]:
        """Every desk's liveness and diagnostics."""
        return self._list(DeskView, "/api/v1/desks", admin=True)

    def desk_credentials(self, action: str, faculty_id: int) -> str:
        """Provision, rotate or revoke a desk's broker credentials."""
        data = self.request("POST", f"/api/v1/desks/{faculty_id}/{action}", admin=True)
        return TextAnswer.model_validate(data).text

    def consultations(self, limit: int = 200) -> list[ConsultationView]:
        """The newest consultations."""
        return self._list(
            ConsultationView, "/api/v1/consultations", admin=True, params={"limit": limit}
        )

    def audit(self, limit: int = 200) -> list[AuditView]:
        """The newest audit-log entries."""
        return self._list(AuditView, "/api/v1/audit", admin=True, params={"limit": limit})

    def system_stats(self) -> dict[str, Any]:
        """The central system's statistics."""
        result: dict[str, Any] = self.request("GET", "/api/v1/system/stats", admin=True)
        return result

    def backup(self) -> str:
        """Back the database up on the server; the file written."""
        return TextAnswer.model_validate(
            self.request("POST", "/api/v1/system/backup", admin=True, timeout=ADMIN_READ_TIMEOUT_S)
        ).text

    def analytics(self, days: int) -> dict[str, AnalyticsTable]:
        """Every analytics report for the last ``days`` days."""
        data = self.request(
            "GET",
            "/api/v1/analytics",
            admin=True,
            params={"days": days},
            timeout=ADMIN_READ_TIMEOUT_S,
        )
        return _TABLES.validate_python(data)

    def export_analytics(self, report: str, days: int) -> str:
        """Write one report as CSV on the server; the file written."""
        data = self.request(
            "POST",
            f"/api/v1/analytics/{report}/export",
            admin=True,
            params={"days": days},
            timeout=ADMIN_READ_TIMEOUT_S,
        )
        return TextAnswer.model_validate(data).text

    # ------------------------------------------------------------------ events

    def events(self, *, admin: bool = False) -> Iterator[Event]:
        """The live event stream of the active server; ends when the stream does.

        Raises the API's error when the server refuses, UnavailableError when none answers.
        """
        for batch in self.event_batches(admin=admin):
            for raw in batch:
                yield _event_from(raw)

    def event_batches(self, *, admin: bool = False) -> Iterator[list[dict[str, Any]]]:
        """The same stream as ``events``, as the plain dicts each read of it completed.

        For a reader that shares the interpreter lock with a screen (the kiosk's): a burst
        is hundreds of events per read, and building a model for each cost three quarters
        of that reader's CPU (issue 9). Only events of kinds this client knows; a read that
        completed none gives nothing.
        """
        token = self.admin_token if admin else (self.token or self.admin_token)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        last: Exception | None = None
        for i in range(len(self.urls)):
            index = (self._active + i) % len(self.urls)
            try:
                with self._events_http.stream(
                    self.urls[index],
                    "/api/v1/events",
                    headers=headers,
                    timeout=EVENTS_READ_TIMEOUT_S,
                ) as (status, chunks):
                    if status >= 400:
                        error = _error_from(Response(status, b"".join(chunks)))
                        if status == 503:
                            last = error
                            continue
                        raise error
                    self._active = index
                    parser = SseParser()
                    try:
                        for chunk in chunks:
                            batch = parser.feed_raw(chunk)
                            if batch:
                                yield batch
                    except TimeoutError as err:
                        # Not even a keepalive: the server's host is gone or frozen. The
                        # next attempt (and the next call) starts with the next URL.
                        if self._active == index:
                            self._active = (index + 1) % len(self.urls)
                        raise UnavailableError(
                            f"{self.urls[index]}: the event stream was silent for "
                            f"{EVENTS_READ_TIMEOUT_S:.0f} s"
                        ) from err
                    return
            except (ConnectFailed, SendFailed) as err:
                last = err  # nothing acts on a GET: the next server may be the active one
                continue
        raise UnavailableError(UNTRUSTED if _untrusted(last) else NO_SERVER) from last


_EVENT_FIELDS: Final = frozenset(Event.model_fields)


def _event_from(raw: dict[str, Any]) -> Event:
    """One event from its data (a dict of a known kind, ``SseParser.feed_raw``). Plain
    ``json.loads`` and no validation: a burst of 10,000 events passes through the kiosk's
    process, whose interpreter lock the screen shares, and the server built each event
    from the same schema. Unknown fields (a newer server) are skipped."""
    return Event.model_construct(**{k: v for k, v in raw.items() if k in _EVENT_FIELDS})


_KINDS: Final = frozenset({"consultation", "faculty", "mqtt_state", "overflow"})


class SseParser:
    """Server-sent events from the stream's bytes as they arrive: one split per message
    (a blank line ends one), ``data:`` lines joined, comments (``:``) skipped, and an
    ``event: batch`` message (a JSON array) given back as its events in order."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by ``chunk`` (ValueError: data that is not JSON)."""
        return [_event_from(raw) for raw in self.feed_raw(chunk)]

    def feed_raw(self, chunk: bytes) -> list[dict[str, Any]]:
        """The events completed by ``chunk`` as their JSON objects, unknown kinds skipped."""
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        *messages, self._buffer = buffer.split(b"\n\n")
        events: list[dict[str, Any]] = []
        for message in messages:
            data = [
                line[5:].removeprefix(b" ")
                for line in message.split(b"\n")
                if line.startswith(b"data:")
            ]
            if not data:
                continue  # a comment (": keepalive") or an empty message
            raw = json.loads(b"\n".join(data))
            for item in raw if isinstance(raw, list) else (raw,):
                if isinstance(item, dict) and item.get("kind") in _KINDS:
                    events.append(item)
        return events


def _parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Events from the stream's lines (without their line ends)."""
    parser = SseParser()
    for line in lines:
        yield from parser.feed(line.encode() + b"\n")
