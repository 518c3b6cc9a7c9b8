"""No message is lost: broker crashes, a central process crash, a broker that is down at start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.brokers import MosquittoBroker, TcpGate
from tests.integration.service_helpers import running_service, wait_until
from tests.mqtt_probe import Probe

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def unique_ns(probe: Probe) -> set[int]:
    return {json.loads(p)["n"] for p in probe.payloads()}


def count_unique(messages: list) -> int:
    return len({json.loads(m.payload)["n"] for m in messages})


def first_occurrence_order(probe: Probe) -> list[int]:
    seen: set[int] = set()
    order = []
    for p in probe.payloads():
        n = json.loads(p)["n"]
        if n not in seen:
            seen.add(n)
            order.append(n)
    return order


def test_broker_killed_twice_during_a_5000_message_burst_loses_nothing(
    make_settings, db_url, topic_prefix
):
    # The test is about the service, so the broker must not lose the probe's side of
    # the story. A SIGKILLed broker loses what it acknowledged but had not yet written
    # to a subscriber, and the kernel RSTs (discarding unsent data) a socket with unread
    # input, such as a QoS 1 subscriber's PUBACKs. So: the probe reads at QoS 0 (it sends
    # nothing back), in-flight towards it is unlimited, and the service reaches the
    # broker through a gate that opens only after the probe (persistent session) has
    # resubscribed to the restarted broker.
    broker = MosquittoBroker(extra_config="max_inflight_messages 0")
    broker.start()
    gate = TcpGate(broker.port)
    probe = Probe(
        broker.port, [f"{topic_prefix}/#"], qos=0, client_id="probe-broker-kill", clean=False
    )
    try:
        settings = make_settings(mqtt_port=gate.port, mqtt_reconnect_max_delay=1.0)
        with running_service(settings, db_url) as svc:
            total = 5000
            handles = []
            kills = []

            def killer() -> None:
                for at in (0.3, 0.7):
                    while len(handles) < total * at:
                        time.sleep(0.005)
                    assert svc.wait_connected(20)  # each kill hits a live connection
                    gate.close_gate()
                    probe.subscribed.clear()
                    broker.kill()
                    kills.append(len(handles))
                    time.sleep(0.3)
                    broker.start()
                    assert probe.subscribed.wait(20)
                    gate.open_gate()

            thread = threading.Thread(target=killer)
            thread.start()
            start = time.perf_counter()
            for n in range(total):  # a paced burst: 2,000 msg/s for 2.5 s
                handles.append(svc.publish_async(f"{topic_prefix}/burst", {"n": n}))
                delay = start + (n + 1) / 2000 - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            thread.join()
            assert len(kills) == 2
            assert all(h.wait_acknowledged(60) for h in handles[-10:])
            assert probe.wait_for(lambda m: count_unique(m) == total, 60), (
                f"missing {total - len(unique_ns(probe))} of {total}; kills at {kills}; {svc.get_stats()}"
            )
            assert svc.get_stats()["reconnects"] >= 2
            order = first_occurrence_order(probe)
            assert order == sorted(order)  # per-topic order survives the crashes
    finally:
        probe.close()
        gate.stop()
        broker.cleanup()


@pytest.mark.parametrize("kill_after", [1500])
def test_central_process_killed_mid_burst_then_restarted_delivers_every_persisted_message(
    kill_after, broker, db_url, topic_prefix, tmp_path
):
    probe = Probe(broker.port, [f"{topic_prefix}/#"], client_id="probe-process-kill", clean=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "tests.integration.publisher_child",
        "--db",
        db_url,
        "--port",
        str(broker.port),
        "--topic",
        f"{topic_prefix}/crash",
    ]
    try:
        child = subprocess.Popen(
            [*cmd, "--count", "5000", "--rate", "2000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            text=True,
        )
        persisted: list[int] = []
        deadline = time.monotonic() + 60
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("P "):
                persisted.append(int(line.split()[1]))
                if len(persisted) >= kill_after:
                    child.send_signal(signal.SIGKILL)  # power cut, mid-burst
                    break
            assert time.monotonic() < deadline
        child.wait(10)
        assert child.returncode == -signal.SIGKILL
        assert len(persisted) >= kill_after

        # Restart on the same database: it recovers the outbox and publishes what was not acknowledged.
        restarted = subprocess.Popen(
            [*cmd, "--count", "0", "--run-seconds", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            text=True,
        )
        try:
            missing = lambda: set(persisted) - unique_ns(probe)  # noqa: E731
            assert wait_until(lambda: not missing(), 60), (
                f"{len(missing())} persisted messages never arrived"
            )
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(20)
    finally:
        probe.close()


def test_publish_never_waits_while_the_broker_is_killed(make_settings, sqlite_url, topic_prefix):
    broker = MosquittoBroker()
    broker.start()
    try:
        with running_service(make_settings(mqtt_port=broker.port), sqlite_url) as svc:
            broker.kill()
            worst = 0.0
            for n in range(2000):
                t0 = time.perf_counter()
                svc.publish_async(f"{topic_prefix}/x", {"n": n})
                worst = max(worst, time.perf_counter() - t0)
            # Generous bound for a noisy 2-core machine; the benchmark measures microseconds.
            assert worst < 0.1
            broker.start()
            assert wait_until(lambda: svc.queue_size == 0, 30), svc.get_stats()
    finally:
        broker.cleanup()
