"""CPU per call of the kiosk's API client, on the calling thread and in the server (issue 9).

The kiosk's worker and event reader share the interpreter lock with its screen, so
the client's CPU per call is time the screen may wait for. CPU time (not wall time)
is what this prints: it does not grow when other programs load the machine.

Real processes, as ``scripts/consultease run`` has them: Mosquitto, the kiosk's own
``consultease server`` child on a Unix socket (``ApiBackend.local_server``), and this
process as the kiosk, with ``--faculty`` faculty members (a 200-desk department).
Each call ``--calls`` times; per call: CPU of this thread (``time.thread_time``), wall
time, and CPU of the server process (from /proc). Then the client's own parts of the
faculty list: ``json.loads`` and validation of the answer.

    flock /tmp/consultease-bench.lock .venv/bin/python benchmarks/kiosk_calls.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import TypeAdapter  # noqa: E402

from central_system.api.schemas import FacultyView  # noqa: E402
from central_system.config import Settings  # noqa: E402
from central_system.controllers.admin_controller import AdminController  # noqa: E402
from central_system.db import create_db_engine  # noqa: E402
from central_system.kiosk.api_backend import ApiBackend  # noqa: E402
from tests.brokers import MosquittoBroker  # noqa: E402

CARD = "B0B0CAFE"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faculty", type=int, default=206)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="consultease-kcalls-"))
    broker = MosquittoBroker().start()
    settings = Settings(
        data_dir=tmp,
        mqtt_host="127.0.0.1",
        mqtt_port=broker.port,
        mqtt_client_id=f"kcalls-{uuid.uuid4().hex[:6]}",
    )
    api = ApiBackend.local_server(settings)
    api.local.log_level = "ERROR"
    try:
        api.start()
        engine = create_db_engine(settings.effective_database_url)
        password = AdminController.generate_password()
        AdminController(db=engine).create_first_admin("bench-admin", password)
        engine.dispose()
        api.admin_login("bench-admin", password)
        for i in range(args.faculty):
            api.save_faculty(None, f"Dr. Calls {i:03d}", "Benchmarks", None, "bench")
        api.register_student("Bench Student", "B-0001", "", CARD, "bench")
        student = api.login_by_card(CARD)
        assert student is not None
        server_pid = api.pid
        assert server_pid is not None

        print(
            f"kiosk calls over a Unix socket, {args.faculty} faculty members, {args.calls} calls "
            f"each; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )

        def measure(name: str, fn: Callable[[], Any]) -> None:
            fn()  # warm: connection open, adapters built
            s0, t0, w0 = _cpu_s(server_pid), time.thread_time(), time.perf_counter()
            for _ in range(args.calls):
                fn()
            n = args.calls
            print(
                f"  {name:<24} client CPU {1e3 * (time.thread_time() - t0) / n:5.2f} ms  "
                f"wall {1e3 * (time.perf_counter() - w0) / n:6.2f} ms  "
                f"server CPU {1e3 * (_cpu_s(server_pid) - s0) / n:5.2f} ms",
                flush=True,
            )

        measure("faculty list", api.list_faculty)
        measure("waiting counts", api.waiting_counts)
        measure("one faculty member", lambda: api.get_faculty(1))
        measure("card tap (students/me)", lambda: api.login_by_card(CARD))
        measure("my consultations", lambda: api.my_consultations(student.id))
        data = api.client.request("GET", "/api/v1/faculty")
        raw = json.dumps(data)
        adapter = TypeAdapter(list[FacultyView])
        measure("  of which json.loads", lambda: json.loads(raw))
        measure("  of which validation", lambda: adapter.validate_python(data))
    finally:
        api.close()
        broker.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
