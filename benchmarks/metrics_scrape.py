"""The cost of one ``GET /metrics`` scrape with a million consultations (issue 12, "Numbers").

    flock /tmp/consultease-bench.lock .venv/bin/python benchmarks/metrics_scrape.py \
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--rows 1000000] \
        [--scrapes 50] [--keep]

Real processes: Mosquitto and one ``consultease server`` on the PostgreSQL database that
``benchmarks/analytics.py`` fills (``consultease_bench_analytics``, the same seeding; with
``--keep`` an existing one is reused). This process scrapes ``/metrics`` over loopback,
one scrape at a time, and prints per scrape: the wall time (request to last byte) and the
server process's CPU time (user + system from ``/proc``; its resolution is the kernel's
10 ms tick, so the mean over all scrapes is printed too), p50 / p99 / max; and the CPU of
every ``postgres`` process over the timed scrapes divided by their number (the database's
share; other users of the same PostgreSQL server inflate it). The first scrape is printed
on its own: after an upgrade it counts the history into the rollups once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from benchmarks.analytics import PENDING, bench_db_url, prepare_pg  # noqa: E402
from central_system import db as dbmod  # noqa: E402
from tests.brokers import MosquittoBroker  # noqa: E402
from tests.server_helpers import ServerProcess  # noqa: E402


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _line(label: str, ms: list[float]) -> None:
    print(
        f"  {label:<28} p50 {statistics.median(ms):8.2f}  p99 {_p(ms, 0.99):8.2f}  "
        f"max {max(ms):8.2f} ms"
    )


def _scrape(client: httpx.Client, url: str, proc: psutil.Process) -> tuple[float, float]:
    """One scrape: (wall ms, server CPU ms)."""
    cpu0 = proc.cpu_times()
    t0 = time.perf_counter()
    r = client.get(url + "/metrics")
    wall = (time.perf_counter() - t0) * 1000
    cpu1 = proc.cpu_times()
    r.raise_for_status()
    assert "consultease_time_to_answer_seconds_bucket" in r.text
    cpu = ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) * 1000
    return wall, cpu


def _postgres_cpu_s() -> float:
    """User + system seconds of every process named ``postgres`` (read only)."""
    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "postgres":
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="reuse the generated database")
    args = parser.parse_args()
    scrapes = max(5, min(args.scrapes, 1000))
    prepare_pg(args.pg, max(1, min(args.rows, 20_000_000)), args.keep)
    dbmod.dispose_db()
    db_url = bench_db_url(args.pg)
    tmp = Path(tempfile.mkdtemp(prefix="consultease-metricsbench-"))
    broker = MosquittoBroker().start()
    server = ServerProcess(db_url, broker.port, tmp, client_id=f"bench-{uuid.uuid4().hex[:6]}")
    server.env["CONSULTEASE_LOG_LEVEL"] = "WARNING"
    server.start()
    try:
        server.wait_role("active", timeout=120)
        assert server.proc is not None
        proc = psutil.Process(server.proc.pid)
        with httpx.Client(timeout=120) as client:
            first_wall, first_cpu = _scrape(client, server.url, proc)
            print(
                f"{args.rows:,} + {PENDING:,} consultations; first scrape "
                f"{first_wall:.0f} ms wall, {first_cpu:.0f} ms server CPU"
            )
            _scrape(client, server.url, proc)  # warm-up
            walls, cpus = [], []
            pg0 = _postgres_cpu_s()
            for _ in range(scrapes):
                wall, cpu = _scrape(client, server.url, proc)
                walls.append(wall)
                cpus.append(cpu)
            pg_ms = (_postgres_cpu_s() - pg0) * 1000 / scrapes
        print(f"GET /metrics, {scrapes} scrapes one after another:")
        _line("wall per scrape", walls)
        _line("server CPU per scrape", cpus)
        print(f"  server CPU per scrape, mean     {statistics.fmean(cpus):8.2f} ms")
        print(f"  PostgreSQL CPU per scrape, mean {pg_ms:8.2f} ms (every postgres process)")
    finally:
        server.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
