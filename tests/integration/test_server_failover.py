"""Two servers on one PostgreSQL database: one active, one standby, and failover.

Real processes: two ``consultease server`` processes, a Mosquitto, PostgreSQL.
The broker's log tells, in order, when each central connection opened and
closed: at no point may two be open (the active server alone holds MQTT).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from central_system.api.client import ApiClient
from central_system.api.errors import KioskError, OutcomeUnknownError, UnavailableError
from central_system.server.central import LOST_LEADERSHIP_EXIT
from central_system.utils import topics
from tests.brokers import MosquittoBroker
from tests.conftest import _reset_pg
from tests.mqtt_probe import Probe
from tests.server_helpers import (
    ServerProcess,
    admin_client,
    bring_online,
    create_admin,
    db_engine,
    enroll,
)

pytestmark = pytest.mark.postgres
MESSAGE = "Please help me with the failover exercise."


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database (failover needs PostgreSQL's advisory locks)."""
    url: str = request.getfixturevalue("pg_server_url")
    _reset_pg(url)
    return url


def _central_connections_never_overlap(log: str) -> list[str]:
    """Replay the broker log's connects/disconnects of central-* clients; the sequence."""
    open_now: set[str] = set()
    sequence: list[str] = []
    for line in log.splitlines():
        connect = re.search(r"New client connected from \S+ as (central-\w+)", line)
        gone = re.search(
            r"[Cc]lient (central-\w+)(?: \[[^\]]*\])? (?:closed its connection|disconnected|has exceeded)",
            line,
        ) or re.search(r"Socket error on client (central-\w+)", line)
        if connect:
            open_now.add(connect.group(1))
            sequence.append(f"+{connect.group(1)}")
            assert len(open_now) <= 1, f"two central connections at once: {sequence}"
        elif gone:
            open_now.discard(gone.group(1))
            sequence.append(f"-{gone.group(1)}")
    return sequence


def _two_servers(
    pg_url: str, broker: MosquittoBroker, tmp_path: Path
) -> tuple[ServerProcess, ServerProcess]:
    a = ServerProcess(pg_url, broker.port, tmp_path, client_id="central-A", name="a").start()
    a.wait_role("active")
    b = ServerProcess(pg_url, broker.port, tmp_path, client_id="central-B", name="b").start()
    b.wait_role("standby")
    return a, b


