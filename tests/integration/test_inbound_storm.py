"""Campus scale (issue 15): 10,000 desks at once through a real Mosquitto, and again after a broker SIGKILL.

The central system (``ConsultEaseApp(headless=True)``) must apply every desk
response (the firmware sends an ACKNOWLEDGE once, at QoS 0) and end with every
desk's newest presence, and whatever it did not handle must be counted as
superseded by a newer message on the same topic: nothing else may go missing.
The desks are bare connections (``faculty_desk_unit.herd``), all at once.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from central_system import topics
from central_system.controllers.schemas import inbound_stats
from central_system.main import ConsultEaseApp
from central_system.models import Consultation, Faculty, Student
from central_system.services.provisioning import render_mosquitto_conf
from faculty_desk_unit.herd import (
    DeskHerd,
    connect_packet,
    presence_packets,
    publish_packet,
    response_packet,
)
from tests.brokers import MosquittoBroker, TcpGate
from tests.integration.controller_helpers import db_url_of, running_app, wait_until
from tests.integration.service_helpers import running_service

pytestmark = pytest.mark.timeout(240)

DESKS = int(__import__("os").environ.get("STORM_DESKS", "10000"))
RESPONSES = DESKS // 10
SETTLE_TIMEOUT_S = 90.0  # bounded wait for the central system to catch up


def _seed(engine: Engine) -> tuple[list[int], dict[int, int]]:
    """10,000 faculty, 2,000 students and two pending requests for each of 1,000 faculty (bulk)."""
    with engine.begin() as conn:
        conn.execute(
            insert(Faculty),
            [{"name": f"Faculty {i}", "department": "Storm"} for i in range(DESKS)],
        )
        fids = list(conn.scalars(select(Faculty.id).order_by(Faculty.id)))
        conn.execute(
            insert(Student),
            [
                {"name": f"Student {i}", "student_id": f"S-{i:05d}", "rfid_uid": f"{i:08X}"}
                for i in range(2 * RESPONSES)
            ],
        )
        sids = list(conn.scalars(select(Student.id).order_by(Student.id)))
        rng = random.Random(15)
        acked = rng.sample(fids, RESPONSES)
        conn.execute(
            insert(Consultation),
            [
                {"student_id": sids[2 * i + k], "faculty_id": fid, "message": f"storm {k}"}
                for i, fid in enumerate(acked)
                for k in (0, 1)
            ],
        )
        rows = conn.execute(select(Consultation.id, Consultation.faculty_id)).all()
    first: dict[int, int] = {}
    second: dict[int, int] = {}
    for cid, fid in sorted(rows):
        (second if fid in first else first)[fid] = cid
    return fids, {
        **{-cid: fid for fid, cid in second.items()},
        **{cid: fid for fid, cid in first.items()},
    }


Storm = tuple[ConsultEaseApp, list[int], dict[int, int]]


@pytest.fixture
def gate(broker: Any) -> Iterator[TcpGate]:
    """A gate between the central system and the broker (the desks connect to the broker directly)."""
    g = TcpGate(broker.port)
    yield g
    g.stop()


@pytest.fixture
def storm_app(make_settings: Any, engine: Engine, gate: TcpGate) -> Iterator[Storm]:
    """The central system on a seeded database (every desk offline), a liveness timeout that never fires."""
    fids, consultations = _seed(engine)
    settings = make_settings(
        database_url=db_url_of(engine), mqtt_port=gate.port, desk_offline_after_s=600.0
    )
    with running_app(settings) as app:
        yield app, fids, consultations


def _statuses(app: ConsultEaseApp) -> dict[int, tuple[str, bool]]:
    with app.system.engine.connect() as conn:
        return {
            fid: (status, bool(online))
            for fid, status, online in conn.execute(
                select(Faculty.id, Faculty.status, Faculty.desk_online)
            )
        }


def _accepted(app: ConsultEaseApp, cids: list[int]) -> int:
    with app.system.engine.connect() as conn:
        return int(
            conn.scalar(
                select(func.count())
                .select_from(Consultation)
                .where(Consultation.id.in_(cids), Consultation.status == "accepted")
            )
            or 0
        )


def _wait_settled(
    app: ConsultEaseApp,
    want: dict[int, tuple[str, bool]],
    cids: list[int],
    received_at_least: int,
) -> None:
    """Bounded wait until every message arrived and was handled, every response applied, every desk right."""
    service = app.async_mqtt_service
    settled = wait_until(
        lambda: (
            service.get_stats()["messages_received"] >= received_at_least
            and service.inbound_waiting == 0
            and _accepted(app, cids) == len(cids)
            and _statuses(app) == want
        ),
        SETTLE_TIMEOUT_S,
        interval=0.5,
    )
    if not settled:
        stats = service.get_stats()
        statuses = _statuses(app)
        wrong = [fid for fid in want if statuses[fid] != want[fid]]
        raise AssertionError(
            f"accepted {_accepted(app, cids)}/{len(cids)}; {len(wrong)} desks wrong, e.g. "
            f"{[(f, statuses[f], want[f]) for f in wrong[:3]]}; received "
            f"{stats['messages_received']}/{received_at_least}, waiting {stats['inbound_pending']}; "
            f"{stats['inbound']}"
        )


def _check_accounting(stats: dict[str, Any], responses: int) -> None:
    """Every message received was handled or superseded by a newer one on its topic; no response superseded."""
    assert stats["dropped_inbound"] == 0
    assert stats["inbound_pending"] == 0
    for topic_filter, kind in stats["inbound"].items():
        assert kind["received"] == kind["handled"] + kind["superseded"], (topic_filter, kind)
    assert stats["inbound_superseded"] == sum(k["superseded"] for k in stats["inbound"].values())
    response_kind = stats["inbound"][topics.FACULTY_RESPONSES_FILTER]
    assert response_kind["coalesce"] is False
    assert response_kind["superseded"] == 0
    assert response_kind["received"] == response_kind["handled"] == responses


def _want(final: dict[int, bool]) -> dict[int, tuple[str, bool]]:
    return {fid: ("available" if present else "away", True) for fid, present in final.items()}


def test_ten_thousand_desks_at_once_every_response_applied_every_presence_right(
    storm_app: Storm, broker: Any
) -> None:
    app, fids, consultations = storm_app
    first = {fid: cid for cid, fid in consultations.items() if cid > 0}
    drops_before = inbound_stats.total_dropped
    rng = random.Random(1515)
    final = {fid: rng.random() < 0.5 for fid in fids}  # True: AVAILABLE
    # Each desk: its presence, the opposite, then (for 1,000 of them) an ACKNOWLEDGE, then
    # its final presence: 40,000 retained presence messages and 1,000 responses in one burst.
    packets = {
        fid: presence_packets(fid, not final[fid])
        + (response_packet(fid, first[fid]) if fid in first else b"")
        + presence_packets(fid, final[fid])
        for fid in fids
    }
    service = app.async_mqtt_service
    received_before = service.get_stats()["messages_received"]
    with DeskHerd(broker.port) as herd:
        result = herd.send(packets, timeout=60)
        assert not result.failed, f"{len(result.failed)} desks could not connect"
        _wait_settled(
            app, _want(final), list(first.values()), received_before + 4 * DESKS + RESPONSES
        )
    stats = service.get_stats()
    # The broker delivered every message (its queues are unlimited in tests/brokers.py) ...
    assert stats["messages_received"] - received_before == 4 * DESKS + RESPONSES
    # ... and each one was handled or counted as superseded; no response was superseded.
    _check_accounting(stats, RESPONSES)
    assert inbound_stats.total_dropped == drops_before


def test_after_a_broker_sigkill_ten_thousand_desks_reconnect_and_the_central_gets_every_retained_status(
    storm_app: Storm, broker: Any, gate: TcpGate
) -> None:
    app, fids, consultations = storm_app
    second = {fid: -cid for cid, fid in consultations.items() if cid < 0}
    service = app.async_mqtt_service
    rng = random.Random(1516)
    before = {fid: rng.random() < 0.5 for fid in fids}
    with DeskHerd(broker.port) as herd:
        result = herd.send({fid: presence_packets(fid, before[fid]) for fid in fids}, timeout=60)
        assert not result.failed
        _wait_settled(app, _want(before), [], 2 * DESKS)

        # The broker dies (SIGKILL, no persistence: it forgets every retained status) and comes
        # back; all 10,000 desks reconnect at once and publish their presence, half of it changed,
        # while the central system is still cut off ...
        gate.close_gate()
        broker.kill()
        broker.start()
        after = {fid: (not before[fid]) if rng.random() < 0.5 else before[fid] for fid in fids}
        result = herd.send({fid: presence_packets(fid, after[fid]) for fid in fids}, timeout=60)
        assert not result.failed, f"{len(result.failed)} desks could not reconnect"
        # ... then it reconnects and the broker hands it 20,000 retained statuses at once.
        received_before = service.get_stats()["messages_received"]
        gate.open_gate()
        assert wait_until(
            lambda: service.is_connected and service.get_stats()["reconnects"] >= 1, 30
        )
        time.sleep(1.0)  # its SUBSCRIBE is processed before what the desks send next
        # While that is being handled, 1,000 desks answer a request and change presence once more.
        final = dict(after)
        packets: dict[int, bytes] = {}
        for fid, cid in second.items():
            final[fid] = not after[fid]
            packets[fid] = response_packet(fid, cid) + presence_packets(fid, final[fid])
        result = herd.send(packets, timeout=60, reconnect=False)
        assert not result.failed
        _wait_settled(
            app, _want(final), list(second.values()), received_before + 2 * DESKS + 3 * RESPONSES
        )
    stats = service.get_stats()
    assert stats["messages_received"] - received_before == 2 * DESKS + 3 * RESPONSES
    _check_accounting(stats, RESPONSES)


def _count_publishes(sock: socket.socket, quiet_s: float = 5.0, limit_s: float = 60.0) -> int:
    """Read PUBLISH packets until the socket is quiet for ``quiet_s`` (bounded by ``limit_s``)."""
    sock.settimeout(quiet_s)
    buf, count = bytearray(), 0
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            break
        if not data:
            break
        buf += data
        i = 0
        while len(buf) - i >= 2:
            length, mult, j = 0, 1, i + 1
            while j < len(buf):
                length += (buf[j] & 127) * mult
                mult *= 128
                j += 1
                if not buf[j - 1] & 128:
                    break
            else:
                break
            if j + length > len(buf):
                break
            count += buf[i] >> 4 == 3
            i = j + length
        del buf[:i]
    return count


# 8 MB: more than the kernel's socket buffers hold, so the broker itself must queue the rest.
BURST = 20_000


@pytest.mark.parametrize("generated", [True, False], ids=["generated_config", "mosquitto_default"])
def test_the_generated_broker_config_queues_a_burst_for_a_subscriber_that_is_behind(
    generated: bool,
) -> None:
    """A subscriber that is behind gets a 20,000-message QoS 0 burst with our setting; the default drops."""
    line = next(
        x for x in render_mosquitto_conf(Path("/tmp")).splitlines() if x.startswith("max_queued")
    )
    assert int(line.split()[1]) >= 4 * 10_000  # a 10,000-desk reconnect burst
    with MosquittoBroker(extra_config=line if generated else "max_queued_messages 1000") as b:
        sub = socket.create_connection(("127.0.0.1", b.port))
        sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = b"\x00\x01" + b"\x00\x09burst/+/x" + b"\x00"
        sub.sendall(connect_packet("slow-reader") + b"\x82" + bytes([len(body)]) + body)
        time.sleep(0.5)  # SUBACK
        with DeskHerd(b.port) as herd:
            burst = b"".join(publish_packet(f"burst/{i}/x", b"x" * 400) for i in range(BURST))
            assert not herd.send({1: burst}).failed
            time.sleep(2.0)  # the reader is behind: the broker queues (or drops) for it
            sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # now it catches up
            got = _count_publishes(sub)
        sub.close()
    if generated:
        assert got == BURST
    else:
        assert got < BURST  # the trap the generated setting avoids


def test_messages_larger_than_the_read_buffer_arrive_whole_and_in_order(
    broker: Any, make_settings: Any, sqlite_url: str, topic_prefix: str
) -> None:
    """paho reads through a 64 KiB buffer: a 200 KB message between small ones crosses it intact."""
    got: list[bytes] = []
    big = bytes(range(256)) * 800  # 204,800 bytes
    with running_service(make_settings(), sqlite_url) as svc:
        svc.subscribe(f"{topic_prefix}/+", lambda m: got.append(m.payload))
        time.sleep(0.5)  # SUBACK
        with DeskHerd(broker.port) as herd:
            packets = b"".join(
                publish_packet(f"{topic_prefix}/{i}", big if i % 3 == 1 else str(i).encode())
                for i in range(30)
            )
            assert not herd.send({1: packets}).failed
            assert wait_until(lambda: len(got) == 30, 15)
    assert got == [big if i % 3 == 1 else str(i).encode() for i in range(30)]


def test_at_the_bound_the_service_stops_reading_and_still_loses_nothing(
    broker: Any, make_settings: Any, sqlite_url: str, topic_prefix: str
) -> None:
    """Slow handlers, a queue bound of 100: memory stays near the bound, every message is handled."""
    seen: list[bytes] = []
    most_waiting = 0

    def slow(message: Any) -> None:
        nonlocal most_waiting
        most_waiting = max(most_waiting, svc.inbound_waiting)
        seen.append(message.payload)
        time.sleep(0.002)

    with running_service(make_settings(mqtt_inbound_max_pending=100), sqlite_url) as svc:
        svc.subscribe(f"{topic_prefix}/+/responses", slow)  # not coalescible: nothing may go
        time.sleep(0.5)  # SUBACK
        with DeskHerd(broker.port) as herd:
            burst = b"".join(
                publish_packet(f"{topic_prefix}/{i % 50}/responses", str(i).encode())
                for i in range(2000)
            )
            assert not herd.send({1: burst}).failed
            assert wait_until(lambda: len(seen) == 2000, 60)
        stats = svc.get_stats()
    assert seen == [str(i).encode() for i in range(2000)]
    assert stats["inbound_pauses"] >= 1
    # One read may overshoot by what paho handles in one call (at most the relay window).
    assert most_waiting <= 100 + 1000
    assert stats["inbound"][f"{topic_prefix}/+/responses"]["superseded"] == 0
