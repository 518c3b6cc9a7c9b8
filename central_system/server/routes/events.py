"""``GET /api/v1/events``: server-sent events, after the caller is authenticated."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ...api.schemas import Event
from ..deps import BackendDep, CurrentCaller, ServerDep

router = APIRouter(tags=["events"])


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an event stream"}},
)
async def events(
    caller: CurrentCaller, backend: BackendDep, server: ServerDep
) -> StreamingResponse:
    """A live stream: ``consultation`` (id, status), ``faculty`` (id), ``mqtt_state`` (state).

    The first event is the MQTT state now. A client that falls behind gets ``overflow``
    and the stream ends; it reconnects and reloads what it shows.
    """
    first = [Event(kind="mqtt_state", state=server.mqtt_state)]
    return StreamingResponse(
        server.hub.stream(first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
