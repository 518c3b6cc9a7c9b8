"""Time and memory of ``consultease import-legacy`` on a large original database.

Builds an original-ConsultEase database (10,000 students, 300 faculty, 200,000
consultations by default) on SQLite and on PostgreSQL, then runs the real
command in a child process into an empty database of the same kind, and prints
wall time and the child's peak RSS; then runs it again (the re-run must add
nothing) and prints that too. Targets: under 60 s and under 300 MiB.

    flock /tmp/consultease-bench.lock .venv/bin/python benchmarks/legacy_import.py
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.legacy_fixture import legacy_ddl

PG_ADMIN = os.environ.get(
    "CONSULTEASE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
STATUSES = ("pending", "accepted", "busy", "completed", "cancelled")


def fill(url: str, students: int, faculty: int, consultations: int) -> float:
    """Create and fill the original's schema; returns seconds taken."""
    started = time.monotonic()
    rng = random.Random(11)
    engine = create_engine(url)
    now = datetime(2026, 12, 1, 9, 0)
    with engine.begin() as conn:
        for statement in legacy_ddl(
            engine.dialect.name, busy_at=True, audit=True, enum_names=False
        ):
            conn.execute(text(statement))
        conn.execute(
            text(
                "INSERT INTO faculty (id, name, department, email, status, always_available, "
                "created_at) VALUES (:id, :n, 'Dept', :e, false, false, :c)"
            ),
            [
                {"id": i, "n": f"Dr. Fakultät {i}", "e": f"f{i}@uni.edu", "c": now}
                for i in range(1, faculty + 1)
            ],
        )
        conn.execute(
            text(
                "INSERT INTO students (id, name, department, rfid_uid, created_at) "
                "VALUES (:id, :n, 'Dept', :u, :c)"
            ),
            [
                {"id": i, "n": f"Étudiant {i}", "u": f"{0x20000000 + i:08x}", "c": now}
                for i in range(1, students + 1)
            ],
        )
        batch = []
        for i in range(1, consultations + 1):
            at = now - timedelta(minutes=rng.randrange(0, 60 * 24 * 700))
            batch.append(
                {
                    "id": i,
                    "s": rng.randrange(1, students + 1),
                    "f": rng.randrange(1, faculty + 1),
                    "m": f"Question about chapter {i % 40}",
                    "c": "CS 101",
                    "st": rng.choice(STATUSES),
                    "r": at,
                    "a": at + timedelta(minutes=5),
                    "b": None,
                    "co": at + timedelta(minutes=30),
                }
            )
            if len(batch) == 10_000 or i == consultations:
                conn.execute(
                    text(
                        "INSERT INTO consultations (id, student_id, faculty_id, request_message, "
                        "course_code, status, requested_at, accepted_at, busy_at, completed_at) "
                        "VALUES (:id, :s, :f, :m, :c, CAST(:st AS "
                        + ("consultationstatus" if engine.dialect.name == "postgresql" else "TEXT")
                        + "), :r, :a, :b, :co)"
                    ),
                    batch,
                )
                batch = []
    engine.dispose()
    return time.monotonic() - started


def run_import(source: str, target: str) -> tuple[float, float, float, str]:
    """Run the command in a child: wall seconds, its CPU seconds (user + system), its own peak
    RSS in MiB, and its report's consultations line."""
    env = dict(os.environ, CONSULTEASE_DATA_DIR=tempfile.mkdtemp(prefix="ce-bench-"))
    argv = [sys.executable, "-m", "central_system.cli", "--log-level", "WARNING",
            "import-legacy", "--from", source, "--to", target]  # fmt: skip
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        # wait4: the rusage of this child alone (RUSAGE_CHILDREN would be a maximum over all).
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}): {stderr[-2000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("consultations ")]
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, " ".join(lines[0].split()) if lines else ""


def pg_database(admin, name: str, create: bool) -> str:  # type: ignore[no-untyped-def]
    with admin.connect() as conn:
        if create:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        else:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def main() -> int:
    """Build, import twice, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--faculty", type=int, default=300)
    parser.add_argument("--consultations", type=int, default=200_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    print(
        f"legacy import: {args.students} students, {args.faculty} faculty, "
        f"{args.consultations} consultations; load average {os.getloadavg()[0]:.2f}"
    )
    for kind in args.engines.split(","):
        tmp = Path(tempfile.mkdtemp(prefix="ce-legacy-"))
        names: list[str] = []
        admin = None
        if kind == "sqlite":
            source, target = f"sqlite:///{tmp / 'legacy.db'}", f"sqlite:///{tmp / 'new.db'}"
        else:
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            names = [f"bench_legacy_{uuid.uuid4().hex[:6]}", f"bench_new_{uuid.uuid4().hex[:6]}"]
            source, target = (pg_database(admin, n, True) for n in names)
        try:
            filled = fill(source, args.students, args.faculty, args.consultations)
            first = run_import(source, target)
            second = run_import(source, target)
        finally:
            if admin is not None:
                for n in names:
                    pg_database(admin, n, False)
                admin.dispose()
        print(f"{kind}: source built in {filled:.1f} s")
        for label, (wall, cpu, rss, line) in (("import", first), ("re-run", second)):
            print(
                f"{kind}: {label:<7} wall {wall:6.1f} s, CPU {cpu:6.1f} s, peak RSS {rss:6.1f} MiB"
                f" | {line}"
            )
        print(f"{kind}: load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
