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
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from central_system import topics
from central_system.api.client import ApiClient
from central_system.api.errors import KioskError, OutcomeUnknownError, UnavailableError
from central_system.config import Settings
from central_system.server.central import LOST_LEADERSHIP_EXIT
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
    # A standby says "database": "error" until its first try for the lock has answered.
    deadline = time.monotonic() + 30
    while (b.health() or {}).get("database") != "ok" and time.monotonic() < deadline:
        time.sleep(0.1)
    return a, b


class FailoverFigures(UserWarning):
    """The failover test's counts, shown in pytest's warnings summary on a passing run."""


@dataclass(frozen=True)
class OutboxRow:
    """One message still in the dead server's outbox: what the new active server re-sends."""

    topic: str
    cid: int
    created_at: datetime


def _cid(topic: str, payload: bytes) -> int:
    """The consultation id of a desk message: ``CID:{cid} …`` (contract 1.1) or JSON (1.2)."""
    if topic.endswith("/messages"):
        match = re.match(rb"CID:(\d+) ", payload)
        assert match, payload[:80]
        return int(match.group(1))
    return int(json.loads(payload)["id"])


def _outbox_at_the_kill(engine: Engine, desk_topics: set[str]) -> tuple[int, list[OutboxRow]]:
    """All rows in ``mqtt_outbox`` now (what the next active server publishes); the desk's.

    A row leaves the outbox only when the broker has acknowledged it (PUBACK for
    QoS 1, PUBCOMP for QoS 2) and the relay's batched delete has committed (every
    0.25 s), so after a SIGKILL the table holds exactly what was in flight: not
    yet handed to the broker, handed and not acknowledged, or acknowledged and not
    yet deleted. The new active server publishes every row it finds at start-up.
    Only the last two kinds can have reached the desk already; all three are "in
    flight at the kill" here, and a duplicate that is none of them is a bug. (A
    commit of the dead server that lands after this read only adds rows it never
    got to publish, since it publishes a row only after its insert has committed.)
    """
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT topic, payload, created_at FROM mqtt_outbox")).all()
    return len(rows), [
        OutboxRow(r.topic, _cid(r.topic, bytes(r.payload)), r.created_at.astimezone(UTC))
        for r in rows
        if r.topic in desk_topics
    ]


