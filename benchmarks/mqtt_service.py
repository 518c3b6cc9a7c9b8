"""Benchmark of the central system's AsyncMQTTService against one real Mosquitto.

Prints, in one run against one broker on a free loopback port:
  (a) publish_async call time p50/p99/max in µs, broker up and broker down;
  (b) sustained QoS-1 throughput through the service (durable outbox on) and through
      raw paho-mqtt pipelined publishing (loop_start, no waiting), and their ratio;
  (c) end-to-end latency p50/p99 at 100 msg/s (service -> broker -> subscriber);
  (d) RSS of this process holding the running service;
  plus the outbox's call-to-persisted time (p50/p99).

Usage: .venv/bin/python benchmarks/mqtt_service.py [--messages 30000] [--db-url URL]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central_system import db as dbmod  # noqa: E402
from central_system.config import Settings  # noqa: E402
from central_system.services.async_mqtt_service import AsyncMQTTService  # noqa: E402
from tests.brokers import MosquittoBroker  # noqa: E402

PAYLOAD = {"pad": "x" * 170}  # ~200 bytes of JSON with the sequence number


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def paced(fn: Callable[[int], object], count: int, rate: float) -> list[float]:
    """Time each ``fn(n)`` call (µs), paced at ``rate`` calls/s like a UI would."""
    times = []
    start = time.perf_counter()
    for n in range(count):
        t0 = time.perf_counter()
        fn(n)
        times.append((time.perf_counter() - t0) * 1e6)
        delay = start + (n + 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return times


def call_times(service: AsyncMQTTService, topic: str, count: int, rate: float) -> list[float]:
    """Time each publish_async call (µs), paced at ``rate`` calls/s."""
    return paced(lambda n: service.publish_async(topic, {"n": n, **PAYLOAD}), count, rate)


def burst_times(service: AsyncMQTTService, topic: str, count: int) -> list[float]:
    times = []
    for n in range(count):
        t0 = time.perf_counter()
        service.publish_async(topic, {"n": n, **PAYLOAD})
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def wait_drained(service: AsyncMQTTService, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.queue_size == 0:
            return True
        time.sleep(0.002)
    return False


def raw_paho_throughput(port: int, count: int) -> float:
    """Pipelined QoS 1 with paho's own network thread: publish everything, wait for the last PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=paho.MQTTv5)
    done = threading.Event()
    acked = [0]

    def on_publish(*_args: object) -> None:
        acked[0] += 1
        if acked[0] == count:
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.3)
    payloads = [json.dumps({"n": n, **PAYLOAD}).encode() for n in range(count)]
    start = time.perf_counter()
    for payload in payloads:
        client.publish("bench/raw", payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return count / elapsed


def service_throughput(service: AsyncMQTTService, count: int) -> float:
    payloads = [{"n": n, **PAYLOAD} for n in range(count)]
    start = time.perf_counter()
    last = None
    for payload in payloads:
        last = service.publish_async("bench/service", payload)
    assert last is not None
    last.wait_acknowledged(120)
    wait_drained(service, 120)
    return count / (time.perf_counter() - start)


def e2e_latency(service: AsyncMQTTService, port: int, rate: float, seconds: float) -> list[float]:
    received: list[float] = []
    ready = threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=paho.MQTTv5)
    sub.on_connect = lambda c, *_: c.subscribe("bench/e2e", qos=1)
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda _c, _u, m: received.append(time.time() - json.loads(m.payload)["t"])
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    ready.wait(10)
    count = int(rate * seconds)
    start = time.perf_counter()
    for n in range(count):
        service.publish_async("bench/e2e", {"t": time.time(), "n": n, **PAYLOAD})
        delay = start + (n + 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    sub.loop_stop()
    sub.disconnect()
    return [x * 1000 for x in received]


def line(name: str, values: list[float], unit: str) -> str:
    return (
        f"{name:<34} p50 {pct(values, 0.5):8.1f} {unit}  p99 {pct(values, 0.99):8.1f} {unit}"
        f"  max {max(values):9.1f} {unit}  (n={len(values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=30_000, help="messages per throughput run")
    parser.add_argument(
        "--calls", type=int, default=10_000, help="paced publish_async calls per case"
    )
    parser.add_argument("--rate", type=float, default=2_000.0, help="paced call rate (calls/s)")
    parser.add_argument("--quiet-logs", action="store_true", default=True)
    parser.add_argument(
        "--db-url", default=None, help="database (default: a SQLite file in a temp dir)"
    )
    args = parser.parse_args()

    proc = psutil.Process()
    tmp = Path(tempfile.mkdtemp(prefix="consultease-bench-"))
    db_url = args.db_url or f"sqlite:///{tmp / 'bench.db'}"
    broker = MosquittoBroker().start()
    rss_before = proc.memory_info().rss
    if args.quiet_logs:
        logging.getLogger("central_system").setLevel(logging.ERROR)
    print(
        f"Mosquitto on 127.0.0.1:{broker.port}; database {db_url.split('@')[-1]}; payload ~200 B; "
        f"{os.cpu_count()} CPUs"
    )
    try:
        # Raw paho first, in a fresh process state, so the baseline is at its best.
        raw = raw_paho_throughput(broker.port, args.messages)
        gc.collect()
        settings = Settings(
            data_dir=tmp,
            mqtt_port=broker.port,
            mqtt_client_id="bench-central",
            mqtt_max_backlog=200_000,
        )
        service = AsyncMQTTService(settings, dbmod.init_db(db_url))
        service.start()
        assert service.wait_connected(10)
        rss_idle = proc.memory_info().rss
        gc.collect()

        print("\n(a) publish_async call time (caller's thread)")
        # The floor of this machine: after a sleep the CPU's caches are cold, so a paced
        # call costs several times a tight-loop call. Measured the same way, same run.
        floor = paced(lambda n: json.dumps({"n": n, **PAYLOAD}), args.calls, args.rate)
        print(line("baseline: json.dumps only, paced", floor, "µs"))
        up = call_times(service, "bench/calls", args.calls, args.rate)
        wait_drained(service, 60)
        persist = service.get_stats()
        print(line(f"broker up, paced {args.rate:.0f}/s", up, "µs"))
        broker.kill()
        time.sleep(0.5)
        down = call_times(service, "bench/calls", args.calls, args.rate)
        print(line(f"broker down, paced {args.rate:.0f}/s", down, "µs"))
        burst_down = burst_times(service, "bench/calls", args.calls)
        print(line("broker down, tight loop", burst_down, "µs"))
        broker.start()
        assert service.wait_connected(30)
        wait_drained(service, 120)
        burst_up = burst_times(service, "bench/calls", args.calls)
        print(line("broker up, tight loop", burst_up, "µs"))
        wait_drained(service, 120)
        print(
            f"{'call -> persisted (outbox commit)':<34} p50 {persist['persist_ms_p50']:8.2f} ms  "
            f"p99 {persist['persist_ms_p99']:8.2f} ms  (paced run, group commit, synchronous=FULL)"
        )

        print(f"\n(b) sustained QoS-1 throughput, {args.messages} messages, until the last PUBACK")
        gc.collect()
        svc = service_throughput(service, args.messages)
        print(f"{'raw paho (loop_start, pipelined)':<34} {raw:10.0f} msg/s")
        print(f"{'AsyncMQTTService (durable outbox)':<34} {svc:10.0f} msg/s")
        print(f"{'ratio service / raw':<34} {svc / raw:10.2f}")

        print("\n(c) end-to-end latency at 100 msg/s for 10 s (publish_async -> subscriber)")
        lat = e2e_latency(service, broker.port, 100, 10)
        print(line("service -> broker -> subscriber", lat, "ms"))

        rss_running = proc.memory_info().rss
        print("\n(d) memory")
        print(
            f"{'RSS before the service':<34} {rss_before / 2**20:10.1f} MiB (interpreter + imports)"
        )
        print(f"{'RSS, service connected, idle':<34} {rss_idle / 2**20:10.1f} MiB")
        print(f"{'RSS after the runs above':<34} {rss_running / 2**20:10.1f} MiB")
        stats = service.get_stats()
        print(
            f"\nservice stats: published {stats['messages_published']}, dropped {stats['dropped_messages']}, "
            f"errors {stats['publish_errors']}, queue {stats['queue_size']}, reconnects {stats['reconnects']}"
        )
        print(
            f"summary: call p99 up {pct(up, 0.99):.1f} µs, down {pct(down, 0.99):.1f} µs; "
            f"throughput ratio {svc / raw:.2f}; e2e p99 {pct(lat, 0.99):.1f} ms; "
            f"RSS {rss_running / 2**20:.1f} MiB"
        )
        service.stop()
    finally:
        broker.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
