"""Administrators' pages: overview and health, faculty (with invitations), students, desks,
consultations, kiosks, the audit log and backups. Every change goes through the same
controller or facade call as the kiosk's admin area and the API, audited with the
signed-in administrator."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from ...api.errors import KioskError
from ...api.schemas import MAX_ID
from ...controllers.admin_controller import AdminError
from ...controllers.web_accounts import suggested_username
from ..auth import EnrollmentError, enroll_kiosk, revoke_kiosk
from . import queries
from .deps import AdminUser, CheckedForm, WebCtx, WebError, field, render

router = APIRouter(prefix="/web/admin", include_in_schema=False)

STATUSES = ("pending", "accepted", "busy", "declined", "completed", "cancelled", "expired")
Page = Annotated[int, Query(ge=0, le=100_000)]
BeforeId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Search = Annotated[str | None, Query(max_length=100)]


def _health(ctx: WebCtx) -> dict[str, Any]:
    stats = ctx.backend.system_stats()
    stats["backend"] = f"server {ctx.server.server_id} ({ctx.server.role})"
    stats["event_subscribers"] = ctx.server.hub.subscribers
    stats["web_pages_live"] = ctx.live.pages
    return stats


@router.get("")
def overview_page(request: Request, ctx: WebCtx, user: AdminUser) -> Response:
    """Counts, system health (MQTT, backlog, active server, kiosks) and the backup button."""
    return overview(request, ctx, user)


def overview(request: Request, ctx: WebCtx, user: AdminUser, **extra: Any) -> Response:
    """The overview page, with a message after an action."""
    with ctx.db() as s:
        counts = queries.counts(s)
        kiosks = queries.kiosks(s)
    return render(
        request,
        "admin_overview.html",
        user,
        counts=counts,
        health=_health(ctx),
        kiosks=kiosks,
        backup=ctx.backend.backup_available(),
        **extra,
    )


@router.post("/backup")
def backup(request: Request, ctx: WebCtx, user: AdminUser, form: CheckedForm) -> Response:
    """Back the database up into the server's data directory (audited)."""
    try:
        path = ctx.backend.backup(user.username)
    except KioskError as err:
        return overview(request, ctx, user, error=str(err))
    return overview(request, ctx, user, notice=f"Backup written: {path}")


# ---------------------------------------------------------------------- faculty


def _faculty_page(
    request: Request, ctx: WebCtx, user: AdminUser, status: int = 200, **extra: Any
) -> Response:
    with ctx.db() as s:
        faculty = queries.faculty_list(s)
        suggestions = {f.id: suggested_username(s, f) for f in faculty}
    waiting = ctx.backend.waiting_counts()
    return render(
        request,
        "admin_faculty.html",
        user,
        status,
        faculty=faculty,
        accounts=ctx.accounts.accounts(),
        suggestions=suggestions,
        waiting=waiting,
        **extra,
    )


@router.get("/faculty")
def faculty_page(request: Request, ctx: WebCtx, user: AdminUser) -> Response:
    """Every faculty member, their desk and web account; add, invite, delete."""
    return _faculty_page(request, ctx, user)


@router.post("/faculty")
def add_faculty(request: Request, ctx: WebCtx, user: AdminUser, form: CheckedForm) -> Response:
    """Add a faculty member (the kiosk's rules: name, unique e-mail)."""
    try:
        view = ctx.backend.save_faculty(
            None,
            field(form, "name", 100),
            field(form, "department", 100),
            field(form, "email", 254).strip() or None,
            user.username,
        )
    except KioskError as err:
        return _faculty_page(request, ctx, user, 400, error=str(err))
    return _faculty_page(request, ctx, user, notice=f"Added {view.name}.")


