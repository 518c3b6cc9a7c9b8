"""``GET /metrics``: Prometheus text format for operators (no auth, like ``/healthz``).

Deliberately unauthenticated: Prometheus scrapes it from loopback or a network behind the
firewall, and it holds only counts, durations and the role (no names, cards, tokens or
request texts). Put it behind the reverse proxy's allow-list if the port is reachable.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """The server's metrics (names in docs/analytics.md), read at scrape time."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    body = await run_in_threadpool(generate_latest, registry)  # database counts: off the loop
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
