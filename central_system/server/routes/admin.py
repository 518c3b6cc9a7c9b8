"""Administrator sessions: sign in (argon2id, lockout), who am I, sign out, change password."""

from __future__ import annotations

from fastapi import APIRouter, status

from ...api.schemas import AdminExists, AdminLogin, AdminSession, PasswordChange
from ..deps import AuthDep, BackendDep, CurrentCaller, ServerDep, SignedInAdmin

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/exists", response_model=AdminExists)
def admin_exists(caller: CurrentCaller, backend: BackendDep) -> AdminExists:
    """Whether any administrator account exists (the login screen's hint)."""
    return AdminExists(exists=backend.admin_exists())


@router.post("/session", response_model=AdminSession, status_code=status.HTTP_201_CREATED)
def sign_in(body: AdminLogin, backend: BackendDep, auth: AuthDep) -> AdminSession:
    """Sign in; the answer's ``token`` is the session (Bearer) for administrator calls. Audited."""
    session = backend.admin_login(body.username, body.password)
    assert session.id is not None
    token, expires = auth.open_admin_session(session.id)
    return session.model_copy(update={"token": token, "expires_at": expires})


@router.get("/session", response_model=AdminSession)
def whoami(admin: SignedInAdmin, backend: BackendDep) -> AdminSession:
    """The signed-in administrator."""
    return AdminSession(
        id=admin.id, username=admin.username, must_change_password=admin.must_change_password
    )


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(admin: SignedInAdmin, auth: AuthDep, server: ServerDep) -> None:
    """Sign out: this session's token stops working, and its event streams end."""
    auth.close_admin_session(admin)
    server.hub.end_streams_of(admin.stream_key)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(body: PasswordChange, admin: SignedInAdmin, backend: BackendDep) -> None:
    """Replace the signed-in administrator's password (400 with the policy's reason).

    The only administrator call (besides signing out) a temporary password allows.
    """
    backend.change_admin_password(admin.username, body.current_password, body.new_password)
