"""My consultations shows why the system closed a request (an imported old request, say)."""

from __future__ import annotations

from datetime import UTC, datetime

from central_system.api.schemas import ConsultationView
from central_system.views.student import ConsultationRow

NOTE = "Closed when the kiosk was upgraded: please send a new request."


def _view(note: str | None) -> ConsultationView:
    return ConsultationView(
        id=5, student_id=1, student_name="Ana", faculty_id=3, faculty_name="Dr. Cruz",
        message="Thesis", course_code=None, status="expired",
        created_at=datetime(2026, 11, 30, 8, 0, tzinfo=UTC), note=note,
    )  # fmt: skip


def test_the_closing_note_is_shown_under_the_request(qtbot) -> None:  # type: ignore[no-untyped-def]
    row = ConsultationRow(_view(NOTE))
    qtbot.addWidget(row)
    assert NOTE in row.when.text()
    row.set_view(_view(None))
    assert NOTE not in row.when.text() and row.when.text()
