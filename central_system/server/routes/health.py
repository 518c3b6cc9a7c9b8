"""``GET /healthz``: role, MQTT and database, for load balancers, kiosks and monitoring (no auth)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ... import __version__
from ...api.schemas import Health
from ..deps import ServerDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(server: ServerDep) -> Health:
    """This server's role (active or standby), its MQTT state and whether the database answers."""
    ok = await run_in_threadpool(server.database_ok)
    return Health(
        role=server.role,
        mqtt=server.mqtt_state,
        database="ok" if ok else "error",
        server_id=server.server_id,
        version=__version__,
    )
