"""The consultation aggregate: one student's request to one faculty member."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow
from .faculty import Faculty
from .student import Student


class ConsultationStatus(StrEnum):
    """The life of a request."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    BUSY = "busy"
    DECLINED = "declined"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    # Nobody answered in time (settings ``consultation_expire_after_s`` / ``consultation_day_end``).
    EXPIRED = "expired"


# Which state may follow which (contract 2.2: anything else is rejected).
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    ConsultationStatus.PENDING: frozenset(
        {
            ConsultationStatus.ACCEPTED,
            ConsultationStatus.BUSY,
            ConsultationStatus.DECLINED,
            ConsultationStatus.CANCELLED,
            ConsultationStatus.EXPIRED,
        }
    ),
    ConsultationStatus.ACCEPTED: frozenset({ConsultationStatus.COMPLETED}),
    ConsultationStatus.BUSY: frozenset(),
    ConsultationStatus.DECLINED: frozenset(),
    ConsultationStatus.COMPLETED: frozenset(),
    ConsultationStatus.CANCELLED: frozenset(),
    ConsultationStatus.EXPIRED: frozenset(),
}

# A desk's first answer to a pending request: the end of its time in the queue.
ANSWER_STATUSES: frozenset[str] = frozenset(
    {ConsultationStatus.ACCEPTED, ConsultationStatus.BUSY, ConsultationStatus.DECLINED}
)


class Consultation(Base):
    """A consultation request and the time of each transition."""

    __tablename__ = "consultations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'accepted', 'busy', 'declined', 'completed', 'cancelled',"
            " 'expired')",
            name="status_valid",
        ),
        Index("ix_consultations_faculty_status", "faculty_id", "status"),
        Index("ix_consultations_student", "student_id"),
        # Queue positions, waiting counts and the expiry sweep read only pending rows:
        # with status first they are one contiguous slice of the index.
        Index("ix_consultations_status_faculty_created", "status", "faculty_id", "created_at"),
        # The wait estimate reads a faculty member's latest answers.
        Index("ix_consultations_faculty_answered", "faculty_id", "answered_at"),
        # Analytics over a date range; on PostgreSQL the included columns make the
        # scans index-only (docs/analytics.md).
        Index(
            "ix_consultations_created",
            "created_at",
            postgresql_include=["faculty_id", "status", "answer_s"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"))
    faculty_id: Mapped[int] = mapped_column(ForeignKey("faculty.id", ondelete="CASCADE"))
    message: Mapped[str] = mapped_column(Text)
    course_code: Mapped[str | None] = mapped_column(String(16), default=None)
    status: Mapped[str] = mapped_column(String(16), default=ConsultationStatus.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(default=None)
    busy_at: Mapped[datetime | None] = mapped_column(default=None)
    declined_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    expired_at: Mapped[datetime | None] = mapped_column(default=None)
    # The desk's first answer (accepted, busy or declined) and the seconds it took since
    # the request was made: the queue's history (wait estimates) and the analytics.
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    answer_s: Mapped[float | None] = mapped_column(Float, default=None)
    last_sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # Why the system (not a person) closed the request, shown to the student; e.g. an old
    # pending request closed by the import from the original ConsultEase.
    status_note: Mapped[str | None] = mapped_column(String(200), default=None)

    student: Mapped[Student] = relationship(lazy="joined")
    faculty: Mapped[Faculty] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"Consultation(id={self.id!r}, status={self.status!r})"
