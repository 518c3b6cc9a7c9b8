"""The API's schemas: what the server validates and answers, the kiosk parses, tests import.

One schema, three uses (docs/api.md). Answers are frozen models read from the
controllers' rows (``from_attributes``); requests forbid unknown fields and NUL
characters (PostgreSQL cannot store them) and bound every length and id, so bad
input is a 422 before it reaches a controller.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, computed_field

# Database ids are 32-bit on both databases: a larger number cannot name a row.
MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# No NUL and no other C0 control except tab and newlines (PostgreSQL refuses NUL in text).
_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"


Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_TEXT)]
OptionalText100 = Annotated[str, StringConstraints(max_length=100, pattern=_TEXT)]
Email = Annotated[str, StringConstraints(max_length=254, pattern=_TEXT)]
StudentNumber = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=_TEXT)]
Message = Annotated[str, StringConstraints(max_length=2000, pattern=_TEXT)]
CourseCode = Annotated[str, StringConstraints(max_length=32, pattern=_TEXT)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_TEXT)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_TEXT)]


CardUid = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[0-9A-Fa-f:\- ]+$")
]


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


# ---------------------------------------------------------------------------- answers


class FacultyView(_Answer):
    """What a faculty card shows."""

    id: int
    name: str
    department: str
    email: str | None
    status: str  # available / busy / away / offline
    desk_online: bool
    # Set by hand in the web dashboard while the desk is offline ("available" / "away");
    # never shown over an online desk's own presence.
    manual_status: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def availability(self) -> str:
        """The label the kiosk shows: available, busy, away or desk offline."""
        if not self.desk_online and self.manual_status:
            return f"{self.manual_status} (set by hand)"
        if not self.desk_online or self.status == "offline":
            return "desk offline"
        return self.status

    @computed_field  # type: ignore[prop-decorator]
    @property
    def can_request(self) -> bool:
        """A request may be sent now (contract 3: the firmware drops requests while away)."""
        if not self.desk_online:
            return self.manual_status == "available"
        return self.status == "available"


class StudentView(_Answer):
    """A logged-in or listed student."""

    id: int
    name: str
    student_id: str
    department: str
    rfid_uid: str


class ConsultationView(_Answer):
    """One consultation row."""

    id: int
    student_id: int
    student_name: str
    faculty_id: int
    faculty_name: str
    message: str
    course_code: str | None
    status: str
    created_at: datetime | None
    note: str | None = None  # why the system closed it (e.g. an old request closed by an import)


class QueueView(_Answer):
    """Where a pending request stands in its faculty member's queue (issue 12)."""

    consultation_id: int
    faculty_id: int
    position: int  # 1: next
    waiting: int
    expected_wait_s: float | None  # None: too little history to estimate
    history: int
    expires_at: datetime | None

    def describe(self, faculty_name: str) -> str:
        """What the student reads: position, then the expected wait or why there is none."""
        head = f"You are number {self.position} in {faculty_name}'s queue."
        if self.expected_wait_s is None:
            return f"{head} Not enough answers yet to estimate the wait."
        minutes = max(1, round(self.expected_wait_s / 60))
        unit = "minute" if minutes == 1 else "minutes"
        return f"{head} Expected wait: about {minutes} {unit}."


class DeskView(_Answer):
    """A faculty member's desk unit as the admin sees it."""

    faculty_id: int
    faculty_name: str
    online: bool
    status: str
    last_seen: datetime | None
    last_heartbeat_at: datetime | None
    heartbeat: dict[str, Any] | None
    diagnostics_at: datetime | None
    diagnostics: dict[str, Any] | None


class AuditView(_Answer):
    """One audit-log entry."""

    created_at: datetime | None
    actor: str
    action: str
    target: str | None
    success: bool
    details: str


class AdminSession(_Answer):
    """An authenticated administrator; ``token`` (the API session) only in the login answer."""

    id: int | None
    username: str
    must_change_password: bool = False
    token: str | None = Field(default=None, repr=False)
    expires_at: datetime | None = None


class AnalyticsTable(_Answer):
    """One analytics report: named columns and rows of plain values (issue 12)."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class AdminExists(_Answer):
    """Whether any administrator account exists."""

    exists: bool


class TextAnswer(_Answer):
    """A message to show the administrator once (desk credentials, a backup's file)."""

    text: str


class Health(_Answer):
    """``GET /healthz``: this server's role, its MQTT connection and its database."""

    role: Literal["active", "standby", "starting", "stopping"]
    mqtt: str
    database: Literal["ok", "error"]
    server_id: str
    version: str


class ErrorAnswer(_Answer):
    """Every error answer: a stable ``error`` code and a ``detail`` fit to show."""

    error: str
    detail: str
    errors: list[dict[str, Any]] | None = None


# ---------------------------------------------------------------------------- requests


class ConsultationCreate(_Request):
    """A student's request to a faculty member (the student is the card tapped: ``X-Card-UID``)."""

    faculty_id: Id
    message: Message
    course_code: CourseCode | None = None


class FacultyIn(_Request):
    """A faculty member's editable fields."""

    name: Name
    department: OptionalText100 = ""
    email: Email | None = None


class StudentIn(_Request):
    """A new student with the card tapped at the kiosk."""

    name: Name
    student_id: StudentNumber
    department: OptionalText100 = ""
    rfid_uid: CardUid


class AdminLogin(_Request):
    """An administrator's credentials."""

    username: Username
    password: Password


class PasswordChange(_Request):
    """Replace the signed-in administrator's password."""

    current_password: Password
    new_password: Password


DeskAction = Literal["provision", "rotate", "revoke"]

# ---------------------------------------------------------------------------- events

EventKind = Literal["consultation", "faculty", "mqtt_state", "overflow"]


class Event(_Answer):
    """One item of the event stream (``GET /api/v1/events``, server-sent events).

    ``consultation``: ``id``, ``status``, ``faculty_id``; ``faculty``: ``id``;
    ``mqtt_state``: ``state``; ``overflow``: the client fell behind and is disconnected.
    """

    kind: EventKind
    id: int | None = None
    status: str | None = None
    faculty_id: int | None = None
    state: str | None = None
