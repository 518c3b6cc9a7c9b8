"""What the kiosk's screens may ask of the central system: one typing ``Protocol``.

The screens (``central_system.views``) depend on this interface and on the API's
schemas and errors (``central_system.api``), never on controllers, models or the
network. Two classes provide it: :class:`~central_system.kiosk.api_backend.ApiBackend`
(the server's API; what ``scripts/consultease run`` and the demo use) and
``controllers.kiosk_facade.KioskBackend`` (the controllers in the same process: what
the server itself serves, and what fast offscreen tests hand the kiosk directly).
``tests/unit/test_kiosk_calls.py`` checks that both match it, call by call.

Every call blocks (network or database): the screens make them on the worker thread
only (``views.context.KioskContext.run``).
"""

from __future__ import annotations

from typing import Any, Protocol

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


class EventSink(Protocol):
    """Where live events go (``views.bridge.MqttBridge``); called from any thread."""

    def on_mqtt_state(self, state: str) -> None:
        """The central system's MQTT state, or the kiosk's own words for "no server"."""

    def on_consultation(self, consultation_id: int, status: str) -> None:
        """A consultation changed."""

    def on_faculty(self, faculty_id: int) -> None:
        """A faculty member (availability, desk) changed."""


class KioskCalls(Protocol):
    """The kiosk's calls. Errors are ``central_system.api.errors.KioskError`` and its
    subclasses (``OutcomeUnknownError``: the call may have been carried out)."""

    @property
    def mqtt_state(self) -> str:
        """The state last heard (an attribute read, no I/O: safe on the Qt thread)."""

    # ---- live events
    def connect_events(self, bridge: Any) -> None:
        """Send live events to ``bridge`` (an :class:`EventSink`) from now on."""

    def disconnect_events(self) -> None:
        """Stop sending events."""

    # ---- students (a card tapped at this kiosk)
    def login_by_card(self, raw_uid: str) -> StudentView | None:
        """The student whose card this is, or None for an unknown card."""

    def list_faculty(self) -> list[FacultyView]:
        """Every faculty member."""

    def get_faculty(self, faculty_id: int) -> FacultyView | None:
        """One faculty member, or None."""

    def waiting_counts(self) -> dict[int, int]:
        """Pending requests per faculty member."""

    def send_request(
        self, student_id: int, faculty_id: int, message: str, course_code: str | None
    ) -> ConsultationView:
        """Send the student's request."""

    def my_consultations(self, student_id: int, limit: int = 50) -> list[ConsultationView]:
        """The student's consultations, newest first."""

    def queue_position(self, consultation_id: int) -> QueueView | None:
        """Where one request stands (None: not pending)."""

    def queue_positions(self, student_id: int) -> dict[int, QueueView]:
        """Every pending request of the student."""

    def cancel(self, consultation_id: int, student_id: int) -> ConsultationView | None:
        """Cancel one of the student's pending requests."""

    # ---- administrators
    def admin_exists(self) -> bool:
        """Whether an administrator account exists."""

    def admin_login(self, username: str, password: str) -> AdminSession:
        """Sign in."""

    def change_admin_password(self, username: str, current: str, new: str) -> None:
        """Replace the signed-in administrator's password."""

    def save_faculty(
        self, faculty_id: int | None, name: str, department: str, email: str | None, admin: str
    ) -> FacultyView:
        """Create or update a faculty member."""

    def delete_faculty(self, faculty_id: int, admin: str) -> None:
        """Delete a faculty member."""

    def list_students(self) -> list[StudentView]:
        """Every student."""

    def register_student(
        self, name: str, student_number: str, department: str, raw_uid: str, admin: str
    ) -> StudentView:
        """Register a student with a card tapped here."""

    def delete_student(self, student_pk: int, admin: str) -> None:
        """Delete a student."""

    def list_desks(self) -> list[DeskView]:
        """Every desk's liveness and diagnostics."""

    def desk_credentials(self, verb: str, faculty_id: int, admin: str) -> str:
        """Provision, rotate or revoke a desk's broker credentials."""

    def list_consultations(self, limit: int = 200) -> list[ConsultationView]:
        """The newest consultations."""

    def list_audit(self, limit: int = 200) -> list[AuditView]:
        """The newest audit-log entries."""

    def system_stats(self) -> dict[str, Any]:
        """The central system's statistics."""

    def backup_available(self) -> bool:
        """Whether a backup can be made."""

    def backup(self, admin: str) -> str:
        """Back the database up; the file written."""

    def analytics(self, days: int) -> dict[str, AnalyticsTable]:
        """Every analytics report for the last ``days`` days."""

    def export_analytics(self, report: str, days: int, admin: str) -> str:
        """Write one report as CSV; the file written."""
