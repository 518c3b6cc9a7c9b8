"""``GET /api/v1/events``: server-sent events, after the caller is authenticated."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ...api.schemas import Event
from ..deps import AuthDep, BackendDep, Credentials, CurrentCaller, ServerDep

router = APIRouter(tags=["events"])


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an event stream"}},
)
async def events(
    caller: CurrentCaller,
    backend: BackendDep,
    server: ServerDep,
    auth: AuthDep,
    creds: Credentials,
) -> StreamingResponse:
    """A live stream: ``consultation`` (id, status), ``faculty`` (id), ``mqtt_state`` (state).

    The first event is the MQTT state now. A client that falls behind gets ``overflow``
    and the stream ends; it reconnects and reloads what it shows. The stream also ends
    when its token stops working (a revoked kiosk, a signed-out or expired session):
    at once when this server made the change, else within one keepalive.
    """
    assert creds is not None  # CurrentCaller refused the call otherwise
    token = creds.credentials

    async def still_allowed() -> bool:
        return await run_in_threadpool(auth.still_allowed, token)

    first = [Event(kind="mqtt_state", state=server.mqtt_state)]
    return StreamingResponse(
        server.hub.stream(first, key=caller.stream_key, still_allowed=still_allowed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
