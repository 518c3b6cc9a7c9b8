"""Who is calling, as FastAPI dependencies (``CurrentKiosk``, ``CurrentAdmin``, ``CardStudent``…).

A route declares what it needs; these check it before the route runs and raise
the API's errors, which one exception handler turns into status codes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..api.errors import (
    ForbiddenError,
    NotAuthenticatedError,
    NotFoundError,
    TooManyRequestsError,
    UnavailableError,
)
from ..api.schemas import MAX_ID, ConsultationView, ErrorAnswer, StudentView
from ..controllers.kiosk_facade import KioskBackend
from .auth import (
    ADMIN_PREFIX,
    KIOSK_PREFIX,
    TOO_MANY_UNKNOWN_CARDS,
    AdminPrincipal,
    Authenticator,
    KioskPrincipal,
    Refused,
)
from .central import CentralServer
from .frequent import FrequentCalls, KioskCall, stored_uid

_bearer = HTTPBearer(auto_error=False, description="A kiosk token or an administrator session")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]

UNKNOWN_CARD = "Unknown card. Please see the department office to register it."
# The card calls' one answer beyond routes.ERROR_RESPONSES, for the OpenAPI document.
CARD_CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorAnswer,
        "description": "this kiosk met too many unknown cards this minute; try again later",
    }
}


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in
# its thread pool, one hop per dependency per request (measured: most of a call's time on a
# busy machine). Those that query the database stay ``def`` so they never block the loop.


async def get_server(request: Request) -> CentralServer:
    """The server this app belongs to."""
    server: CentralServer = request.app.state.server
    return server


ServerDep = Annotated[CentralServer, Depends(get_server)]


async def get_backend(server: ServerDep) -> KioskBackend:
    """The active system's facade; 503 while this server is not active."""
    backend = server.backend
    if backend is None or server.role != "active":
        raise UnavailableError(f"This server is {server.role}; try the active server.")
    return backend


async def get_auth(server: ServerDep) -> Authenticator:
    """The authenticator of the active system; 503 while this server is not active."""
    if server.auth is None or server.role != "active":
        raise UnavailableError(f"This server is {server.role}; try the active server.")
    return server.auth


BackendDep = Annotated[KioskBackend, Depends(get_backend)]
AuthDep = Annotated[Authenticator, Depends(get_auth)]


def _token(creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None or not creds.credentials:
        raise NotAuthenticatedError("Send a token: Authorization: Bearer <token>.")
    return creds.credentials


def _kiosk(auth: Authenticator, token: str, path: str) -> KioskPrincipal:
    try:
        return auth.kiosk(token)
    except Refused as refused:
        if refused.audit_actor:
            auth.audit_refusal(refused.audit_actor, "api.refused", path, refused.reason)
        raise NotAuthenticatedError(f"Kiosk token refused ({refused.reason}).") from None


def _admin(auth: Authenticator, token: str) -> AdminPrincipal:
    try:
        return auth.admin(token)
    except Refused as refused:
        if refused.audit_actor:
            auth.audit_refusal(refused.audit_actor, "api.refused", "admin session", refused.reason)
        raise NotAuthenticatedError(
            f"Administrator session refused ({refused.reason}); sign in again."
        ) from None


def current_kiosk(request: Request, auth: AuthDep, creds: Credentials) -> KioskPrincipal:
    """An enrolled kiosk (401 for a missing, unknown or revoked token)."""
    token = _token(creds)
    if token.startswith(ADMIN_PREFIX):
        raise ForbiddenError("This call is made by a kiosk for the student who tapped a card.")
    return _kiosk(auth, token, request.url.path)


def signed_in_admin(request: Request, auth: AuthDep, creds: Credentials) -> AdminPrincipal:
    """A signed-in administrator, even one who must still replace a temporary password."""
    token = _token(creds)
    if token.startswith(KIOSK_PREFIX):
        kiosk = _kiosk(auth, token, request.url.path)
        auth.audit_refusal(
            kiosk.actor,
            "api.forbidden",
            f"{request.method} {request.url.path}",
            "a kiosk token on an administrator endpoint",
        )
        raise ForbiddenError(
            "Administrator calls need an administrator's session, not a kiosk token."
        )
    return _admin(auth, token)


def current_caller(
    request: Request, auth: AuthDep, creds: Credentials
) -> KioskPrincipal | AdminPrincipal:
    """A kiosk or an administrator (calls both may make: the faculty list, events)."""
    token = _token(creds)
    if token.startswith(ADMIN_PREFIX):
        return _admin(auth, token)
    return _kiosk(auth, token, request.url.path)


def current_admin(
    admin: Annotated[AdminPrincipal, Depends(signed_in_admin)],
) -> AdminPrincipal:
    """A signed-in administrator whose password is not a temporary one (403 until changed)."""
    if admin.must_change_password:
        raise ForbiddenError("Choose a new password first: your password is a temporary one.")
    return admin


# The kiosk's frequent calls declare these instead: they read the headers only, and the route
# checks the token and the card in the one worker-thread hop where it reads its data
# (frequent.py). The token is checked before anything else is read.


# (FastAPI's dependency solving is a large part of a call's CPU: these are as few as can be.)


def _frequent(request: Request) -> FrequentCalls:
    server: CentralServer = request.app.state.server
    calls = server.frequent
    if calls is None or server.role != "active":
        raise UnavailableError(f"This server is {server.role}; try the active server.")
    return calls


async def kiosk_call(request: Request, creds: Credentials) -> KioskCall:
    """A call by a kiosk (the token is checked in the route's one database hop)."""
    return KioskCall(_frequent(request), _token(creds), request.url.path)


async def caller_call(request: Request, creds: Credentials) -> KioskCall:
    """A call by a kiosk or an administrator (the faculty list, waiting counts)."""
    return KioskCall(_frequent(request), _token(creds), request.url.path, admin_allowed=True)


# The ``X-Card-UID`` header: the card the student tapped at the calling kiosk.
CardUidHeader = Annotated[
    str,
    Header(
        description="The UID of the card the student tapped at this kiosk",
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Fa-f:\- ]+$",
    ),
]


