"""Prometheus metrics (names fixed in docs/analytics.md): read at scrape time, plus API latency.

A custom collector reads the MQTT service's ``get_stats()``, the desks' count and the analytics
rollups' totals (``AnalyticsController.totals``) when ``/metrics`` is scraped, so the MQTT and request hot paths pay nothing. The one
histogram observed per call is the API latency, from a small ASGI middleware. Every app gets its
own :class:`CollectorRegistry` (several apps in one test process do not clash). Nothing personal
or secret is exported: counts and durations only, labels from fixed sets and route templates.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..models import Faculty
from ..models.analytics import ANSWER_BUCKETS_S
from ..models.consultation import ConsultationStatus
from ..models.faculty import FacultyStatus
from .central import CentralServer

# Outcome label -> the consultation statuses counted under it (a completed request was accepted).
OUTCOMES: Final[dict[str, tuple[str, ...]]] = {
    "accepted": (ConsultationStatus.ACCEPTED.value, ConsultationStatus.COMPLETED.value),
    "busy": (ConsultationStatus.BUSY.value,),
    "declined": (ConsultationStatus.DECLINED.value,),
    "cancelled": (ConsultationStatus.CANCELLED.value,),
    "expired": (ConsultationStatus.EXPIRED.value,),
}
ROLES: Final = ("active", "standby")
# API latency buckets (seconds): a local API answers in milliseconds; a slow one in seconds.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Routes not matched by the app (404s, the role gate's 503) share one label: bounded cardinality.
UNMATCHED: Final = "unmatched"


def _counter(name: str, doc: str, value: float) -> Metric:
    return CounterMetricFamily(name, doc, value=value)


class ServerCollector(Collector):
    """Reads the server's current state on each scrape (MQTT stats, desks, requests, role)."""

    def __init__(self, server: CentralServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        role = GaugeMetricFamily(
            "consultease_server_role", "1 for this server's current role", labels=["role"]
        )
        for name in ROLES:
            role.add_metric([name], 1.0 if server.role == name else 0.0)
        yield role
        system = server.system
        stats: dict[str, Any] = system.mqtt.get_stats() if system is not None else {}
        yield GaugeMetricFamily(
            "consultease_mqtt_connected",
            "1 while the MQTT service is connected to the broker",
            value=1.0 if stats.get("connected") else 0.0,
        )
        if system is None:  # standby or starting: no MQTT service, no database of ours
            return
        yield GaugeMetricFamily(
            "consultease_mqtt_backlog_messages",
            "messages accepted and not yet acknowledged by the broker",
            value=float(stats.get("queue_size", 0)),
        )
        yield GaugeMetricFamily(
            "consultease_mqtt_inflight_messages",
            "messages sent and awaiting the broker's acknowledgement",
            value=float(stats.get("inflight", 0)),
        )
        for name, key, doc in (
            ("consultease_mqtt_published_total", "messages_published", "messages published"),
            ("consultease_mqtt_received_total", "messages_received", "messages received"),
            ("consultease_mqtt_dropped_total", "dropped_messages", "outbound messages dropped"),
            ("consultease_mqtt_reconnects_total", "reconnects", "reconnections to the broker"),
        ):
            yield _counter(name, doc, float(stats.get(key, 0)))
        liveness = system.controllers.get("liveness")
        yield _counter(
            "consultease_desk_disconnections_total",
            "desks that lost their connection (last will or heartbeat timeout) since start",
            float(getattr(liveness, "disconnections", 0)),
        )
        yield from self._database(server)

    def _database(self, server: CentralServer) -> Iterator[Metric]:
        system = server.system
        factory = server.session_factory()
        analytics = system.controllers.get("analytics") if system is not None else None
        if factory is None or analytics is None:
            return
        with factory() as session:
            online, present = session.execute(
                select(
                    func.count(Faculty.id).filter(Faculty.desk_online.is_(True)),
                    func.count(Faculty.id).filter(
                        Faculty.desk_online.is_(True),
                        Faculty.status == FacultyStatus.AVAILABLE.value,
                    ),
                )
            ).one()
        # The hourly rollup up to two days ago plus the consultations since: a few thousand
        # rows per scrape, not every consultation ever made (docs/performance.md).
        totals = analytics.totals()
        by_status = totals.by_status
        yield GaugeMetricFamily(
            "consultease_desks_online", "faculty whose desk unit is online", value=float(online)
        )
        yield GaugeMetricFamily(
            "consultease_desks_present",
            "faculty whose desk unit is online and reports available",
            value=float(present),
        )
        yield GaugeMetricFamily(
            "consultease_requests_waiting",
            "pending consultation requests",
            value=float(by_status.get(ConsultationStatus.PENDING.value, 0)),
        )
        requests = CounterMetricFamily(
            "consultease_requests_total", "consultation requests by outcome", labels=["outcome"]
        )
        for outcome, statuses in OUTCOMES.items():
            requests.add_metric([outcome], float(sum(int(by_status.get(s, 0)) for s in statuses)))
        yield requests
        # Bucket i of the rollup holds answers in [bound i, bound i+1): cumulated, the counts
        # of answers shorter than each upper bound (an answer exactly on a bound, measured to
        # the microsecond, lands one bucket up).
        buckets, seen = [], 0
        for upper, count in zip(ANSWER_BUCKETS_S[1:], totals.buckets, strict=False):
            seen += count
            buckets.append((_le(upper), float(seen)))
        buckets.append(("+Inf", float(sum(totals.buckets))))
        yield HistogramMetricFamily(
            "consultease_time_to_answer_seconds",
            "seconds from a request to its first answer",
            buckets=buckets,
            sum_value=totals.answer_s_sum,
        )


def _le(value: float) -> str:
    return str(float(value))


def make_registry(server: CentralServer) -> tuple[CollectorRegistry, Histogram]:
    """A registry of this app's own: the server collector and the API latency histogram."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    latency = Histogram(
        "consultease_api_request_duration_seconds",
        "API request duration, by method, route template and status",
        ["method", "route", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    return registry, latency


class LatencyMiddleware:
    """ASGI middleware: observes each HTTP request's duration under its route template."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            template = route_template(scope)
            self.histogram.labels(scope.get("method", ""), template, str(status)).observe(
                time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    """The matched route's template with its full prefix (``/api/v1/consultations/{consultation_id}``).

    Recent FastAPI leaves an included router's own route in ``scope["route"]``, whose path
    lacks the include prefix; the prefix is the part of the request path before the piece
    the route's pattern matches. No route (404, the role gate's 503): ``unmatched``.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    regex = getattr(route, "path_regex", None)
    if not isinstance(template, str) or regex is None:
        return UNMATCHED
    path: str = scope.get("path", "")
    if regex.fullmatch(path):
        return template
    for i, char in enumerate(path):  # bounded by the path's length
        if char == "/" and i and regex.fullmatch(path[i:]):
            return path[:i] + template
    return template
