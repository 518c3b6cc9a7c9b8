"""The student aggregate."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class Student(Base):
    """A student, identified at the kiosk by the RFID card's UID."""

    __tablename__ = "students"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    student_id: Mapped[str] = mapped_column(
        String(32), unique=True
    )  # the number printed on the card
    department: Mapped[str] = mapped_column(String(100), default="")
    rfid_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Student(id={self.id!r}, student_id={self.student_id!r})"