async def card_call(
    call: Annotated[KioskCall, Depends(kiosk_call)],
    x_card_uid: CardUidHeader,
) -> KioskCall:
    """A call by a kiosk for the student whose card was tapped at it."""
    return KioskCall(call.runner, call.token, call.path, x_card_uid)


KioskCallDep = Annotated[KioskCall, Depends(kiosk_call)]
CallerCallDep = Annotated[KioskCall, Depends(caller_call)]
CardCallDep = Annotated[KioskCall, Depends(card_call)]

CurrentKiosk = Annotated[KioskPrincipal, Depends(current_kiosk)]
SignedInAdmin = Annotated[AdminPrincipal, Depends(signed_in_admin)]
CurrentAdmin = Annotated[AdminPrincipal, Depends(current_admin)]
CurrentCaller = Annotated[KioskPrincipal | AdminPrincipal, Depends(current_caller)]


def card_student(
    request: Request,
    kiosk: CurrentKiosk,
    backend: BackendDep,
    auth: AuthDep,
    x_card_uid: CardUidHeader,
) -> StudentView:
    """The student whose card was tapped at the calling kiosk (404 for an unknown card; 429
    while the kiosk is past its limit of unknown cards)."""
    if auth.card_calls_refused(kiosk):
        raise TooManyRequestsError(TOO_MANY_UNKNOWN_CARDS)
    student = backend.login_by_card(x_card_uid)
    if student is None:
        uid = stored_uid(x_card_uid) or x_card_uid
        if auth.unknown_card(kiosk, uid, request.url.path):
            raise TooManyRequestsError(TOO_MANY_UNKNOWN_CARDS)
        raise NotFoundError(UNKNOWN_CARD)
    return student


CardStudent = Annotated[StudentView, Depends(card_student)]
ConsultationId = Annotated[int, Path(ge=1, le=MAX_ID, description="A consultation's id")]


def own_consultation(
    consultation_id: ConsultationId,
    kiosk: CurrentKiosk,
    student: CardStudent,
    backend: BackendDep,
    auth: AuthDep,
) -> ConsultationView:
    """One of the card holder's consultations; anyone else's is a 404, and audited."""
    view = backend.get_consultation(consultation_id)
    if view is not None and view.student_id != student.id:
        auth.audit_refusal(
            kiosk.actor,
            "consultation.denied",
            f"consultation:{consultation_id}",
            f"the card of student {student.id} asked for another student's consultation",
        )
        view = None
    if view is None:
        raise NotFoundError(f"No consultation {consultation_id} of yours.")
    return view


OwnConsultation = Annotated[ConsultationView, Depends(own_consultation)]
