"""Students: CRUD and lookup by the RFID card's UID."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import Student, utcnow
from . import roster
from .base import ControllerBase, DbSource

if TYPE_CHECKING:
    from ..services.async_mqtt_service import AsyncMQTTService
    from .roster import ImportReport

logger = logging.getLogger(__name__)

MAX_NAME_CHARS: Final = 100
_UID_PATTERN: Final = re.compile(r"^[0-9A-F]{4,64}$")
_STUDENT_NUMBER_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
_UID_SEPARATORS: Final = re.compile(r"[\s:-]")


class StudentError(ValueError):
    """A student operation was refused; ``str(err)`` is fit to show."""


class StudentValidationError(StudentError):
    """A field has a bad value."""


class DuplicateRfidError(StudentError):
    """Another student already has this card."""


class DuplicateStudentNumberError(StudentError):
    """Another student already has this student number."""


class StudentNotFoundError(StudentError):
    """No student with that id."""


def normalize_rfid_uid(uid: object) -> str:
    """A card UID as upper-case hex without separators (``04:a1:b2`` -> ``04A1B2``)."""
    if not isinstance(uid, str):
        raise StudentValidationError("The card UID must be text.")
    value = _UID_SEPARATORS.sub("", uid.strip()).upper()
    if value.startswith("0X"):
        value = value[2:]
    if not _UID_PATTERN.match(value):
        raise StudentValidationError("The card UID must be 4–64 hexadecimal digits.")
    return value


def validate_student_number(number: object) -> str:
    """The number printed on the card: letters, digits and dashes, at most 32."""
    if not isinstance(number, str) or not _STUDENT_NUMBER_PATTERN.match(number.strip()):
        raise StudentValidationError("The student number must be 1–32 letters, digits or dashes.")
    return number.strip()


def validate_student_name(name: object) -> str:
    """A trimmed name of 1–100 characters."""
    if not isinstance(name, str) or not name.strip():
        raise StudentValidationError("The name must not be empty.")
    cleaned = " ".join(name.split())
    if len(cleaned) > MAX_NAME_CHARS:
        raise StudentValidationError(f"The name must be at most {MAX_NAME_CHARS} characters.")
    return cleaned


def _department(department: object) -> str:
    if department is None:
        return ""
    if not isinstance(department, str) or len(department.strip()) > 100:
        raise StudentValidationError("The department must be text of at most 100 characters.")
    return " ".join(department.split())


class StudentController(ControllerBase):
    """Student accounts and RFID lookup."""

    def __init__(self, db: DbSource = None, mqtt: AsyncMQTTService | None = None) -> None:
        super().__init__(db, mqtt)

    def create_student(
        self, name: str, student_id: str, rfid_uid: str, department: str = ""
    ) -> Student:
        """Add a student; the card UID and student number must be unused."""
        student = Student(
            name=validate_student_name(name),
            student_id=validate_student_number(student_id),
            rfid_uid=normalize_rfid_uid(rfid_uid),
            department=_department(department),
            created_at=utcnow(),
        )
        try:
            with self.session() as session:
                self._check_unique(session, student.student_id, student.rfid_uid, None)
                session.add(student)
        except IntegrityError as err:
            raise StudentError("That student number or card is already registered.") from err
        logger.info("student %d created", student.id)
        return student

    def update_student(self, student_pk: int, **fields: Any) -> Student:
        """Change name, student_id (number), rfid_uid or department."""
        unknown = set(fields) - {"name", "student_id", "rfid_uid", "department"}
        if unknown:
            raise StudentValidationError(f"cannot update {', '.join(sorted(unknown))}")
        try:
            with self.session() as session:
                student = session.get(Student, int(student_pk))
                if student is None:
                    raise StudentNotFoundError(f"No student with id {student_pk}.")
                number = (
                    validate_student_number(fields["student_id"])
                    if "student_id" in fields
                    else None
                )
                uid = normalize_rfid_uid(fields["rfid_uid"]) if "rfid_uid" in fields else None
                self._check_unique(session, number, uid, student.id)
                if "name" in fields:
                    student.name = validate_student_name(fields["name"])
                if number is not None:
                    student.student_id = number
                if uid is not None:
                    student.rfid_uid = uid
                if "department" in fields:
                    student.department = _department(fields["department"])
        except IntegrityError as err:
            raise StudentError("That student number or card is already registered.") from err
        return student

    def delete_student(self, student_pk: int) -> bool:
        """Delete a student (and their consultations); False when there was none."""
        with self.session() as session:
            student = session.get(Student, int(student_pk))
            if student is None:
                return False
            session.delete(student)
        return True

    def get_student(self, student_pk: int) -> Student | None:
        """The student with this database id, or None."""
        try:
            pk = int(student_pk)
        except (TypeError, ValueError):
            return None
        with self.session() as session:
            return session.get(Student, pk)

    def get_by_rfid(self, uid: str) -> Student | None:
        """The student holding the card ``uid`` (any case and separators), or None."""
        try:
            value = normalize_rfid_uid(uid)
        except StudentValidationError:
            return None
        with self.session() as session:
            return session.scalar(select(Student).where(Student.rfid_uid == value))

    # The plan's older name.
    get_student_by_rfid = get_by_rfid

    def get_by_student_number(self, number: str) -> Student | None:
        """The student whose card shows ``number``, or None."""
        with self.session() as session:
            return session.scalar(select(Student).where(Student.student_id == str(number).strip()))

    def list_students(self) -> list[Student]:
        """Every student by name."""
        with self.session() as session:
            return list(session.scalars(select(Student).order_by(Student.name, Student.id)))

    get_all_students = list_students

    # ------------------------------------------------------------------ CSV (roster.py)

    def import_csv(
        self, data: bytes, *, commit: bool = False, actor: str = "system"
    ) -> ImportReport:
        """Preview (default) or commit a CSV import of students; see :mod:`.roster`."""
        report = roster.import_rows(
            self.session, "students", data, _check_roster_rows, commit=commit, actor=actor
        )
        return report

    def export_csv(self) -> str:
        """Every record as CSV with the import's header."""
        return roster.export_rows(self.session, "students")

    @staticmethod
    def _check_unique(
        session: Session, number: str | None, uid: str | None, own_id: int | None
    ) -> None:
        if number is not None:
            other = session.scalar(select(Student.id).where(Student.student_id == number))
            if other is not None and other != own_id:
                raise DuplicateStudentNumberError(f"Student number {number} is already registered.")
        if uid is not None:
            other = session.scalar(select(Student.id).where(Student.rfid_uid == uid))
            if other is not None and other != own_id:
                raise DuplicateRfidError("This card is already registered to another student.")


