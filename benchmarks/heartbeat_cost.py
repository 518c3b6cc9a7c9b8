"""Central CPU per desk message: heartbeats of a large fleet, nothing else (issue 15).

    .venv/bin/python benchmarks/heartbeat_cost.py [--desks 10000] [--rate 333] [--duration 15]
                                                  [--cprofile THREAD[,THREAD]]

``consultation_flow.py`` measures a whole scenario; this isolates the per-message
path (network thread: paho's parsing; dispatch thread: routing, validation,
liveness). All on loopback:

1. starts its own Mosquitto (tests/brokers.py) and the central system
   (``ConsultEaseApp(headless=True)``, SQLite) IN THIS PROCESS, with ``--desks``
   faculty rows inserted in one transaction;
2. a child process (``--publisher``, one raw MQTT connection, so its CPU is not
   ours) sends every desk's retained AVAILABLE presence and a first heartbeat
   (warm-up: every desk online, shown available, its desk row created), then
   heartbeats at ``--rate`` a second for ``--duration`` s, the firmware's JSON
   (contract 2.3), round-robin over the desks: 10,000 desks every 30 s = 333/s;
3. prints the central process's CPU (% of one core) and per thread over the
   measured window, and the CPU per message.

``--cprofile mqtt-dispatch,mqtt-network`` also profiles those threads (whole run;
cProfile slows them several times: use it for where, not for how much).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WARMUP_TIMEOUT_S = 120.0


# ---------------------------------------------------------------------- publisher child


def run_publisher(args: argparse.Namespace) -> int:
    """Warm-up burst, then heartbeats at ``--rate`` on a fixed schedule; one raw connection."""
    from central_system import topics
    from faculty_desk_unit import protocol
    from faculty_desk_unit.herd import connect_packet, presence_packets, publish_packet

    fids = list(range(args.first_id, args.first_id + args.desks))
    sock = socket.create_connection(("127.0.0.1", args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(f"hb-{uuid.uuid4().hex[:8]}", keepalive=0))
    sock.recv(4)  # CONNACK
    booted = time.monotonic() - 3600

    def heartbeat(fid: int) -> bytes:
        uptime = int((time.monotonic() - booted) * 1000)
        payload = protocol.build_heartbeat_json(fid, uptime, True, 0).encode()
        return publish_packet(topics.faculty_heartbeat_topic(fid), payload)

    sock.sendall(b"".join(presence_packets(fid, True, 3_600_000) for fid in fids))
    sock.sendall(b"".join(heartbeat(fid) for fid in fids))
    sys.stdout.write("warm\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        return 0
    total = int(args.rate * args.duration)
    start = time.monotonic()
    sent = 0
    while sent < total:
        due = int((time.monotonic() - start) * args.rate) + 1
        chunk = [heartbeat(fids[i % len(fids)]) for i in range(sent, min(total, due))]
        if chunk:
            sock.sendall(b"".join(chunk))
            sent += len(chunk)
        time.sleep(0.002)
    sys.stdout.write(f"sent {sent}\n")
    sys.stdout.flush()
    sys.stdin.readline()
    sock.close()
    return 0


# ---------------------------------------------------------------------- central (this process)


def _thread_cpu() -> dict[str, float]:
    usage: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            usage[thread.name] = usage.get(thread.name, 0.0) + time.clock_gettime(
                time.pthread_getcpuclockid(thread.ident)
            )
        except (OSError, AttributeError):
            continue
    return usage


class _WindowProfiles:
    """cProfile (CPU time) of the network and dispatch threads over the measured window only.

    cProfile profiles the thread that enables it, so each thread switches its own
    profiler on and off where it asks the inbound queue for work (``full``: the
    network thread, ``take``: the dispatch thread), following ``self.on``.
    """

    def __init__(self, inbound: Any, names: set[str]) -> None:
        self.on = False
        self.profiles: dict[str, cProfile.Profile] = {}
        self._enabled: set[str] = set()
        for method in ("full", "take"):
            original = getattr(inbound, method)
            setattr(inbound, method, self._wrap(original, names))

    def _wrap(self, original: Any, names: set[str]) -> Any:
        def call(*args: Any) -> Any:
            name = threading.current_thread().name
            if name in names:
                if self.on and name not in self._enabled:
                    profile = self.profiles.setdefault(name, cProfile.Profile(time.thread_time))
                    self._enabled.add(name)
                    profile.enable()
                elif not self.on and name in self._enabled:
                    self.profiles[name].disable()
                    self._enabled.discard(name)
            return original(*args)

        return call


def _seed(url: str, desks: int) -> list[int]:
    from sqlalchemy import insert, select

    from central_system import db
    from central_system.models import Faculty

    engine = db.init_db(url)
    with engine.begin() as conn:
        conn.execute(
            insert(Faculty),
            [{"name": f"Faculty Member {i:05d}", "department": "Benchmark"} for i in range(desks)],
        )
        return list(conn.scalars(select(Faculty.id).order_by(Faculty.id)))


def run(args: argparse.Namespace) -> int:
    import logging

    import psutil

    from central_system.config import Settings
    from central_system.main import ConsultEaseApp
    from tests.brokers import MosquittoBroker

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="consultease-hb-"))
    url = f"sqlite:///{workdir / 'hb.db'}"
    fids = _seed(url, args.desks)
    broker = MosquittoBroker().start()
    app = ConsultEaseApp(
        Settings(
            data_dir=workdir,
            database_url=url,
            mqtt_host="127.0.0.1",
            mqtt_port=broker.port,
            mqtt_client_id=f"hb-central-{uuid.uuid4().hex[:8]}",
            log_level="WARNING",
        ),
        headless=True,
    )
    child: subprocess.Popen[str] | None = None
    window: _WindowProfiles | None = None
    try:
        app.start()
        if not app.async_mqtt_service.wait_connected(30):
            raise RuntimeError("central system could not connect")
        liveness = app.controllers["faculty"].liveness
        window = _WindowProfiles(
            app.async_mqtt_service._inbound, set(filter(None, args.cprofile.split(",")))
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        child = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--publisher",
                f"--port={broker.port}",
                f"--desks={args.desks}",
                f"--first-id={fids[0]}",
                f"--rate={args.rate}",
                f"--duration={args.duration}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdin is not None and child.stdout is not None
        if child.stdout.readline().strip() != "warm":
            raise RuntimeError("publisher failed")
        t_warm = time.monotonic()
        mqtt = app.async_mqtt_service
        deadline = time.monotonic() + WARMUP_TIMEOUT_S
        while time.monotonic() < deadline:
            stats = mqtt.get_stats()
            handled = sum(k["handled"] for k in stats["inbound"].values())
            superseded = stats["inbound_superseded"]
            desks = [liveness.desk_state(fid) for fid in fids]
            if handled + superseded >= 3 * args.desks and all(
                d is not None and d.available and d.has_desk_row for d in desks
            ):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("warm-up did not finish")
        warm_s = time.monotonic() - t_warm
        time.sleep(2.0)  # the liveness check's flush of the warm-up, and quiet
        me = psutil.Process()
        received0 = mqtt.get_stats()["messages_received"]
        cpu0, threads0, t0 = me.cpu_times(), _thread_cpu(), time.monotonic()
        window.on = True
        child.stdin.write("go\n")
        child.stdin.flush()
        sent_line = child.stdout.readline().strip()
        wall = time.monotonic() - t0
        cpu1, threads1 = me.cpu_times(), _thread_cpu()
        window.on = False
        time.sleep(1.5)  # each thread sees it (the network thread polls every second)
        received = mqtt.get_stats()["messages_received"] - received0
        child.stdin.write("quit\n")
        child.stdin.flush()
        busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        load = os.getloadavg()
        print(
            f"heartbeat_cost: {args.desks} desks, {args.rate:g} heartbeats/s for {args.duration:g} s "
            f"({sent_line}; central received {received}); warm-up "
            f"({3 * args.desks} messages) {warm_s:.1f} s; load average {load[0]:.2f} on "
            f"{os.cpu_count()} cores"
        )
        print(
            f"  central process CPU: {100 * busy / wall:.1f} % of one core; "
            f"{1e6 * busy / max(1, received):.0f} us per message"
        )
        shares = sorted(
            (
                (name, 100 * (threads1.get(name, 0.0) - threads0.get(name, 0.0)) / wall)
                for name in threads1
            ),
            key=lambda x: -x[1],
        )
        for name, pct in shares:
            if pct >= 0.1:
                per = 1e6 * pct / 100 * wall / max(1, received)
                print(f"    {pct:5.1f} %  {name:<16} {per:6.0f} us per message")
        stats = mqtt.get_stats()
        print(
            f"  inbound: dropped {stats['dropped_inbound']}, superseded "
            f"{stats['inbound_superseded']}, pauses {stats['inbound_pauses']}"
        )
    finally:
        if window is not None:
            window.on = False
        app.stop()
        if child is not None:
            child.wait(10)
        broker.cleanup()
    for name, profile in (window.profiles if window is not None else {}).items():
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
        print(f"\n===== cProfile {name} (tottime) =====")
        print(out.getvalue())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point (also the publisher child with ``--publisher``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--desks", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=333.0, help="heartbeats per second")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--cprofile", default="", help="thread names to profile, comma-separated")
    parser.add_argument("--top", type=int, default=35, help="lines of each profile")
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first-id", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.publisher:
        return run_publisher(args)
    if args.desks < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--desks, --rate and --duration must be positive")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
