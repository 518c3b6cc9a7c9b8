"""Students: the card holder at a kiosk (``/students/me``) and the administrator's list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from ...api.schemas import MAX_ID, ConsultationView, QueueView, StudentIn, StudentView
from ..deps import (
    CARD_CALL_RESPONSES,
    BackendDep,
    CardCallDep,
    CardStudent,
    CurrentAdmin,
    CurrentKiosk,
)

router = APIRouter(prefix="/students", tags=["students"])


@router.get("/me", response_model=StudentView, responses=CARD_CALL_RESPONSES)
async def me(call: CardCallDep) -> Response:
    """The student whose card was just tapped at this kiosk (404: unknown card)."""
    return await call.runner.card_holder(call)


@router.get(
    "/me/consultations", response_model=list[ConsultationView], responses=CARD_CALL_RESPONSES
)
async def my_consultations(
    call: CardCallDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """The card holder's consultations, newest first."""
    return await call.runner.my_consultations(call, limit)


@router.get("/me/queue", response_model=dict[int, QueueView], responses=CARD_CALL_RESPONSES)
def my_queue(
    kiosk: CurrentKiosk, student: CardStudent, backend: BackendDep
) -> dict[int, QueueView]:
    """Where each of the card holder's pending requests stands, by consultation id."""
    return backend.queue_positions(student.id)


@router.get("", response_model=list[StudentView])
def list_students(admin: CurrentAdmin, backend: BackendDep) -> list[StudentView]:
    """Every student, by name."""
    return backend.list_students()


@router.post("", response_model=StudentView, status_code=status.HTTP_201_CREATED)
def register_student(body: StudentIn, admin: CurrentAdmin, backend: BackendDep) -> StudentView:
    """Register a student with the card tapped at the kiosk (409: card or number in use)."""
    return backend.register_student(
        body.name, body.student_id, body.department, body.rfid_uid, admin.username
    )


@router.delete("/{student_pk:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_student(
    student_pk: Annotated[int, Path(ge=1, le=MAX_ID)], admin: CurrentAdmin, backend: BackendDep
) -> None:
    """Delete a student and their consultations."""
    backend.delete_student(student_pk, admin.username)
