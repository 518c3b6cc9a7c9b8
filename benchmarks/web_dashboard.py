"""The web dashboard's numbers (issue 10).

(1) list: the administrator's consultation list with 100,000 consultations (100 faculty,
    5,000 students) in PostgreSQL: each page variant requested ``--requests`` times over
    loopback with keep-alive, signed in; p50/p99/max of the time from sending the request
    to the last byte (an upper bound on the server's time). Target: p99 <= 100 ms.
(2) live: a faculty member's page open in headless Chromium; a firmware-mode desk presses
    ACKNOWLEDGE on a request; the time from just before the desk's publish to the moment
    the request leaves the open page (a MutationObserver in the page stamps Date.now(),
    the same clock). Target: p99 <= 300 ms on loopback.

    flock /tmp/consultease-bench.lock .venv/bin/python benchmarks/web_dashboard.py \
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--part list|live|both]
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
from sqlalchemy import create_engine, text  # noqa: E402

from central_system.api.client import ApiClient  # noqa: E402
from central_system.controllers.admin_controller import AdminController  # noqa: E402
from central_system.controllers.web_accounts import WebAccounts  # noqa: E402
from faculty_desk_unit.desk import DeskUnit  # noqa: E402
from tests.brokers import MosquittoBroker  # noqa: E402
from tests.server_helpers import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    admin_client,
    create_admin,
    db_engine,
    enroll,
    running_server,
)
from tests.web import browser  # noqa: E402
from tests.web.helpers import CSRF_RE  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CONSULTATIONS = 100_000


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def show(name: str, ms: list[float]) -> None:
    print(
        f"  {name:<44} n={len(ms):4d}  p50 {statistics.median(ms):7.1f} ms  "
        f"p99 {pct(ms, 0.99):7.1f} ms  max {max(ms):7.1f} ms"
    )


def seed(url: str) -> None:
    """100 faculty, 5,000 students, 100,000 consultations in every status (generate_series)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO faculty (name, department, email, status, desk_online, created_at) "
                "SELECT 'Faculty ' || g, 'Dept ' || (g % 10), 'f' || g || '@example.edu', "
                "'offline', false, now() FROM generate_series(1, 100) g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO students (name, student_id, department, rfid_uid, created_at) "
                "SELECT 'Student ' || g, 'S' || g, 'CS', lpad(to_hex(g), 8, '0'), now() "
                "FROM generate_series(1, 5000) g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO consultations (student_id, faculty_id, message, course_code, status, "
                "created_at) SELECT (SELECT min(id) FROM students) + g % 5000, "
                "(SELECT min(id) FROM faculty) + g % 100, 'Question number ' || g, 'CS ' || (100 + g % 50), "
                "(ARRAY['completed','completed','completed','declined','busy','cancelled','expired',"
                "'accepted'])[1 + g % 8], now() - g * interval '1 minute' "
                "FROM generate_series(1, :n) g"
            ),
            {"n": CONSULTATIONS},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def sign_in(client: httpx.Client, username: str, password: str) -> None:
    page = client.get("/web/login")
    token = CSRF_RE.search(page.text)
    assert token
    r = client.post(
        "/web/login", data={"csrf": token.group(1), "username": username, "password": password}
    )
    assert r.status_code == 303, r.text[:300]


def part_list(pg: str, requests: int) -> None:
    name = f"consultease_bench_web_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg.rsplit("/", 1)[0] + f"/{name}"
    broker = MosquittoBroker().start()
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            running_server(url, broker.port, Path(tmp)) as server,
        ):
            t0 = time.perf_counter()
            seed(url)
            print(
                f"(1) consultation list, {CONSULTATIONS:,} consultations in PostgreSQL "
                f"(seeded in {time.perf_counter() - t0:.1f} s)"
            )
            with db_engine(url) as engine:
                create_admin(engine)
            with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as client:
                sign_in(client, ADMIN_USER, ADMIN_PASSWORD)
                first = client.get("/web/admin/consultations")
                assert first.status_code == 200 and "Question number" in first.text
                variants = {
                    "first page": "/web/admin/consultations",
                    "status=completed": "/web/admin/consultations?status=completed",
                    "faculty=7": "/web/admin/consultations?faculty=7",
                    "status=busy & faculty=7": "/web/admin/consultations?status=busy&faculty=7",
                    "deep page (before=50000)": "/web/admin/consultations?before=50000",
                    "search 'Student 42' (name, ILIKE)": "/web/admin/consultations?q=Student+42",
                }
                for label, path in variants.items():
                    for _ in range(5):
                        client.get(path)  # warm the pools and caches
                    ms = []
                    for _ in range(requests):
                        t = time.perf_counter()
                        r = client.get(path)
                        ms.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200
                    show(label, ms)
    finally:
        broker.cleanup()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


