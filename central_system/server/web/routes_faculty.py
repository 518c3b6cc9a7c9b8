"""A faculty member's pages: the live queue, answering requests, availability, history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ...api.schemas import MAX_ID
from ...controllers.consultation_controller import ConsultationError
from ...controllers.faculty_controller import FacultyError
from ...models import Faculty
from . import queries
from .deps import CheckedForm, FacultyUser, User, WebCtx, WebError, field, loop, render

router = APIRouter(prefix="/web/faculty", include_in_schema=False)

# The browser's buttons and the status each one sets (the desk's ACKNOWLEDGE and BUSY,
# and completing an accepted request).
ANSWERS = {"accept": "accepted", "busy": "busy", "complete": "completed"}


def _faculty(ctx: WebCtx, faculty_id: int) -> Faculty:
    with ctx.db() as s:
        faculty = s.get(Faculty, faculty_id)
        if faculty is None:
            raise WebError(404, "Your faculty record no longer exists.")
        s.expunge(faculty)
        return faculty


def _queue_context(ctx: WebCtx, faculty_id: int) -> dict[str, Any]:
    with ctx.db() as s:
        pending, accepted = queries.faculty_queue(s, faculty_id)
    return {"pending": pending, "accepted": accepted, "faculty": _faculty(ctx, faculty_id)}


@router.get("")
def queue_page(request: Request, ctx: WebCtx, user: FacultyUser) -> Response:
    """The live queue with availability."""
    assert user.faculty_id is not None
    return render(request, "faculty_queue.html", user, **_queue_context(ctx, user.faculty_id))


@router.get("/queue")
def queue_partial(request: Request, ctx: WebCtx, user: FacultyUser) -> Response:
    """Only the queue's HTML, which the page's script swaps in when an event arrives."""
    assert user.faculty_id is not None
    return render(request, "_queue.html", user, **_queue_context(ctx, user.faculty_id))


@router.get("/events")
async def events(request: Request, ctx: WebCtx, user: FacultyUser) -> StreamingResponse:
    """Server-sent events about this faculty member's own requests and desk only, while the
    session stands (signed out here: it ends at once; otherwise within one keepalive)."""
    ctx.live.attach(ctx.backend, loop())
    fid = user.faculty_id
    sessions = ctx.sessions

    async def still_allowed() -> bool:
        return await run_in_threadpool(sessions.still_allowed, user)

    return StreamingResponse(
        ctx.live.stream(
            lambda event: event.get("faculty_id") == fid,
            key=user.stream_key,
            still_allowed=still_allowed,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/consultations/{consultation_id}/{answer}")
def answer(
    request: Request,
    ctx: WebCtx,
    user: FacultyUser,
    form: CheckedForm,
    consultation_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    answer: str,
) -> Response:
    """Accept, mark busy or complete one of one's own requests (the desk's transitions)."""
    assert user.faculty_id is not None
    target = ANSWERS.get(answer)
    if target is None:
        raise WebError(404, "No such action.")
    try:
        ctx.controller("consultation").answer_from_web(
            consultation_id, user.faculty_id, target, user.actor
        )
    except ConsultationError as err:
        status = 404 if "No such" in str(err) else 409
        raise WebError(status, str(err)) from None
    back = field(form, "back", 100)
    return RedirectResponse(back if back.startswith("/web/faculty") else "/web/faculty", 303)


@router.post("/availability")
def availability(request: Request, ctx: WebCtx, user: FacultyUser, form: CheckedForm) -> Response:
    """Set "available" / "away" by hand (for when the desk is offline), or clear it."""
    assert user.faculty_id is not None
    status = field(form, "status", 16)
    try:
        ctx.controller("faculty").set_manual_status(
            user.faculty_id, None if status == "clear" else status, actor=user.actor
        )
    except FacultyError as err:
        raise WebError(400, str(err)) from None
    return RedirectResponse("/web/faculty", status_code=303)


@router.get("/history")
def history(
    request: Request,
    ctx: WebCtx,
    user: FacultyUser,
    page: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Response:
    """One's consultations, newest first."""
    assert user.faculty_id is not None
    with ctx.db() as s:
        rows, more = queries.faculty_history(s, user.faculty_id, page)
    return render(request, "faculty_history.html", user, rows=rows, page=page, more=more)


@router.get("/consultations/{consultation_id}")
def consultation(
    request: Request,
    ctx: WebCtx,
    user: User,
    consultation_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    """One consultation: only the faculty member's own (anyone else's is a 404, audited)."""
    with ctx.db() as s:
        row = queries.consultation(s, consultation_id)
    if user.role != "faculty" or row is None or row.faculty_id != user.faculty_id:
        if row is not None:
            ctx.audit(
                user.actor,
                "consultation.denied",
                f"consultation:{consultation_id}",
                False,
                {"reason": "another faculty member's consultation"},
            )
        raise WebError(404, f"No consultation {consultation_id} of yours.")
    return render(request, "faculty_consultation.html", user, row=row)
