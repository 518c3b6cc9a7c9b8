"""What a kiosk (and an administrator) may ask of the central system, in one facade.

The server's routes call these methods (a route checks who is calling, then calls
one of them); they return the API's frozen pydantic answers
(:mod:`central_system.api.schemas`), never ORM objects, and raise the API's errors
(:mod:`central_system.api.errors`): a controller's ``ValueError`` becomes a
:class:`KioskError` with the same message, a missing row a :class:`NotFoundError`,
a duplicate a :class:`ConflictError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from .. import db
from ..api.errors import ConflictError, KioskError, NotAuthenticatedError, NotFoundError
from ..api.schemas import (
    AdminSession,
    AuditView,
    ConsultationView,
    DeskView,
    FacultyView,
    QueueView,
    StudentView,
)
from ..models import Admin, Consultation, DeskUnit, Faculty, Student
from ..services.rfid import InvalidUIDError, normalize_uid
from .base import ConsultationEvent, FacultyEvent
from .consultation_controller import Admission

__all__ = [
    "AdminSession",
    "AuditView",
    "ConsultationView",
    "DeskView",
    "FacultyView",
    "KioskBackend",
    "KioskError",
    "QueueView",
    "StudentView",
]

logger = logging.getLogger(__name__)


def faculty_view(f: Any) -> FacultyView:
    """A faculty card from a ``Faculty`` or a row with its columns: no department is "", and
    no manual status is shown over an online desk (the server's fast path uses it too)."""
    return FacultyView(
        id=f.id,
        name=f.name,
        department=f.department or "",
        email=f.email,
        status=str(f.status),
        desk_online=bool(f.desk_online),
        manual_status=None if f.desk_online else f.manual_status,
    )


def student_view(s: Any) -> StudentView:
    """A student from a ``Student`` or a row with its columns (no department is "")."""
    return StudentView(
        id=s.id,
        name=s.name,
        student_id=s.student_id,
        department=s.department or "",
        rfid_uid=s.rfid_uid,
    )


def _consultation_view(c: Consultation, session: Any = None) -> ConsultationView:
    student_name = c.student.name if c.student is not None else ""
    faculty_name = c.faculty.name if c.faculty is not None else ""
    return ConsultationView(
        id=c.id,
        student_id=c.student_id,
        student_name=student_name,
        faculty_id=c.faculty_id,
        faculty_name=faculty_name,
        message=c.message,
        course_code=c.course_code,
        status=str(c.status),
        created_at=c.created_at,
        note=c.status_note,
    )


def _queue_view(p: Any) -> QueueView:
    return QueueView(
        consultation_id=p.consultation_id,
        faculty_id=p.faculty_id,
        position=p.position,
        waiting=p.waiting,
        expected_wait_s=p.expected_wait_s,
        history=p.history,
        expires_at=p.expires_at,
    )


def _analytics_range(days: int) -> tuple[datetime, datetime]:
    """The last ``days`` days up to now; 1 means since local midnight."""
    now = datetime.now().astimezone()
    if int(days) <= 1:
        return now.replace(hour=0, minute=0, second=0, microsecond=0), now
    return now - timedelta(days=min(int(days), 3 * 365)), now


def _error_message(err: BaseException) -> str:
    return str(err) or err.__class__.__name__


def _kiosk_error(err: BaseException) -> KioskError:
    """The API error for a controller's ``ValueError`` (by its class name: NotFound, Duplicate…)."""
    name = err.__class__.__name__
    message = _error_message(err)
    if name.endswith("NotFoundError") or name == "NotOwnConsultationError":
        return NotFoundError(message)
    if name.startswith("Duplicate") or name == "AdminExistsError":
        return ConflictError(message)
    return KioskError(message)


class KioskBackend:
    """Calls the controllers (and reads the database) for the kiosk. Worker thread only."""

    def __init__(self, system: Any) -> None:
        self.system = system
        self.controllers: dict[str, Any] = dict(getattr(system, "controllers", {}) or {})
        self._removers: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ controllers

    def _controller(self, name: str) -> Any:
        """The controller called ``name`` from the system, built on demand when not wired."""
        for key in (name, f"{name}_controller", name.capitalize()):
            if key in self.controllers:
                return self.controllers[key]
        from . import (
            admin_controller,
            analytics_controller,
            consultation_controller,
            faculty_controller,
            queue_controller,
        )
        from . import student_controller as student_ctl

        classes = {
            "consultation": consultation_controller.ConsultationController,
            "faculty": faculty_controller.FacultyController,
            "student": student_ctl.StudentController,
            "admin": admin_controller.AdminController,
            "queue": queue_controller.QueueController,
            "analytics": analytics_controller.AnalyticsController,
        }

        instance = classes[name]()
        self.controllers[name] = instance
        return instance

    # ------------------------------------------------------------------ live events

    @property
    def mqtt_state(self) -> str:
        """The MQTT service's state now (an attribute read, no I/O: safe on the Qt thread)."""
        return str(getattr(getattr(self.system, "mqtt", None), "state", "unknown"))

    def connect_events(self, bridge: Any) -> None:
        """Forward controller and MQTT-service events to ``bridge`` (runs on service threads)."""
        mqtt = getattr(self.system, "mqtt", None)
        if mqtt is not None:
            self._removers.append(mqtt.add_state_listener(bridge.on_mqtt_state))

        def consultation_listener(event: ConsultationEvent) -> None:
            bridge.on_consultation(event.consultation_id, event.status)

        def faculty_listener(event: FacultyEvent) -> None:
            bridge.on_faculty(event.faculty_id)

        self._add_listener("consultation", consultation_listener)
        self._add_listener("faculty", faculty_listener)

    def _add_listener(self, name: str, listener: Callable[..., None]) -> None:
        remover = self._controller(name).add_listener(listener)
        self._removers.append(remover)

    def disconnect_events(self) -> None:
        """Remove every listener added by :meth:`connect_events`."""
        for remove in self._removers:
            try:
                remove()
            except Exception:
                logger.debug("listener removal failed", exc_info=True)
        self._removers.clear()

    # ------------------------------------------------------------------ students

    def login_by_card(self, raw_uid: str) -> StudentView | None:
        """The student whose card this is, or None for an unknown card."""
        try:
            uid = normalize_uid(raw_uid)
        except InvalidUIDError:
            return None
        student = self._controller("student").get_by_rfid(uid)
        if student is None:
            return None
        return student_view(student)

    def list_faculty(self) -> list[FacultyView]:
        """Every faculty member, by name."""
        with db.session_scope() as session:
            rows = session.scalars(select(Faculty).order_by(Faculty.name)).all()
            return [faculty_view(f) for f in rows]

    def get_faculty(self, faculty_id: int) -> FacultyView | None:
        """One faculty member, or None."""
        with db.session_scope() as session:
            f = session.get(Faculty, faculty_id)
            return faculty_view(f) if f is not None else None

    def send_request(
        self, student_id: int, faculty_id: int, message: str, course_code: str | None
    ) -> ConsultationView:
        """Create a consultation; a ValueError from the controller becomes a KioskError."""
        return self._created(
            lambda controller: controller.create_consultation(
                student_id, faculty_id, message, course_code=course_code or None
            )
        )

    def send_request_for(
        self,
        admitted: Callable[[Connection, Admission], Any],
        faculty_id: int,
        message: str,
        course_code: str | None,
        *,
        conn: Connection | None = None,
    ) -> ConsultationView:
        """:meth:`send_request` for the student whose admission row ``admitted(conn,
        admission)`` reads, on the request's own connection, or on ``conn`` when given (the
        server's token and card check with the admission read: one read; see
        :meth:`ConsultationController.create_consultation_for`).

        The answer is built from what was inserted, as committed (the controller's transient
        consultation with its student and faculty member), not read back in a second session.
        """
        return self._created(
            lambda controller: controller.create_consultation_for(
                admitted, faculty_id, message, course_code=course_code or None, conn=conn
            )
        )

    def _created(self, create: Callable[[Any], Consultation]) -> ConsultationView:
        """``create(the consultation controller)``'s request as a view; a ValueError (the
        controller's refusal) becomes a KioskError."""
        try:
            c = create(self._controller("consultation"))
        except ValueError as err:
            raise _kiosk_error(err) from err
        return _consultation_view(c)

    def get_consultation(self, consultation_id: int) -> ConsultationView | None:
        """One consultation, or None."""
        with db.session_scope() as session:
            c = session.get(Consultation, consultation_id)
            return _consultation_view(c) if c is not None else None

    def student_consultation(self, consultation_id: int, student_id: int) -> ConsultationView:
        """One of this student's consultations; NotFoundError for anyone else's (no leak)."""
        view = self.get_consultation(consultation_id)
        if view is None or view.student_id != student_id:
            raise NotFoundError(f"No consultation {consultation_id} of yours.")
        return view

    def my_consultations(self, student_id: int, limit: int = 50) -> list[ConsultationView]:
        """A student's consultations, newest first."""
        with db.session_scope() as session:
            rows = session.scalars(
                select(Consultation)
                .where(Consultation.student_id == student_id)
                .order_by(Consultation.id.desc())
                .limit(limit)
            ).all()
            return [_consultation_view(c) for c in rows]

    def queue_position(self, consultation_id: int) -> QueueView | None:
        """A pending request's place in its queue and expected wait (None: not pending)."""
        position = self._controller("queue").position(consultation_id)
        return _queue_view(position) if position is not None else None

    def queue_positions(self, student_id: int) -> dict[int, QueueView]:
        """Every pending request of the student, by consultation id."""
        found = self._controller("queue").positions_for_student(student_id)
        return {cid: _queue_view(p) for cid, p in found.items()}

    def waiting_counts(self) -> dict[int, int]:
        """Pending requests per faculty member (for the faculty cards)."""
        counts: dict[int, int] = self._controller("queue").waiting_counts()
        return counts

    def cancel(self, consultation_id: int, student_id: int) -> ConsultationView | None:
        """Cancel a pending consultation of this student."""
        try:
            self._controller("consultation").cancel_consultation(consultation_id, student_id)
        except ValueError as err:
            raise _kiosk_error(err) from err
        return self.get_consultation(consultation_id)

    # ------------------------------------------------------------------ admin

    def admin_exists(self) -> bool:
        """True when at least one administrator account exists."""
        with db.session_scope() as session:
            return bool(
                session.scalar(select(func.count()).select_from(Admin).where(Admin.role == "admin"))
            )

    def admin_login(self, username: str, password: str) -> AdminSession:
        """Authenticate an administrator; raises KioskError with a showable reason."""
        try:
            result = self._controller("admin").authenticate(username, password)
        except ValueError as err:
            raise _kiosk_error(err) from err
        if not result:
            raise NotAuthenticatedError(
                getattr(result, "message", "") or "Wrong username or password."
            )
        return AdminSession(
            id=getattr(result, "admin_id", None),
            username=getattr(result, "username", None) or username,
            must_change_password=bool(getattr(result, "must_change_password", False)),
        )

    def change_admin_password(self, username: str, current: str, new: str) -> None:
        """Replace an administrator's (temporary) password; policy errors become KioskError."""
        try:
            self._controller("admin").change_password(username, current, new)
        except ValueError as err:
            raise _kiosk_error(err) from err

    def save_faculty(
        self, faculty_id: int | None, name: str, department: str, email: str | None, admin: str
    ) -> FacultyView:
        """Create (faculty_id None) or update a faculty member."""
        ctl = self._controller("faculty")
        fields = {"name": name.strip(), "department": department.strip(), "email": email or None}
        try:
            if faculty_id is None:
                f = ctl.create_faculty(**fields)
            else:
                f = ctl.update_faculty(faculty_id, **fields)
        except ValueError as err:
            raise _kiosk_error(err) from err
        self._audit(admin, "faculty.save", f"faculty:{f.id}")
        view = self.get_faculty(f.id)
        assert view is not None
        return view

    def delete_faculty(self, faculty_id: int, admin: str) -> None:
        """Delete a faculty member."""
        try:
            deleted = self._controller("faculty").delete_faculty(faculty_id)
        except ValueError as err:
            raise _kiosk_error(err) from err
        if deleted is False:
            raise NotFoundError(f"No faculty member with id {faculty_id}.")
        self._audit(admin, "faculty.delete", f"faculty:{faculty_id}")

    def list_students(self) -> list[StudentView]:
        """Every student, by name."""
        with db.session_scope() as session:
            rows = session.scalars(select(Student).order_by(Student.name)).all()
            return [student_view(s) for s in rows]

    def register_student(
        self, name: str, student_number: str, department: str, raw_uid: str, admin: str
    ) -> StudentView:
        """Create a student with the card that was tapped."""
        try:
            uid = normalize_uid(raw_uid)
        except InvalidUIDError as err:
            raise KioskError("Tap the student's card first.") from err
        try:
            s = self._controller("student").create_student(
                name=name.strip(),
                student_id=student_number.strip(),
                department=department.strip(),
                rfid_uid=uid,
            )
        except ValueError as err:
            raise _kiosk_error(err) from err
        self._audit(admin, "student.create", f"student:{s.id}")
        return student_view(s)

    def delete_student(self, student_pk: int, admin: str) -> None:
        """Delete a student."""
        try:
            deleted = self._controller("student").delete_student(student_pk)
        except ValueError as err:
            raise _kiosk_error(err) from err
        if deleted is False:
            raise NotFoundError(f"No student with id {student_pk}.")
        self._audit(admin, "student.delete", f"student:{student_pk}")

    def list_desks(self) -> list[DeskView]:
        """Every faculty member's desk: liveness, last heartbeat and diagnostics."""
        with db.session_scope() as session:
            rows = session.execute(
                select(Faculty, DeskUnit)
                .outerjoin(DeskUnit, DeskUnit.faculty_id == Faculty.id)
                .order_by(Faculty.name)
            ).all()
            return [
                DeskView(
                    faculty_id=f.id,
                    faculty_name=f.name,
                    online=bool(f.desk_online),
                    status=str(f.status),
                    last_seen=f.last_seen,
                    last_heartbeat_at=d.last_heartbeat_at if d else None,
                    heartbeat=dict(d.last_heartbeat) if d and d.last_heartbeat else None,
                    diagnostics_at=d.last_diagnostics_at if d else None,
                    diagnostics=dict(d.last_diagnostics) if d and d.last_diagnostics else None,
                )
                for f, d in rows
            ]

    def desk_credentials(self, verb: str, faculty_id: int, admin: str) -> str:
        """Provision, rotate or revoke a desk unit's broker credentials (audited).

        Returns the text to show the administrator once: the desk's configuration
        including its password (provision/rotate), or a confirmation (revoke). When
        ``CONSULTEASE_BROKER_CONFIG_DIR`` names the directory written by
        ``consultease broker-config``, its password file and ACL are regenerated too.
        """
        import os
        from pathlib import Path

        from ..services import provisioning

        controller = self._controller("admin")
        action = {
            "provision": controller.provision_desk,
            "rotate": controller.rotate_desk,
            "revoke": controller.revoke_desk,
        }.get(verb)
        if action is None:
            raise KioskError(f"Unknown desk action: {verb}")
        try:
            creds = action(faculty_id, actor=f"admin:{admin}")
        except ValueError as err:
            raise _kiosk_error(err) from err
        settings = self.system.settings
        text = (
            creds.render(settings.mqtt_host, settings.mqtt_port)
            if creds is not None
            else f"Desk unit credentials of faculty {faculty_id} revoked."
        )
        config_dir = os.environ.get("CONSULTEASE_BROKER_CONFIG_DIR")
        if config_dir:
            try:
                with db.session_scope() as session:
                    provisioning.refresh_broker_files(session, Path(config_dir))
            except (ValueError, OSError) as err:
                return f"{text}\n\nThe broker files could not be refreshed: {err}"
            return (
                f"{text}\n\nBroker password file and ACL refreshed: reload (or restart) Mosquitto."
            )
        return f"{text}\n\nRegenerate the broker files (consultease broker-config) and reload Mosquitto."

    def list_consultations(self, limit: int = 200) -> list[ConsultationView]:
        """The newest consultations."""
        with db.session_scope() as session:
            rows = session.scalars(
                select(Consultation).order_by(Consultation.id.desc()).limit(limit)
            ).all()
            return [_consultation_view(c) for c in rows]

    def list_audit(self, limit: int = 200) -> list[AuditView]:
        """The newest audit-log entries."""
        return [
            AuditView(
                created_at=a.created_at,
                actor=a.actor,
                action=a.action,
                target=a.target,
                success=bool(a.success),
                details=str(a.details or "")[:200],
            )
            for a in self._controller("admin").list_audit(limit)
        ]

    def system_stats(self) -> dict[str, Any]:
        """MQTT connection state, backlog and counters."""
        mqtt = getattr(self.system, "mqtt", None)
        stats: dict[str, Any] = dict(mqtt.get_stats()) if mqtt is not None else {}
        stats.pop("backlog_policy", None)
        stats["database"] = str(
            getattr(self.system, "settings", None)
            and self.system.settings.effective_database_url.split("@")[-1]
        )
        stats["backend"] = f"in the kiosk process ({os.getpid()})"
        return stats

    def backup_available(self) -> bool:
        """True when the security layer's backup function exists."""
        try:
            return callable(getattr(self._controller("admin"), "backup_database", None))
        except Exception:
            return False

    def backup(self, admin: str) -> str:
        """Back the database up into the data directory; returns the file written."""
        if not self.backup_available():
            raise KioskError("Backup is not available in this installation.")
        settings = self.system.settings
        ext = "db" if settings.effective_database_url.startswith("sqlite") else "dump"
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = settings.data_dir / "backups" / f"consultease-{stamp}.{ext}"
        try:
            result = self._controller("admin").backup_database(str(dest), actor=f"admin:{admin}")
        except ValueError as err:
            raise _kiosk_error(err) from err
        return str(result)

    def analytics(self, days: int) -> dict[str, Any]:
        """Every analytics report (``controllers.Table``) for the last ``days`` days (1: today)."""
        start, end = _analytics_range(days)
        try:
            tables: dict[str, Any] = self._controller("analytics").summary(start, end)
        except ValueError as err:
            raise _kiosk_error(err) from err
        return tables

    def export_analytics(self, report: str, days: int, admin: str) -> str:
        """Write one report as CSV into the data directory; returns the file written (audited)."""
        start, end = _analytics_range(days)
        try:
            table = self._controller("analytics").report(report, start, end)
        except ValueError as err:
            raise _kiosk_error(err) from err
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = self.system.settings.data_dir / "exports" / f"{report}-{days}d-{stamp}.csv"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(table.to_csv(), encoding="utf-8")
        except OSError as err:
            raise KioskError(f"The CSV file could not be written: {err}") from err
        self._audit(admin, "analytics.export", report)
        return str(dest)

    def _audit(self, admin: str, action: str, target: str) -> None:
        """Record an admin action in the audit log (through the admin controller)."""
        self._controller("admin").audit(f"admin:{admin}", action, target, True)