OBSERVER = """
window.__gone = {};
new MutationObserver(function () {
  for (var id in window.__watch) {
    if (!document.getElementById('request-' + id) && !(id in window.__gone)) {
      window.__gone[id] = Date.now();
    }
  }
}).observe(document.getElementById('queue'), {childList: true, subtree: true});
window.__watch = {};
"""


def part_live(rounds: int) -> None:
    if not browser.available():
        print("(2) skipped: needs chromium and chromium-driver")
        return
    broker = MosquittoBroker().start()
    password = AdminController.generate_password()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db_url = f"sqlite:///{Path(tmp) / 'consultease.db'}"
            with (
                running_server(db_url, broker.port, Path(tmp)) as server,
                db_engine(db_url) as engine,
            ):
                create_admin(engine)
                api = admin_client(server.url)
                fac = api.save_faculty(None, "Dr. Ada Cruz", "CS", "ada@example.edu")
                cards = [f"04A1B2{i:02X}" for i in range(8)]
                for i, card in enumerate(cards):
                    api.register_student(f"Student {i}", f"2021-{i:05d}", "CS", card)
                accounts = WebAccounts(engine)
                accounts.accept(accounts.invite(fac.id, "ada", actor="bench").code, password)
                kiosk = ApiClient(server.url, enroll(engine, "bench"))
                desk = DeskUnit(fac.id, "Dr. Ada Cruz", "127.0.0.1", broker.port).start()
                assert desk.wait_connected(10)
                deadline = time.monotonic() + 20
                while not kiosk.faculty_member(fac.id).can_request and time.monotonic() < deadline:
                    time.sleep(0.1)
                with browser.chromium() as driver:
                    from selenium.webdriver.common.by import By

                    driver.get(server.url + "/web/login")
                    driver.find_element(By.ID, "username").send_keys("ada")
                    driver.find_element(By.ID, "password").send_keys(password)
                    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
                    time.sleep(1.0)
                    driver.get(server.url + "/web/faculty")
                    time.sleep(1.0)
                    driver.execute_script(OBSERVER)
                    ms: list[float] = []
                    for i in range(rounds):
                        card = cards[i % len(cards)]
                        c = kiosk.create_consultation(
                            card, fac.id, f"Benchmark question {i}", "CS101"
                        )
                        assert desk.wait_for_request(10, c.id) is not None
                        end = time.monotonic() + 10
                        while time.monotonic() < end and not driver.execute_script(
                            f"return !!document.getElementById('request-{c.id}');"
                        ):
                            time.sleep(0.01)
                        driver.execute_script(f"window.__watch[{c.id}] = 1;")
                        time.sleep(0.05)
                        t0 = time.time() * 1000
                        desk.acknowledge(c.id)
                        gone = None
                        end = time.monotonic() + 10
                        while gone is None and time.monotonic() < end:
                            time.sleep(0.02)
                            gone = driver.execute_script(f"return window.__gone[{c.id}] || null;")
                        assert gone is not None, f"request {c.id} never left the page"
                        ms.append(float(gone) - t0)
                    print(
                        f"(2) desk ACKNOWLEDGE -> open faculty page updated ({rounds} rounds, "
                        "SQLite, firmware-mode desk, headless Chromium)"
                    )
                    show("acknowledge to page", ms)
                desk.stop()
    finally:
        broker.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default=PG_DEFAULT)
    parser.add_argument("--part", choices=("list", "live", "both"), default="both")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    if args.part in ("list", "both"):
        part_list(args.pg, args.requests)
    if args.part in ("live", "both"):
        part_live(args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