def test_the_standby_answers_503_and_takes_over_when_the_active_server_is_sigkilled(
    pg_url: str,
    broker: MosquittoBroker,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    broker_log = broker.log_path
    sys_probe = Probe(broker.port, ["$SYS/broker/clients/connected"], qos=0)
    a, b = _two_servers(pg_url, broker, tmp_path)
    desk = None
    snapshot_engine = create_engine(pg_url)
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
        # The desk: the deployed firmware reads /messages (contract 1.1, subscribed at QoS 1
        # as the firmware does); newer desks read /requests (1.2). Both are checked.
        messages = {topics.faculty_messages_topic(fid): fid for fid in fids}
        requests = {topics.faculty_requests_topic(fid): fid for fid in fids}
        desk = Probe(broker.port, [*messages, *requests])
        # The broker's client count from now on: this probe, the desk probe and the central one.
        sys_probe.messages.clear()

        succeeded: dict[int, int] = {}  # consultation id -> faculty id, answered with success
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
                        succeeded[made.id] = fid
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
        with snapshot_engine.connect():
            pass  # connected before the kill: the snapshot below is one query
        killed_at = time.monotonic()
        killed_wall = datetime.now(UTC)
        a.kill()
        outbox_rows, in_flight = _outbox_at_the_kill(snapshot_engine, set(messages) | set(requests))
        snapshot_s = time.monotonic() - killed_at
        # The snapshot is what the standby will find: it starts the central system (and
        # reads the outbox) only a takeover grace after it won the lock, and it cannot win
        # the lock before the kill.
        grace = Settings.model_fields["server_takeover_grace_s"].default
        assert snapshot_s < grace, f"outbox read {snapshot_s:.2f} s after the kill"
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
        with lock:
            want = dict(succeeded)

        def arrived(channel: dict[str, int]) -> Counter[tuple[int, int]]:
            """(faculty id, consultation id) -> copies received on ``channel``'s topics."""
            return Counter(
                (channel[m.topic], _cid(m.topic, m.payload))
                for m in list(desk.messages)
                if m.topic in channel
            )

        # Every request that got a success answer reaches its desk, on both channels.
        expected = {(fid, cid) for cid, fid in want.items()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            expected <= set(arrived(messages)) and expected <= set(arrived(requests))
        ):
            time.sleep(0.1)
        time.sleep(1.0)  # a late re-send from the new server would arrive within this
        duplicates: dict[str, dict[int, int]] = {}
        for name, channel in (("messages", messages), ("requests", requests)):
            counts = arrived(channel)
            missing = expected - set(counts)
            assert not missing, f"success-answered requests never reached /{name}: {missing}"
            duplicates[name] = {cid: n for (_fid, cid), n in counts.items() if n > 1}
            # Duplicates only for messages in flight at the kill, each sent once by the
            # dead server and once more by the new one (at-least-once relay).
            in_flight_here = {row.cid for row in in_flight if row.topic in channel}
            stray = set(duplicates[name]) - in_flight_here
            assert not stray, (
                f"/{name}: duplicates that were not in flight at the kill: {stray} "
                f"(in flight: {sorted(in_flight_here)})"
            )
            assert all(n == 2 for n in duplicates[name].values()), duplicates[name]
        oldest_s = max(
            ((killed_wall - row.created_at).total_seconds() for row in in_flight),
            default=0.0,
        )
        # "In flight" is a short window, never a backlog: every such row was written
        # moments before the kill (the relay hands a row to the broker as soon as it is
        # committed and deletes it within 0.25 s of the acknowledgement).
        assert oldest_s < 5.0, (oldest_s, in_flight)
        recovered = re.findall(
            r"recovering (\d+) unacknowledged messages from the outbox", b.log_path.read_text()
        )
        figures = {
            "answered_with_success": len(want),
            "before_the_kill": before_kill,
            "outcome_unknown": outcome_unknown,
            "refused": dict(refused),
            "outbox_rows_at_kill": outbox_rows,
            "desk_messages_in_flight_at_kill": sum(r.topic in messages for r in in_flight),
            "desk_duplicates_messages": len(duplicates["messages"]),
            "desk_duplicates_requests": len(duplicates["requests"]),
            "oldest_in_flight_s": round(oldest_s, 3),
            "outbox_rows_recovered_by_new_active": int(recovered[0]) if recovered else 0,
            "kill_to_5_more_successes_s": round(failover_s, 1),
        }
        for key, value in figures.items():
            record_property(key, value)
        warnings.warn(FailoverFigures(f"failover: {figures}"), stacklevel=1)
        # Exactly one central MQTT connection at every moment.
        sequence = _central_connections_never_overlap(broker_log.read_text())
        assert "+central-B" in sequence and sequence.index("+central-B") > sequence.index(
            "+central-A"
        )
        samples = [int(m.payload) for m in list(sys_probe.messages)]
        if not samples:
            # Mosquitto publishes the count only when it differs at a tick (about every 2 s
            # with sys_interval 1): when A's death and B's connect fall between the same two
            # ticks the count is 3 again and nothing is published (seen once in CI). Then the
            # retained value, the last tick's count; the broker-log replay above is the
            # strict proof of one central connection at a time.
            fresh = Probe(broker.port, ["$SYS/broker/clients/connected"], qos=0)
            try:
                deadline = time.monotonic() + 5
                while not fresh.messages and time.monotonic() < deadline:
                    time.sleep(0.05)
                samples = [int(m.payload) for m in list(fresh.messages)]
            finally:
                fresh.close()
        assert samples and max(samples) <= 3, samples  # two probes + at most one central
    finally:
        stop_all = [a, b]
        for s in stop_all:
            s.stop()
        snapshot_engine.dispose()
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
