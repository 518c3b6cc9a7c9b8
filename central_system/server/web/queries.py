"""What the pages read: a faculty member's queue and history, filtered and paginated lists.

Reads only; every change goes through a controller. Lists are keyset- or
offset-paginated with a hard page size so a page never loads a whole table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, joinedload

from ...models import AuditLog, Consultation, Faculty, KioskToken, Student, utcnow

PAGE_SIZE: Final = 50


@dataclass(frozen=True, slots=True)
class Row:
    """One consultation as a page shows it."""

    id: int
    student_name: str
    student_number: str
    faculty_id: int
    faculty_name: str
    course_code: str | None
    message: str
    status: str
    created_at: datetime
    waited_s: float
    answered_at: datetime | None


def _row(c: Consultation, now: datetime) -> Row:
    return Row(
        c.id,
        c.student.name if c.student else "",
        c.student.student_id if c.student else "",
        c.faculty_id,
        c.faculty.name if c.faculty else "",
        c.course_code,
        c.message,
        str(c.status),
        c.created_at,
        max(0.0, ((c.answered_at or now) - c.created_at).total_seconds()),
        c.answered_at,
    )


def faculty_queue(s: Session, faculty_id: int) -> tuple[list[Row], list[Row]]:
    """(pending oldest first, accepted and not yet completed newest first)."""
    now = utcnow()
    pending = s.scalars(
        select(Consultation)
        .where(Consultation.faculty_id == faculty_id, Consultation.status == "pending")
        .order_by(Consultation.created_at, Consultation.id)
        .limit(200)
    ).unique()
    accepted = s.scalars(
        select(Consultation)
        .where(Consultation.faculty_id == faculty_id, Consultation.status == "accepted")
        .order_by(Consultation.accepted_at.desc(), Consultation.id.desc())
        .limit(50)
    ).unique()
    return [_row(c, now) for c in pending], [_row(c, now) for c in accepted]


def faculty_history(s: Session, faculty_id: int, page: int) -> tuple[list[Row], bool]:
    """A faculty member's consultations, newest first, one page (and whether more follow)."""
    rows = list(
        s.scalars(
            select(Consultation)
            .where(Consultation.faculty_id == faculty_id)
            .order_by(Consultation.created_at.desc(), Consultation.id.desc())
            .offset(page * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        ).unique()
    )
    now = utcnow()
    return [_row(c, now) for c in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE


def consultation(s: Session, consultation_id: int) -> Row | None:
    """One consultation, or None."""
    c = s.get(Consultation, consultation_id)
    return None if c is None else _row(c, utcnow())


def consultations(
    s: Session,
    *,
    status: str | None,
    faculty_id: int | None,
    search: str | None,
    before_id: int | None,
) -> tuple[list[Row], int | None]:
    """Newest first, filtered; keyset-paginated by id (the next page's ``before_id``)."""
    stmt: Select[Any] = select(Consultation).options(
        joinedload(Consultation.student), joinedload(Consultation.faculty)
    )
    if status:
        stmt = stmt.where(Consultation.status == status)
    if faculty_id:
        stmt = stmt.where(Consultation.faculty_id == faculty_id)
    if search:
        like = f"%{_escape_like(search)}%"
        stmt = stmt.join(Student, Student.id == Consultation.student_id).where(
            or_(
                Student.name.ilike(like, escape="\\"),
                Student.student_id.ilike(like, escape="\\"),
                Consultation.course_code.ilike(like, escape="\\"),
            )
        )
    if before_id:
        stmt = stmt.where(Consultation.id < before_id)
    rows = list(s.scalars(stmt.order_by(Consultation.id.desc()).limit(PAGE_SIZE + 1)).unique())
    now = utcnow()
    page = [_row(c, now) for c in rows[:PAGE_SIZE]]
    return page, (page[-1].id if len(rows) > PAGE_SIZE and page else None)


def audit_entries(
    s: Session, search: str | None, before_id: int | None
) -> tuple[list[AuditLog], int | None]:
    """Audit rows newest first, optionally matching ``search`` in actor, action or target."""
    stmt = select(AuditLog)
    if search:
        like = f"%{_escape_like(search)}%"
        stmt = stmt.where(
            or_(
                AuditLog.actor.ilike(like, escape="\\"),
                AuditLog.action.ilike(like, escape="\\"),
                AuditLog.target.ilike(like, escape="\\"),
            )
        )
    if before_id:
        stmt = stmt.where(AuditLog.id < before_id)
    rows = list(s.scalars(stmt.order_by(AuditLog.id.desc()).limit(PAGE_SIZE + 1)))
    page = rows[:PAGE_SIZE]
    for r in page:
        s.expunge(r)
    return page, (page[-1].id if len(rows) > PAGE_SIZE and page else None)


def faculty_list(s: Session) -> list[Faculty]:
    """Every faculty member by name."""
    rows = list(s.scalars(select(Faculty).order_by(Faculty.name)))
    for r in rows:
        s.expunge(r)
    return rows


def student_list(s: Session, search: str | None, page: int) -> tuple[list[Student], bool]:
    """Students by name, optionally matching ``search``, one page."""
    stmt = select(Student)
    if search:
        like = f"%{_escape_like(search)}%"
        stmt = stmt.where(
            or_(Student.name.ilike(like, escape="\\"), Student.student_id.ilike(like, escape="\\"))
        )
    rows = list(
        s.scalars(
            stmt.order_by(Student.name, Student.id).offset(page * PAGE_SIZE).limit(PAGE_SIZE + 1)
        )
    )
    for r in rows:
        s.expunge(r)
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def kiosks(s: Session) -> list[KioskToken]:
    """Every kiosk ever enrolled."""
    rows = list(s.scalars(select(KioskToken).order_by(KioskToken.name)))
    for r in rows:
        s.expunge(r)
    return rows


def counts(s: Session) -> dict[str, int]:
    """How many of each there are (the overview)."""
    return {
        "faculty": int(s.scalar(select(func.count()).select_from(Faculty)) or 0),
        "students": int(s.scalar(select(func.count()).select_from(Student)) or 0),
        "pending": int(
            s.scalar(
                select(func.count())
                .select_from(Consultation)
                .where(Consultation.status == "pending")
            )
            or 0
        ),
        "desks_online": int(
            s.scalar(select(func.count()).select_from(Faculty).where(Faculty.desk_online.is_(True)))
            or 0
        ),
    }


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")[:100]
