"""Campus scale (issue 15): 10,000 desks at once through a real Mosquitto, and again after a broker SIGKILL.

The central system (``ConsultEaseApp(headless=True)``) must apply every desk
response (the firmware sends an ACKNOWLEDGE once, at QoS 0) and end with every
desk's newest presence, and whatever it did not handle must be counted as
superseded by a newer message on the same topic: nothing else may go missing.
The desks are bare connections (``faculty_desk_unit.herd``), all at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from central_system.controllers.schemas import inbound_stats
from central_system.main import ConsultEaseApp
from central_system.models import Consultation, Faculty, Student
from central_system.utils import topics
from faculty_desk_unit.herd import DeskHerd, presence_packets, response_packet
from tests.brokers import TcpGate
from tests.integration.controller_helpers import db_url_of, running_app, wait_until

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
