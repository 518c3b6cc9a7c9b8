"""Failover time: SIGKILL the active server; how long until a kiosk's call succeeds again?

Two ``consultease server`` processes on one PostgreSQL database and a Mosquitto.
A kiosk (ApiClient with both URLs) makes a call every 50 ms. The active server is
SIGKILLed; the time from the kill to the first successful call answered by the
other server is the failover time (target <= 10 s). Repeated ``--rounds`` times:
the killed server is started again and becomes the standby of the next round.

    flock /tmp/consultease-bench.lock .venv/bin/python benchmarks/server_failover.py --pg URL
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.server_api import reset_pg  # noqa: E402
from central_system.api.client import ApiClient  # noqa: E402
from central_system.api.errors import KioskError  # noqa: E402
from tests.brokers import MosquittoBroker  # noqa: E402
from tests.server_helpers import ServerProcess, db_engine, enroll  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", required=True, help="a PostgreSQL URL (its schema is emptied)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reset_pg(args.pg)
    tmp = Path(tempfile.mkdtemp(prefix="consultease-failover-"))
    broker = MosquittoBroker().start()
    servers = [
        ServerProcess(args.pg, broker.port, tmp, client_id=f"central-{n}", name=n) for n in "ab"
    ]
    try:
        servers[0].start().wait_role("active")
        servers[1].start().wait_role("standby")
        with db_engine(args.pg) as engine:
            token = enroll(engine, "bench")
        client = ApiClient(",".join(s.url for s in servers), token, timeout=5.0)
        print(
            f"failover benchmark: PostgreSQL, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f}",
            flush=True,
        )
        times = []
        for rnd in range(args.rounds):
            active = next(s for s in servers if (s.health() or {}).get("role") == "active")
            other = next(s for s in servers if s is not active)
            client.faculty()
            t0 = time.monotonic()
            active.kill()
            while True:
                try:
                    client.faculty()
                    if client.active_url == other.url:
                        break
                except KioskError:
                    pass
                if time.monotonic() - t0 > 60:
                    raise SystemExit("no failover within 60 s")
                time.sleep(0.05)
            took = time.monotonic() - t0
            times.append(took)
            print(
                f"  round {rnd + 1}: SIGKILL -> first successful call on the other server: {took:.2f} s",
                flush=True,
            )
            active.start().wait_role("standby")  # back as the standby of the next round
        print(f"failover s: max {max(times):.2f}, mean {sum(times) / len(times):.2f}", flush=True)
    finally:
        for s in servers:
            s.stop()
        broker.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