def test_the_standby_answers_503_and_takes_over_when_the_active_server_is_sigkilled(
    pg_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    broker_log = broker.log_path
    sys_probe = Probe(broker.port, ["$SYS/broker/clients/connected"], qos=0)
    a, b = _two_servers(pg_url, broker, tmp_path)
    desk = None
    try:
        health = b.health()
        assert health is not None and health["role"] == "standby" and health["mqtt"] == "none"
        r = httpx.get(b.url + "/api/v1/faculty", headers={"Authorization": "Bearer cek_x"})
        assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
        with db_engine(pg_url) as engine:
            create_admin(engine)
            tokens = [enroll(engine, f"kiosk-{i}") for i in range(2)]
        admin = admin_client(f"{a.url},{b.url}")
        fids = [admin.save_faculty(None, f"Dr. F{i}", "CS", None).id for i in range(4)]
        cards = [f"04A1B2{i:02X}" for i in range(16)]
        for i, card in enumerate(cards):
            admin.register_student(f"Student {i}", f"2021-{i:05d}", "CS", card)
        for fid in fids:
            bring_online(admin, broker.port, fid)
        desk = Probe(broker.port, [topics.faculty_requests_topic(fid) for fid in fids])
        # The broker's client count from now on: this probe, the desk probe and the central one.
        sys_probe.messages.clear()

        succeeded: list[int] = []
        outcome_unknown = 0
        refused: Counter[str] = Counter()
        stop = threading.Event()
        lock = threading.Lock()

        def kiosk(token: str, offset: int) -> None:
            nonlocal outcome_unknown
            client = ApiClient(f"{a.url},{b.url}", token, timeout=10.0)
            n = offset
            while not stop.is_set():
                card = cards[n % len(cards)]
                fid = fids[(n // len(cards)) % len(fids)]
                n += 2
                try:
                    made = client.create_consultation(card, fid, MESSAGE)
                    with lock:
                        succeeded.append(made.id)
                except OutcomeUnknownError:
                    with lock:
                        outcome_unknown += 1
                except UnavailableError:
                    refused["unavailable"] += 1
                    time.sleep(0.2)
                except KioskError as err:
                    refused[type(err).__name__ + ": " + str(err)[:60]] += 1
                time.sleep(0.05)
            client.close()

        threads = [
            threading.Thread(target=kiosk, args=(t, i), daemon=True) for i, t in enumerate(tokens)
        ]
        for t in threads:
            t.start()
        time.sleep(3)
        before_kill = len(succeeded)
        assert before_kill >= 3, (succeeded, refused)
        killed_at = time.monotonic()
        a.kill()
        b.wait_role("active", timeout=30)
        # Kiosks carry on by themselves: new successes on the new active server.
        deadline = time.monotonic() + 30
        while len(succeeded) < before_kill + 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        failover_s = time.monotonic() - killed_at
        stop.set()
        for t in threads:
            t.join(15)
        assert len(succeeded) >= before_kill + 5, (len(succeeded), before_kill, refused)
        # Every request that got a success answer reaches its desk.
        want = set(succeeded)

        def arrived() -> Counter[int]:
            return Counter(json.loads(m.payload)["id"] for m in list(desk.messages))

        deadline = time.monotonic() + 30
        while not want <= set(arrived()) and time.monotonic() < deadline:
            time.sleep(0.1)
        counts = arrived()
        missing = want - set(counts)
        assert not missing, f"success-answered requests never reached a desk: {sorted(missing)}"
        duplicates = {cid: n for cid, n in counts.items() if n > 1}
        print(
            f"\nfailover: {len(succeeded)} requests answered with success ({before_kill} before "
            f"the kill), {outcome_unknown} outcome unknown, refused {dict(refused)}; "
            f"duplicates at the desk: {len(duplicates)} {duplicates}; "
            f"kill to 5 more successes: {failover_s:.1f} s"
        )
        # Duplicates only for what was in flight at the kill (the new active re-sends
        # unacknowledged outbox rows): a handful, never the whole stream.
        assert len(duplicates) <= 10, duplicates
        # Exactly one central MQTT connection at every moment.
        sequence = _central_connections_never_overlap(broker_log.read_text())
        assert "+central-B" in sequence and sequence.index("+central-B") > sequence.index(
            "+central-A"
        )
        samples = [int(m.payload) for m in list(sys_probe.messages)]
        assert samples and max(samples) <= 3, samples  # two probes + at most one central
    finally:
        stop_all = [a, b]
        for s in stop_all:
            s.stop()
        sys_probe.close()
        if desk is not None:
            desk.close()


def test_an_active_server_that_loses_its_database_connection_exits_and_drops_mqtt(
    pg_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    a, b = _two_servers(pg_url, broker, tmp_path)
    try:
        engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'consultease-server-lock' "
                    "AND datname = current_database() AND pid IN "
                    "(SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
                )
            ).all()
        engine.dispose()
        assert len(killed) == 1
        t0 = time.monotonic()
        assert a.proc is not None
        assert a.proc.wait(15) == LOST_LEADERSHIP_EXIT
        gave_up_s = time.monotonic() - t0
        assert "giving up the active role" in a.log()
        b.wait_role("active", timeout=30)
        sequence = _central_connections_never_overlap(broker.log_path.read_text())
        assert sequence[-2:] == ["-central-A", "+central-B"], sequence
        assert gave_up_s < 10
    finally:
        a.stop()
        b.stop()
