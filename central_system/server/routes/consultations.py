"""Consultations: a card holder's requests (create, read, cancel) and the administrator's list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from ...api.schemas import ConsultationCreate, ConsultationView, QueueView
from ..deps import (
    CARD_CALL_RESPONSES,
    BackendDep,
    CardCallDep,
    CardStudent,
    CurrentAdmin,
    OwnConsultation,
)

router = APIRouter(prefix="/consultations", tags=["consultations"])


@router.post(
    "",
    response_model=ConsultationView,
    status_code=status.HTTP_201_CREATED,
    responses=CARD_CALL_RESPONSES,
)
async def create_consultation(body: ConsultationCreate, call: CardCallDep) -> Response:
    """Send the card holder's request to a faculty member's desk (400 with the reason if refused)."""
    return await call.runner.send_request(call, body)


@router.get(
    "/{consultation_id:int}/queue",
    response_model=QueueView | None,
    responses=CARD_CALL_RESPONSES,
)
def queue_position(consultation: OwnConsultation, backend: BackendDep) -> QueueView | None:
    """Where one of the card holder's requests stands in its queue (null: not pending)."""
    return backend.queue_position(consultation.id)


@router.get(
    "/{consultation_id:int}", response_model=ConsultationView, responses=CARD_CALL_RESPONSES
)
def get_consultation(consultation: OwnConsultation) -> ConsultationView:
    """One of the card holder's consultations (404 for anyone else's, audited)."""
    return consultation


@router.post(
    "/{consultation_id:int}/cancel",
    response_model=ConsultationView,
    responses=CARD_CALL_RESPONSES,
)
def cancel_consultation(
    consultation: OwnConsultation, student: CardStudent, backend: BackendDep
) -> ConsultationView:
    """Cancel one of the card holder's pending requests."""
    view = backend.cancel(consultation.id, student.id)
    return view if view is not None else consultation


@router.get("", response_model=list[ConsultationView])
def list_consultations(
    admin: CurrentAdmin, backend: BackendDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[ConsultationView]:
    """The newest consultations (administrators)."""
    return backend.list_consultations(limit)
