"""Faculty members: CRUD, the plan's ``publish_faculty_status`` and presence from desk units.

Presence comes from ``consultease/faculty/{fid}/status``, the legacy
``faculty/{fid}/status`` and the oldest firmware's ``mac_status`` (contract 2.1).
Availability follows the desk's presence report only: answering a request does
not change it. The central system's own status publications (contract 1.4) are
never taken for a desk's report (No Local on the subscription, and ``source``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import topics
from ..models import Faculty, FacultyStatus, utcnow
from . import outbound, roster
from .base import ControllerBase, DbSource, FacultyEvent, Listeners, audit
from .schemas import (
    InboundStats,
    MacStatusPayload,
    PresencePayload,
    drop,
    drop_unknown_faculty,
    inbound_stats,
    parse_inbound,
)

if TYPE_CHECKING:
    from ..services.async_mqtt_service import AsyncMQTTService, MQTTMessage, PublishHandle
    from .liveness import LivenessService
    from .roster import ImportReport

logger = logging.getLogger(__name__)

MAX_NAME_CHARS: Final = 100
EMAIL_PATTERN: Final = re.compile(
    r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
)
_MAC_PATTERN: Final = re.compile(r"^[0-9A-F]{2}([:-]?[0-9A-F]{2}){5}$")
_UUID_PATTERN: Final = re.compile(
    r"^[0-9A-F]{8}-?[0-9A-F]{4}-?[0-9A-F]{4}-?[0-9A-F]{4}-?[0-9A-F]{12}$"
)


class FacultyError(ValueError):
    """A faculty operation was refused; ``str(err)`` is fit to show an administrator."""


class FacultyValidationError(FacultyError):
    """A field has a bad value."""


class DuplicateEmailError(FacultyError):
    """Another faculty member already has this email address."""


class FacultyNotFoundError(FacultyError):
    """No faculty member with that id."""


def validate_name(name: object) -> str:
    """A trimmed name of 1–100 characters."""
    if not isinstance(name, str) or not name.strip():
        raise FacultyValidationError("The name must not be empty.")
    cleaned = " ".join(name.split())
    if len(cleaned) > MAX_NAME_CHARS:
        raise FacultyValidationError(f"The name must be at most {MAX_NAME_CHARS} characters.")
    return cleaned


def validate_email(email: object) -> str | None:
    """A lower-cased email address, or None for none."""
    if email is None or (isinstance(email, str) and not email.strip()):
        return None
    if not isinstance(email, str):
        raise FacultyValidationError("The email address must be text.")
    value = email.strip().lower()
    if len(value) > 254 or not EMAIL_PATTERN.match(value):
        raise FacultyValidationError(f"{email.strip()[:60]!r} is not a valid email address.")
    return value


def validate_ble_id(ble_id: object) -> str | None:
    """A BLE MAC (``AA:BB:CC:DD:EE:FF``) or beacon UUID, upper-cased; None for none."""
    if ble_id is None or (isinstance(ble_id, str) and not ble_id.strip()):
        return None
    if not isinstance(ble_id, str):
        raise FacultyValidationError("The BLE id must be text.")
    value = ble_id.strip().upper()
    if _MAC_PATTERN.match(value):
        digits = re.sub(r"[:-]", "", value)
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    if _UUID_PATTERN.match(value):
        return value
    raise FacultyValidationError(
        "The BLE id must be a MAC address (AA:BB:CC:DD:EE:FF) or a beacon UUID."
    )


def validate_status(status: object) -> FacultyStatus:
    """One of available, busy, away, offline."""
    try:
        return FacultyStatus(str(status).strip().lower())
    except ValueError as err:
        raise FacultyValidationError(
            f"status must be one of {', '.join(s.value for s in FacultyStatus)}"
        ) from err


class FacultyController(ControllerBase):
    """Faculty CRUD, presence from desk units, and status publications."""

    def __init__(
        self,
        db: DbSource = None,
        mqtt: AsyncMQTTService | None = None,
        *,
        liveness: LivenessService | None = None,
        stats: InboundStats | None = None,
    ) -> None:
        super().__init__(db, mqtt)
        self.stats = stats or inbound_stats
        self._listeners: Listeners[FacultyEvent] = Listeners("faculty")
        if liveness is None:
            from .liveness import LivenessService

            liveness = LivenessService(db=db, mqtt=mqtt, stats=self.stats)
        if liveness.on_faculty_change is None:
            liveness.on_faculty_change = self._listeners.emit
        self.liveness = liveness
        self._unsubscribers: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Subscribe to presence reports (No Local: never our own status publications)."""
        if self._unsubscribers:
            return
        for topic_filter, handler in (
            (topics.FACULTY_STATUS_FILTER, self.on_status_message),
            (topics.LEGACY_FACULTY_STATUS_FILTER, self.on_status_message),
            (topics.FACULTY_MAC_STATUS_FILTER, self.on_mac_status_message),
        ):
            # A newer presence report replaces an older one still waiting (a reconnect storm).
            self._unsubscribers.append(
                self.mqtt.subscribe(topic_filter, handler, 1, no_local=True, coalesce=True)
            )

    def stop(self) -> None:
        """Remove the subscriptions."""
        while self._unsubscribers:
            self._unsubscribers.pop()()

    def add_listener(self, callback: Callable[[FacultyEvent], None]) -> Callable[[], None]:
        """Call ``callback(FacultyEvent)`` when a faculty member's status or desk liveness changes."""
        return self._listeners.add(callback)

    # ------------------------------------------------------------------ presence (contract 2.1)

    def on_status_message(self, message: MQTTMessage) -> None:
        """Subscription handler for the presence topics (current and legacy)."""
        parsed = parse_inbound(PresencePayload, message, self.stats)
        if parsed is None:
            return
        if parsed.source == "central":
            # Our own (or another kiosk's) contract 1.4 publication: never a desk's report.
            self.stats.count_ignore("central_publication")
            return
        presence = parsed.presence()
        if presence is None:
            drop(message, "invalid", "no usable status or present field", self.stats)
            return
        located = topics.parse_faculty_topic(message.topic)
        assert located is not None  # parse_inbound dropped anything else
        if not self.liveness.observe(
            located[0],
            retained=message.retain,
            presence=presence,
            # A last will (OFFLINE) was written at connect time: its uptime is old news.
            uptime_ms=None if presence == FacultyStatus.OFFLINE else parsed.uptime_ms(),
            presence_message=presence != FacultyStatus.OFFLINE,
            improved=parsed.improved(),
        ):
            drop_unknown_faculty(message, located[0], self.stats)

    def on_mac_status_message(self, message: MQTTMessage) -> None:
        """Subscription handler for the oldest firmware's ``mac_status``."""
        parsed = parse_inbound(MacStatusPayload, message, self.stats)
        if parsed is not None:
            self._observe(message, parsed.presence())

    def _observe(self, message: MQTTMessage, presence: FacultyStatus) -> None:
        located = topics.parse_faculty_topic(message.topic)
        assert located is not None  # parse_inbound dropped anything else
        if not self.liveness.observe(located[0], retained=message.retain, presence=presence):
            drop_unknown_faculty(message, located[0], self.stats)

    # ------------------------------------------------------------------ status publications

    def publish_faculty_status(self, faculty_id: int, status: str) -> PublishHandle:
        """Publish a faculty status (plan step 2.2, contract 1.4, ``source: "central"``)."""
        msg = outbound.faculty_status_message(int(faculty_id), validate_status(status).value)
        return self.mqtt.publish_async(msg.topic, msg.payload, msg.qos, msg.retain)

    def set_faculty_status(self, faculty_id: int, status: str) -> Faculty:
        """An administrator's override of the presence; published like ``publish_faculty_status``."""
        value = validate_status(status)
        if self.get_faculty(faculty_id) is None:
            raise FacultyNotFoundError(f"No faculty member with id {faculty_id}.")
        self.liveness.set_presence(int(faculty_id), value)
        self.publish_faculty_status(int(faculty_id), value.value)
        faculty = self.get_faculty(faculty_id)
        assert faculty is not None
        return faculty

    def set_manual_status(self, faculty_id: int, status: str | None, *, actor: str) -> Faculty:
        """A faculty member's hand-set "available" / "away" (None clears it). Audited.

        It is what the kiosk shows while the desk is offline (marked as set by hand);
        an online desk's own presence always wins (``Faculty.is_available``).
        """
        if status is not None and status not in (FacultyStatus.AVAILABLE, FacultyStatus.AWAY):
            raise FacultyValidationError("Choose available or away.")
        with self.session() as session:
            faculty = session.get(Faculty, int(faculty_id))
            if faculty is None:
                raise FacultyNotFoundError(f"No faculty member with id {faculty_id}.")
            previous = faculty.manual_status
            faculty.manual_status = status
            faculty.manual_status_at = utcnow()
            audit(
                session,
                actor,
                "faculty.manual_status",
                f"faculty:{faculty.id}",
                success=True,
                details={"from": previous, "to": status, "desk_online": bool(faculty.desk_online)},
            )
            session.flush()
            session.expunge(faculty)
        self._listeners.emit(
            FacultyEvent(
                faculty_id=faculty.id,
                status=str(status or faculty.status),
                desk_online=bool(faculty.desk_online),
                previous_status=previous,
                previous_desk_online=bool(faculty.desk_online),
                at=utcnow(),
            )
        )
        return faculty

    # ------------------------------------------------------------------ CRUD

    def create_faculty(
        self,
        name: str,
        department: str = "",
        email: str | None = None,
        ble_id: str | None = None,
    ) -> Faculty:
        """Add a faculty member (shown offline until their desk reports)."""
        faculty = Faculty(
            name=validate_name(name),
            department=self._department(department),
            email=validate_email(email),
            ble_id=validate_ble_id(ble_id),
            status=FacultyStatus.OFFLINE.value,
            desk_online=False,
            created_at=utcnow(),
        )
        try:
            with self.session() as session:
                self._check_unique_email(session, faculty.email, None)
                session.add(faculty)
        except IntegrityError as err:
            raise DuplicateEmailError(f"{faculty.email} is already used.") from err
        self.liveness.forget(faculty.id)
        logger.info("faculty %d created", faculty.id)
        return faculty

    def update_faculty(self, faculty_id: int, **fields: Any) -> Faculty:
        """Change name, department, email or ble_id."""
        allowed = {"name", "department", "email", "ble_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise FacultyValidationError(f"cannot update {', '.join(sorted(unknown))}")
        try:
            with self.session() as session:
                faculty = session.get(Faculty, int(faculty_id))
                if faculty is None:
                    raise FacultyNotFoundError(f"No faculty member with id {faculty_id}.")
                if "name" in fields:
                    faculty.name = validate_name(fields["name"])
                if "department" in fields:
                    faculty.department = self._department(fields["department"])
                if "email" in fields:
                    email = validate_email(fields["email"])
                    self._check_unique_email(session, email, faculty.id)
                    faculty.email = email
                if "ble_id" in fields:
                    faculty.ble_id = validate_ble_id(fields["ble_id"])
        except IntegrityError as err:
            raise DuplicateEmailError("That email address is already used.") from err
        return faculty

    def delete_faculty(self, faculty_id: int) -> bool:
        """Delete a faculty member (and their consultations); False when there was none."""
        with self.session() as session:
            faculty = session.get(Faculty, int(faculty_id))
            if faculty is None:
                return False
            session.delete(faculty)
        self.liveness.forget(int(faculty_id))
        return True

    def get_faculty(self, faculty_id: int) -> Faculty | None:
        """The faculty member, or None."""
        try:
            fid = int(faculty_id)
        except (TypeError, ValueError):
            return None
        with self.session() as session:
            return session.get(Faculty, fid)

    def list_faculty(self, available_only: bool = False) -> list[Faculty]:
        """Every faculty member by name (only those students can ask now, if ``available_only``)."""
        stmt = select(Faculty).order_by(Faculty.name, Faculty.id)
        if available_only:
            # The same rule as Faculty.is_available: an online desk's presence, else the
            # availability set by hand in the web dashboard.
            available = FacultyStatus.AVAILABLE.value
            stmt = stmt.where(
                or_(
                    and_(Faculty.desk_online.is_(True), Faculty.status == available),
                    and_(Faculty.desk_online.is_(False), Faculty.manual_status == available),
                )
            )
        with self.session() as session:
            return list(session.scalars(stmt))

    get_all_faculty = list_faculty

    # ------------------------------------------------------------------ CSV (roster.py)

    def import_csv(
        self, data: bytes, *, commit: bool = False, actor: str = "system"
    ) -> ImportReport:
        """Preview (default) or commit a CSV import of faculty; see :mod:`.roster`."""
        report = roster.import_rows(
            self.session, "faculty", data, _check_roster_rows, commit=commit, actor=actor
        )
        for fid in report.created_ids:
            self.liveness.forget(fid)
        return report

    def export_csv(self) -> str:
        """Every record as CSV with the import's header."""
        return roster.export_rows(self.session, "faculty")

    @staticmethod
    def _department(department: object) -> str:
        if department is None:
            return ""
        if not isinstance(department, str) or len(department.strip()) > 100:
            raise FacultyValidationError("The department must be text of at most 100 characters.")
        return " ".join(department.split())

    @staticmethod
    def _check_unique_email(session: Any, email: str | None, own_id: int | None) -> None:
        if email is None:
            return
        other = session.scalar(select(Faculty.id).where(Faculty.email == email))
        if other is not None and other != own_id:
            raise DuplicateEmailError(f"{email} is already used by another faculty member.")


def _check_roster_rows(
    session: Session, rows: list[roster.Row], report: roster.ImportReport
) -> list[tuple[Faculty | None, dict[str, object]]]:
    """The CSV import's row check (:func:`.roster.import_rows`), with this module's validators."""
    by_email = {f.email: f for f in session.scalars(select(Faculty)) if f.email}
    seen: dict[str, int] = {}
    plan: list[tuple[Faculty | None, dict[str, object]]] = []
    for row in rows:
        v = row.values
        try:
            email = validate_email(v.get("email", ""))
            if email is None:
                raise FacultyError("The email address is required (it identifies the row).")
            clean: dict[str, object] = {
                "name": validate_name(v.get("name", "")),
                "email": email,
                "department": FacultyController._department(v.get("department", "")),
                "ble_id": validate_ble_id(v.get("ble_id", "")),
            }
        except FacultyError as err:
            report.bad_rows.append(roster.BadRow(row.line, str(err)))
            continue
        if email in seen:
            report.bad_rows.append(
                roster.BadRow(row.line, f"{email} is also on line {seen[email]}")
            )
            continue
        seen[email] = row.line
        plan.append((by_email.get(email), clean))
    return plan
