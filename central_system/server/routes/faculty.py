"""Faculty members: the kiosk's list, the administrator's edits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from ...api.errors import NotFoundError
from ...api.schemas import MAX_ID, FacultyIn, FacultyView
from ..deps import BackendDep, CallerCallDep, CurrentAdmin, CurrentCaller

router = APIRouter(prefix="/faculty", tags=["faculty"])
FacultyId = Annotated[int, Path(ge=1, le=MAX_ID, description="A faculty member's id")]


@router.get("", response_model=list[FacultyView])
async def list_faculty(call: CallerCallDep) -> Response:
    """Every faculty member with their status and desk liveness, by name."""
    return await call.runner.faculty_list(call)


@router.get("/waiting", response_model=dict[int, int])
async def waiting_counts(call: CallerCallDep) -> Response:
    """Pending requests per faculty member id (the count on each faculty card)."""
    return await call.runner.waiting_counts(call)


@router.get("/{faculty_id:int}", response_model=FacultyView)
def get_faculty(faculty_id: FacultyId, caller: CurrentCaller, backend: BackendDep) -> FacultyView:
    """One faculty member."""
    view = backend.get_faculty(faculty_id)
    if view is None:
        raise NotFoundError(f"No faculty member with id {faculty_id}.")
    return view


@router.post("", response_model=FacultyView, status_code=status.HTTP_201_CREATED)
def create_faculty(body: FacultyIn, admin: CurrentAdmin, backend: BackendDep) -> FacultyView:
    """Add a faculty member."""
    return backend.save_faculty(None, body.name, body.department, body.email, admin.username)


@router.put("/{faculty_id:int}", response_model=FacultyView)
def update_faculty(
    faculty_id: FacultyId, body: FacultyIn, admin: CurrentAdmin, backend: BackendDep
) -> FacultyView:
    """Change a faculty member's name, department or e-mail."""
    return backend.save_faculty(faculty_id, body.name, body.department, body.email, admin.username)


@router.delete("/{faculty_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_faculty(faculty_id: FacultyId, admin: CurrentAdmin, backend: BackendDep) -> None:
    """Delete a faculty member and their consultations."""
    backend.delete_faculty(faculty_id, admin.username)
