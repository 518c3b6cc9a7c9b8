"""The plan's performance check: MQTT operations never block the UI (generous bounds; the
benchmarks in benchmarks/ measure the real figures)."""

from __future__ import annotations

import statistics
import threading
import time

from tests.brokers import MosquittoBroker
from tests.integration.service_helpers import running_service


def _ui_loop_lateness(work, period: float = 1 / 60, duration: float = 2.0) -> list[float]:
    """Run ``work()`` on a 'UI' loop every tick and record how late each tick was (s)."""
    lateness = []
    start = time.perf_counter()
    tick = 0
    while time.perf_counter() - start < duration:
        tick += 1
        due = start + tick * period
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        lateness.append(max(0.0, time.perf_counter() - due))
        work()
    return lateness


def test_ui_responsiveness(make_settings, sqlite_url, topic_prefix):
    """< 100 ms UI response (plan) while publishing, with the broker up, then SIGKILLed."""
    broker = MosquittoBroker().start()
    try:
        with running_service(make_settings(mqtt_port=broker.port), sqlite_url) as svc:
            calls: list[float] = []

            def publish_burst() -> None:
                for i in range(20):  # 1,200 messages/s from the UI thread
                    t0 = time.perf_counter()
                    svc.publish_async(f"{topic_prefix}/ui", {"i": i})
                    calls.append(time.perf_counter() - t0)

            up = _ui_loop_lateness(publish_burst)
            killer = threading.Timer(0.2, broker.kill)
            killer.start()
            down = _ui_loop_lateness(publish_burst)
            killer.join()
            assert not svc.is_connected
            # Generous bounds (a noisy shared 2-core CI machine): the plan's 100 ms for
            # the 99th percentile, and no single stall anywhere near a network timeout.
            # A blocking publish would stall for seconds while the broker is dead.
            for name, lat in (("broker up", up), ("broker killed", down)):
                p99 = sorted(lat)[int(0.99 * len(lat))]
                assert p99 < 0.1, f"{name}: UI tick p99 {p99 * 1000:.1f} ms late"
                assert max(lat) < 1.0, f"{name}: UI tick {max(lat) * 1000:.1f} ms late"
                assert statistics.median(lat) < 0.02, name
            assert sorted(calls)[int(0.99 * len(calls))] < 0.1
            assert statistics.median(calls) < 0.001  # microseconds, not milliseconds
    finally:
        broker.cleanup()
