"""Desk units: liveness and diagnostics, and their broker credentials."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ...api.schemas import MAX_ID, DeskAction, DeskView, TextAnswer
from ..deps import BackendDep, CurrentAdmin

router = APIRouter(prefix="/desks", tags=["desks"])


@router.get("", response_model=list[DeskView])
def list_desks(admin: CurrentAdmin, backend: BackendDep) -> list[DeskView]:
    """Every faculty member's desk: online, last heartbeat, diagnostics."""
    return backend.list_desks()


@router.post("/{faculty_id}/{action}", response_model=TextAnswer)
def desk_credentials(
    faculty_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    action: DeskAction,
    admin: CurrentAdmin,
    backend: BackendDep,
) -> TextAnswer:
    """Provision, rotate or revoke a desk's broker credentials; the text is shown once. Audited."""
    return TextAnswer(text=backend.desk_credentials(action, faculty_id, admin.username))