def _check_roster_rows(
    session: Session, rows: list[roster.Row], report: roster.ImportReport
) -> list[tuple[Student | None, dict[str, object]]]:
    """The CSV import's row check (:func:`.roster.import_rows`), with this module's validators."""
    existing = list(session.scalars(select(Student)))
    by_uid = {s.rfid_uid: s for s in existing}
    by_number = {s.student_id: s for s in existing}
    seen_uid: dict[str, int] = {}
    seen_number: dict[str, int] = {}
    plan: list[tuple[Student | None, dict[str, object]]] = []
    for row in rows:
        v = row.values
        try:
            clean: dict[str, object] = {
                "name": validate_student_name(v.get("name", "")),
                "student_id": validate_student_number(v.get("student_number", "")),
                "rfid_uid": normalize_rfid_uid(v.get("card_uid", "")),
                "department": _department(v.get("department", "")),
            }
        except StudentError as err:
            report.bad_rows.append(roster.BadRow(row.line, str(err)))
            continue
        uid, number = str(clean["rfid_uid"]), str(clean["student_id"])
        if uid in seen_uid:
            report.bad_rows.append(
                roster.BadRow(row.line, f"card UID {uid} is also on line {seen_uid[uid]}")
            )
            continue
        if number in seen_number:
            report.bad_rows.append(
                roster.BadRow(
                    row.line, f"student number {number} is also on line {seen_number[number]}"
                )
            )
            continue
        seen_uid[uid], seen_number[number] = row.line, row.line
        target = by_uid.get(uid)
        holder = by_number.get(number)
        if holder is not None and holder is not target:
            report.bad_rows.append(
                roster.BadRow(
                    row.line,
                    f"student number {number} is already registered to another card "
                    f"({holder.rfid_uid})",
                )
            )
            continue
        plan.append((target, clean))
    return plan
