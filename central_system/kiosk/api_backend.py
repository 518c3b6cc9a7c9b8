"""The kiosk's backend over the server's API: the calls the screens make, and live events.

Worker thread only for the calls (they block on the network); one reader thread
follows the event stream and reconnects with a growing delay, so a server that
stops answering, or a failover to the standby, needs no restart of the kiosk.

A kiosk acts for a student only with the card tapped at it: ``login_by_card``
remembers which card belongs to the student shown, and every student call sends
that card's UID (``X-Card-UID``); the server resolves it again each time.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

from ..api.client import ApiClient, sends_token_in_clear
from ..api.errors import KioskError, NotFoundError
from ..api.schemas import (
    AdminSession,
    AnalyticsTable,
    AuditView,
    ConsultationView,
    DeskView,
    FacultyView,
    QueueView,
    StudentView,
)

logger = logging.getLogger(__name__)

# Delays between attempts to reach the event stream again (then the last one, repeated).
RECONNECT_DELAYS_S: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
# The bridge's words for "no server answers" (the header says so in plain words).
UNREACHABLE_STATE: Final = "backend_failed"
TAP_AGAIN = "Please tap your card again."
# The event reader posts a burst to the bridge YIELD_EVERY events at a time and pauses
# this long between them.
YIELD_EVERY: Final = 100
YIELD_S: Final = 0.0005


class ApiBackend:
    """The kiosk's calls, each one an API call; the server's events to the bridge."""

    def __init__(self, client: ApiClient, settings: Any = None, *, local: Any = None) -> None:
        self.client = client
        self.settings = settings
        # The kiosk's own server (``LocalServer``) when it runs one, else None.
        self.local = local
        if local is not None:
            local.on_state = self._set_state
        self.mqtt_state = "starting"
        self._cards: dict[int, str] = {}
        self._last_card: str | None = None
        self._bridge: Any = None
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self.reconnects = 0

    @classmethod
    def from_settings(cls, settings: Any) -> ApiBackend:
        """A backend on ``CONSULTEASE_SERVER_URL`` with ``CONSULTEASE_SERVER_TOKEN``."""
        token = settings.server_token.get_secret_value() if settings.server_token else None
        if not token:
            raise KioskError(
                "CONSULTEASE_SERVER_TOKEN is not set: enroll this kiosk on the server "
                "(consultease kiosk enroll NAME) and set the token it prints."
            )
        client = ApiClient(settings.server_url, token, ca_file=settings.server_ca_file)
        for url in client.urls:
            if sends_token_in_clear(url):
                logger.warning(
                    "CONSULTEASE_SERVER_URL %s is plain http:// to another machine: this "
                    "kiosk's token crosses the network unencrypted and anyone on the way can "
                    "reuse it. Use https:// with CONSULTEASE_SERVER_CA_FILE "
                    "(docs/deployment.md, section 10a).",
                    url,
                )
        return cls(client, settings)

    # ------------------------------------------------------------------ events

    def connect_events(self, bridge: Any) -> None:
        """Follow the server's event stream on a thread of its own; events go to ``bridge``."""
        self._bridge = bridge
        bridge.on_mqtt_state(self.mqtt_state)
        if self._reader is None:
            self._reader = threading.Thread(
                target=self._follow_events, name="kiosk-events", daemon=True
            )
            self._reader.start()

    def disconnect_events(self) -> None:
        """Stop following events and close the connections."""
        self._bridge = None
        self._stop.set()
        self.client.close()
        if self._reader is not None:
            self._reader.join(5)

    def _set_state(self, state: str) -> None:
        self.mqtt_state = state
        bridge = self._bridge
        if bridge is not None:
            bridge.on_mqtt_state(state)

    def _follow_events(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                for batch in self.client.event_batches():
                    attempt = 0
                    self._deliver(batch)
            except Exception as err:
                if self._stop.is_set():
                    return
                logger.info("event stream lost (%s); reconnecting", err)
            if self._stop.is_set():
                return
            self._set_state(self._down_state())
            self.reconnects += 1
            delay = RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)]
            attempt += 1
            if self._stop.wait(delay):
                return
            self._resync()

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        """One read of the stream to the bridge: its changes posted YIELD_EVERY at a time.

        A burst is hundreds of events per read; each slice goes in one ``on_changes``
        call (one lock, at most one wake), and between slices the reader sleeps briefly
        so that the screen gets the interpreter lock instead of waiting out the switch
        interval (issue 9).
        """
        consultations: list[tuple[int, str]] = []
        faculty: list[int] = []
        for n, raw in enumerate(batch, 1):
            kind = raw["kind"]
            if kind == "consultation" and raw.get("id") is not None:
                consultations.append((raw["id"], raw.get("status") or ""))
            elif kind == "faculty" and raw.get("id") is not None:
                faculty.append(raw["id"])
            elif kind == "mqtt_state" and raw.get("state") is not None:
                self._set_state(raw["state"])
            elif kind == "overflow":
                logger.warning("the kiosk fell behind the event stream; reconnecting")
            if n % YIELD_EVERY == 0 and n < len(batch):
                self._post(consultations, faculty)
                consultations, faculty = [], []
                time.sleep(YIELD_S)
        self._post(consultations, faculty)

    def _post(self, consultations: list[tuple[int, str]], faculty: list[int]) -> None:
        bridge = self._bridge
        if bridge is not None and (consultations or faculty):
            bridge.on_changes(consultations, faculty)

    def _down_state(self) -> str:
        """What the header says while the stream is down."""
        local = self.local
        if local is None:
            return UNREACHABLE_STATE
        if local.state in ("starting", "backend_failed", "backend_refused"):
            return str(local.state)
        return "backend_down"  # the kiosk's own central system is restarting

    @classmethod
    def local_server(cls, settings: Any) -> ApiBackend:
        """A backend on a server of the kiosk's own (``LocalServer``), not yet started."""
        from .local_server import LocalServer

        local = LocalServer(settings)
        client = ApiClient("http://kiosk", local.token, uds=str(local.socket_path))
        return cls(client, settings, local=local)

    @property
    def pid(self) -> int | None:
        """The kiosk's own server's pid (None with a remote server)."""
        return self.local.pid if self.local is not None else None

    @property
    def restarts(self) -> int:
        """How often the kiosk's own server was restarted."""
        return int(self.local.restarts) if self.local is not None else 0

    def start(self) -> ApiBackend:
        """Start the kiosk's own server and wait until it answers (no-op with a remote one)."""
        if self.local is not None:
            self.local.start()
        return self

    def start_in_background(self) -> ApiBackend:
        """Start the kiosk's own server without waiting (retried until it is up)."""
        if self.local is not None:
            self.local.start_in_background()
        return self

    def close(self) -> None:
        """Stop following events; stop the kiosk's own server."""
        self.disconnect_events()
        if self.local is not None:
            self.local.close()

    def _resync(self) -> None:
        """After a gap in the stream: every faculty card may have changed; say so."""
        bridge = self._bridge
        if bridge is None:
            return
        try:
            for f in self.client.faculty():
                bridge.on_faculty(f.id)
        except KioskError:
            return

    # ------------------------------------------------------------------ students

    def _card_of(self, student_id: int) -> str:
        card = self._cards.get(student_id)
        if card is None:
            raise KioskError(TAP_AGAIN)
        return card

    def login_by_card(self, raw_uid: str) -> StudentView | None:
        """The student whose card this is, or None for an unknown card."""
        try:
            student = self.client.student(raw_uid.strip())
        except NotFoundError:
            return None
        except KioskError as err:
            if "match pattern" in str(err) or "x-card-uid" in str(err):
                return None  # not a card UID at all
            raise
        self._cards = {student.id: raw_uid.strip()}
        self._last_card = raw_uid.strip()
        return student

    def list_faculty(self) -> list[FacultyView]:
        """Every faculty member."""
        return self.client.faculty()

    def get_faculty(self, faculty_id: int) -> FacultyView | None:
        """One faculty member, or None."""
        try:
            return self.client.faculty_member(faculty_id)
        except NotFoundError:
            return None

    def waiting_counts(self) -> dict[int, int]:
        """Pending requests per faculty member."""
        return self.client.waiting_counts()

    def send_request(
        self, student_id: int, faculty_id: int, message: str, course_code: str | None
    ) -> ConsultationView:
        """Send the student's request (the card tapped here identifies them)."""
        return self.client.create_consultation(
            self._card_of(student_id), faculty_id, message, course_code or None
        )

    def my_consultations(self, student_id: int, limit: int = 50) -> list[ConsultationView]:
        """The student's consultations, newest first."""
        return self.client.my_consultations(self._card_of(student_id), limit)

    def queue_position(self, consultation_id: int) -> QueueView | None:
        """Where one of the shown student's requests stands."""
        if self._last_card is None:
            return None
        return self.client.queue_position(self._last_card, consultation_id)

    def queue_positions(self, student_id: int) -> dict[int, QueueView]:
        """Every pending request of the student."""
        return self.client.queue_positions(self._card_of(student_id))

    def cancel(self, consultation_id: int, student_id: int) -> ConsultationView | None:
        """Cancel one of the student's pending requests."""
        return self.client.cancel(self._card_of(student_id), consultation_id)

    # ------------------------------------------------------------------ administrators

    def admin_exists(self) -> bool:
        """Whether an administrator account exists."""
        return self.client.admin_exists()

    def admin_login(self, username: str, password: str) -> AdminSession:
        """Sign in; later administrator calls use this session."""
        return self.client.sign_in(username, password)

    def change_admin_password(self, username: str, current: str, new: str) -> None:
        """Replace the signed-in administrator's password."""
        self.client.change_password(current, new)

    def save_faculty(
        self, faculty_id: int | None, name: str, department: str, email: str | None, admin: str
    ) -> FacultyView:
        """Create or update a faculty member (the server audits it for the session's admin)."""
        return self.client.save_faculty(faculty_id, name.strip(), department.strip(), email or None)

    def delete_faculty(self, faculty_id: int, admin: str) -> None:
        """Delete a faculty member."""
        self.client.delete_faculty(faculty_id)

    def list_students(self) -> list[StudentView]:
        """Every student."""
        return self.client.students()

    def register_student(
        self, name: str, student_number: str, department: str, raw_uid: str, admin: str
    ) -> StudentView:
        """Register a student with the card tapped here."""
        if not raw_uid.strip():
            raise KioskError("Tap the student's card first.")
        return self.client.register_student(
            name.strip(), student_number.strip(), department.strip(), raw_uid.strip()
        )

    def delete_student(self, student_pk: int, admin: str) -> None:
        """Delete a student."""
        self.client.delete_student(student_pk)

    def list_desks(self) -> list[DeskView]:
        """Every desk's liveness and diagnostics."""
        return self.client.desks()

    def desk_credentials(self, verb: str, faculty_id: int, admin: str) -> str:
        """Provision, rotate or revoke a desk's broker credentials."""
        return self.client.desk_credentials(verb, faculty_id)

    def list_consultations(self, limit: int = 200) -> list[ConsultationView]:
        """The newest consultations."""
        return self.client.consultations(limit)

    def list_audit(self, limit: int = 200) -> list[AuditView]:
        """The newest audit-log entries."""
        return self.client.audit(limit)

    def system_stats(self) -> dict[str, Any]:
        """The central system's statistics, and which server answered."""
        stats = self.client.system_stats()
        if self.local is not None:
            restarted = f", restarted {self.restarts} times" if self.restarts else ""
            stats["backend"] = f"this kiosk's own server (pid {self.pid}){restarted}"
        else:
            stats["backend"] = f"server {self.client.active_url} ({stats.get('role', 'active')})"
        return stats

    def backup_available(self) -> bool:
        """The server backs up its own database."""
        return True

    def backup(self, admin: str) -> str:
        """Back the database up on the server; the file written there."""
        return self.client.backup()

    def analytics(self, days: int) -> dict[str, AnalyticsTable]:
        """Every analytics report for the last ``days`` days."""
        return self.client.analytics(days)

    def export_analytics(self, report: str, days: int, admin: str) -> str:
        """Write one report as CSV on the server."""
        return self.client.export_analytics(report, days)