@router.post("/faculty/{faculty_id}/invite")
def invite(
    request: Request,
    ctx: WebCtx,
    user: AdminUser,
    form: CheckedForm,
    faculty_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    """A one-time set-password link and code for the faculty member's account (shown once)."""
    try:
        invitation = ctx.accounts.invite(faculty_id, field(form, "username", 64), actor=user.actor)
    except AdminError as err:
        return _faculty_page(request, ctx, user, 400, error=str(err))
    link = str(request.base_url).rstrip("/") + f"/web/invite?code={invitation.code}"
    return _faculty_page(request, ctx, user, invitation=invitation, link=link)


@router.post("/faculty/{faculty_id}/delete")
def delete_faculty(
    request: Request,
    ctx: WebCtx,
    user: AdminUser,
    form: CheckedForm,
    faculty_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    """Delete a faculty member with their consultations and web account."""
    try:
        ctx.backend.delete_faculty(faculty_id, user.username)
    except KioskError as err:
        return _faculty_page(request, ctx, user, 400, error=str(err))
    return _faculty_page(request, ctx, user, notice="Deleted.")


# ---------------------------------------------------------------------- students


def _students_page(
    request: Request,
    ctx: WebCtx,
    user: AdminUser,
    search: str | None = None,
    page: int = 0,
    status: int = 200,
    **extra: Any,
) -> Response:
    with ctx.db() as s:
        students, more = queries.student_list(s, search, page)
    return render(
        request,
        "admin_students.html",
        user,
        status,
        students=students,
        more=more,
        page=page,
        q=search or "",
        **extra,
    )


@router.get("/students")
def students_page(
    request: Request, ctx: WebCtx, user: AdminUser, q: Search = None, page: Page = 0
) -> Response:
    """Students by name, searchable; register with a typed or pasted card UID."""
    return _students_page(request, ctx, user, q, page)


@router.post("/students")
def add_student(request: Request, ctx: WebCtx, user: AdminUser, form: CheckedForm) -> Response:
    """Register a student with a card UID typed here (the kiosk's rules: unique card and number)."""
    try:
        view = ctx.backend.register_student(
            field(form, "name", 100),
            field(form, "student_id", 32),
            field(form, "department", 100),
            field(form, "rfid_uid", 64),
            user.username,
        )
    except KioskError as err:
        msg = (
            "That card UID is not valid (hex digits, like 04A1B2C3)."
            if "Tap" in str(err)
            else str(err)
        )
        return _students_page(request, ctx, user, status=400, error=msg)
    return _students_page(request, ctx, user, notice=f"Registered {view.name}.")


@router.post("/students/{student_pk}/delete")
def delete_student(
    request: Request,
    ctx: WebCtx,
    user: AdminUser,
    form: CheckedForm,
    student_pk: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    """Delete a student and their consultations."""
    try:
        ctx.backend.delete_student(student_pk, user.username)
    except KioskError as err:
        return _students_page(request, ctx, user, status=400, error=str(err))
    return _students_page(request, ctx, user, notice="Deleted.")


# ---------------------------------------------------------------------- desks


def _desks_page(
    request: Request, ctx: WebCtx, user: AdminUser, status: int = 200, **extra: Any
) -> Response:
    return render(
        request, "admin_desks.html", user, status, desks=ctx.backend.list_desks(), **extra
    )


@router.get("/desks")
def desks_page(request: Request, ctx: WebCtx, user: AdminUser) -> Response:
    """Every desk: online, last heartbeat, diagnostics; broker credentials."""
    return _desks_page(request, ctx, user)


@router.post("/desks/{faculty_id}/{action}")
def desk_action(
    request: Request,
    ctx: WebCtx,
    user: AdminUser,
    form: CheckedForm,
    faculty_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    action: str,
) -> Response:
    """Provision, new password, or revoke; the configuration is shown once (audited)."""
    if action not in ("provision", "rotate", "revoke"):
        raise WebError(404, "No such action.")
    try:
        text = ctx.backend.desk_credentials(action, faculty_id, user.username)
    except KioskError as err:
        return _desks_page(request, ctx, user, 400, error=str(err))
    return _desks_page(request, ctx, user, secret=text, secret_for=faculty_id)


# ---------------------------------------------------------------------- consultations


@router.get("/consultations")
def consultations_page(
    request: Request,
    ctx: WebCtx,
    user: AdminUser,
    status: Annotated[str | None, Query(max_length=16)] = None,
    faculty: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    q: Search = None,
    before: BeforeId = None,
) -> Response:
    """Consultations newest first, filtered by status, faculty member and student/course."""
    status = status if status in STATUSES else None
    with ctx.db() as s:
        rows, next_before = queries.consultations(
            s, status=status, faculty_id=faculty, search=q, before_id=before
        )
        faculty_rows = queries.faculty_list(s)
    return render(
        request,
        "admin_consultations.html",
        user,
        rows=rows,
        next_before=next_before,
        statuses=STATUSES,
        status=status or "",
        faculty=faculty or 0,
        q=q or "",
        faculty_rows=faculty_rows,
        first=before is None,
    )


# ---------------------------------------------------------------------- kiosks


def _kiosks_page(
    request: Request, ctx: WebCtx, user: AdminUser, status: int = 200, **extra: Any
) -> Response:
    with ctx.db() as s:
        kiosks = queries.kiosks(s)
    return render(request, "admin_kiosks.html", user, status, kiosks=kiosks, **extra)


@router.get("/kiosks")
def kiosks_page(request: Request, ctx: WebCtx, user: AdminUser) -> Response:
    """Enrolled kiosks with their last use; enrol (token shown once) and revoke."""
    return _kiosks_page(request, ctx, user)


@router.post("/kiosks")
def enrol_kiosk(request: Request, ctx: WebCtx, user: AdminUser, form: CheckedForm) -> Response:
    """Enrol a kiosk: its token is shown once; only its hash is stored."""
    name = field(form, "name", 64)
    try:
        with ctx.db() as s:
            token = enroll_kiosk(s, name, user.actor)
            s.commit()
    except EnrollmentError as err:
        return _kiosks_page(request, ctx, user, 400, error=str(err))
    return _kiosks_page(request, ctx, user, secret=token, secret_for=name.strip())


@router.post("/kiosks/revoke")
def revoke(request: Request, ctx: WebCtx, user: AdminUser, form: CheckedForm) -> Response:
    """Revoke a kiosk's token at once; its open event stream ends too."""
    try:
        with ctx.db() as s:
            kiosk_id = revoke_kiosk(s, field(form, "name", 64), user.actor)
            s.commit()
    except EnrollmentError as err:
        return _kiosks_page(request, ctx, user, 400, error=str(err))
    ctx.server.hub.end_streams_of(("kiosk", kiosk_id))  # its open event stream ends now
    return _kiosks_page(request, ctx, user, notice="Kiosk revoked.")


# ---------------------------------------------------------------------- audit


@router.get("/audit")
def audit_page(
    request: Request, ctx: WebCtx, user: AdminUser, q: Search = None, before: BeforeId = None
) -> Response:
    """The audit log newest first, searchable by actor, action or target."""
    with ctx.db() as s:
        rows, next_before = queries.audit_entries(s, q, before)
    return render(
        request,
        "admin_audit.html",
        user,
        rows=rows,
        next_before=next_before,
        q=q or "",
        first=before is None,
    )
