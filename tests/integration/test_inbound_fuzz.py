"""Random and mutated payloads at every subscribed desk topic: nothing escapes, no row changes but by valid messages.

Volume goes straight at the subscription handlers (the same callables the MQTT
service dispatches to), with a database snapshot around each payload; a smaller
storm goes through the real broker, followed by a valid message that must still work.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, select

from central_system import topics
from central_system.controllers.schemas import inbound_stats
from central_system.db import session_scope
from central_system.main import ConsultEaseApp
from central_system.models import Consultation, Faculty, Student
from central_system.services.async_mqtt_service import MQTTMessage
from tests.integration.controller_helpers import (
    bring_desk_online,
    db_url_of,
    heartbeat_payload,
    presence_payload,
    response_payload,
    running_app,
    seed,
    settle_inbound,
    wait_until,
)

pytestmark = pytest.mark.timeout(600)

UNKNOWN_FID = 999_999

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _valid_payloads(fid: int, cid: int) -> dict[str, dict[str, Any]]:
    return {
        "status": json.loads(presence_payload(fid, "AWAY")),
        "mac_status": {"status": "faculty_absent", "mac": "AA:BB:CC:DD:EE:FF", "timestamp": 5},
        "responses": json.loads(response_payload(fid, cid, "BUSY")),
        "heartbeat": json.loads(heartbeat_payload(fid)),
        "diagnostics": {"faculty_id": fid, "free_heap": 1000, "errors": ["x"]},
    }


def _dumps(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def mutated(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """The base payload with one field replaced, removed or joined by junk, or a byte flipped."""
    keys = sorted(base)
    replaced = st.sampled_from(keys).flatmap(
        lambda k: JSON_VALUES.map(lambda v: _dumps({**base, k: v}))
    )
    removed = st.sampled_from(keys).map(lambda k: _dumps({x: y for x, y in base.items() if x != k}))
    extra = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3).map(
        lambda d: _dumps({**d, **base})
    )
    text = _dumps(base)
    flipped = st.tuples(st.integers(0, len(text) - 1), st.integers(0, 255)).map(
        lambda t: text[: t[0]] + bytes([t[1]]) + text[t[0] + 1 :]
    )
    truncated = st.integers(0, len(text) - 1).map(lambda n: text[:n])
    quote_in_name = st.just(text.replace(b'"Dr. ', b'"Dr. "Bob" ', 1))
    return st.one_of(replaced, removed, extra, flipped, truncated, quote_in_name)


def payloads(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Anything a broken, old or hostile desk might send on one topic."""
    return st.one_of(
        st.binary(max_size=200),
        JSON_VALUES.map(_dumps),
        mutated(base),
        st.just(b" " * (16 * 1024 + 1)),
        st.just(b"[" * 5000),
    )


@pytest.fixture
def fuzz_world(make_settings, engine: Engine, broker) -> Iterator[dict[str, Any]]:
    """Central system; faculty A (online, one pending request) and B (online), and their handlers."""
    settings = make_settings(
        database_url=db_url_of(engine), desk_offline_after_s=600, liveness_check_interval_s=0.5
    )
    with running_app(settings) as app:
        data = seed(app)
        fa, fb = data["faculty"]
        for fac in (fa, fb):
            bring_desk_online(broker.port, fac.id, app.controllers["faculty"])
        settle_inbound(app)  # no late presence copy lands inside a before/after snapshot
        sentinel = app.controllers["consultation"].create_consultation(
            data["students"][0].id, fa.id, "The request that must stay pending"
        )
        handlers: dict[str, Callable[[MQTTMessage], None]] = {
            "status": app.controllers["faculty"].on_status_message,
            "mac_status": app.controllers["faculty"].on_mac_status_message,
            "responses": app.controllers["consultation"].on_response_message,
            "heartbeat": app.controllers["liveness"].on_heartbeat_message,
            "diagnostics": app.controllers["liveness"].on_diagnostics_message,
        }
        yield {
            "app": app,
            "fa": fa.id,
            "fb": fb.id,
            "sentinel": sentinel.id,
            "handlers": handlers,
            "port": broker.port,
        }


def _snapshot() -> tuple[object, ...]:
    with session_scope() as session:
        faculty = session.execute(
            select(
                Faculty.id, Faculty.status, Faculty.desk_online, Faculty.name, Faculty.email
            ).order_by(Faculty.id)
        ).all()
        consultations = session.execute(
            select(Consultation.id, Consultation.status).order_by(Consultation.id)
        ).all()
        students = session.execute(select(Student.id, Student.rfid_uid).order_by(Student.id)).all()
    return tuple(faculty), tuple(consultations), tuple(students)


LEAVES = ["status", "mac_status", "responses", "heartbeat", "diagnostics"]


def _topic(leaf: str, fid: int) -> str:
    return f"consultease/faculty/{fid}/{leaf}"


@pytest.mark.parametrize("leaf", LEAVES)
def test_handlers_survive_random_payloads_and_change_rows_only_for_valid_ones(
    fuzz_world: dict[str, Any], leaf: str
) -> None:
    fa, fb, sentinel = fuzz_world["fa"], fuzz_world["fb"], fuzz_world["sentinel"]
    handler = fuzz_world["handlers"][leaf]
    base = _valid_payloads(fb, sentinel)[leaf]
    counted = {"n": 0}

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        payload=payloads(base),
        fid=st.sampled_from([fb, fb, fb, UNKNOWN_FID]),
        legacy=st.booleans(),
    )
    def run(payload: bytes, fid: int, legacy: bool) -> None:
        counted["n"] += 1
        topic = _topic(leaf, fid)
        if leaf == "status" and legacy:
            topic = topics.legacy_faculty_status_topic(fid)
        before = _snapshot()
        dropped_before = inbound_stats.total_dropped
        ignored_before = sum(inbound_stats.ignored.values())
        handler(MQTTMessage(topic, payload))  # raises nothing, whatever the payload
        after = _snapshot()
        was_dropped = (
            inbound_stats.total_dropped > dropped_before
            or sum(inbound_stats.ignored.values()) > ignored_before
        )
        if was_dropped:
            assert after == before, (topic, payload[:200])
        # Faculty A's request is not faculty B's to answer, whatever B sends.
        consultations = dict(after[1])
        assert consultations[sentinel] == "pending"
        assert fa != fb

    run()
    assert counted["n"] >= 100


def test_storm_through_the_real_broker_then_a_valid_message_still_works(
    fuzz_world: dict[str, Any],
) -> None:
    app: ConsultEaseApp = fuzz_world["app"]
    fa, fb, sentinel, port = (
        fuzz_world["fa"],
        fuzz_world["fb"],
        fuzz_world["sentinel"],
        fuzz_world["port"],
    )
    rng = random.Random(20261127)
    batch: list[tuple[str, bytes]] = []

    @settings(
        max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(data=st.data())
    def collect(data: st.DataObject) -> None:
        for leaf in LEAVES:
            fid = rng.choice([fb, UNKNOWN_FID])
            base = _valid_payloads(fb, sentinel)[leaf]
            batch.append((_topic(leaf, fid), data.draw(payloads(base))))
        batch.append(
            (
                topics.legacy_faculty_status_topic(fb),
                data.draw(payloads(_valid_payloads(fb, 1)["status"])),
            )
        )

    collect()
    assert len(batch) >= 300
    received_before = app.async_mqtt_service.get_stats()["messages_received"]
    errors_before = app.async_mqtt_service.get_stats()["handler_errors"]

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    try:
        for topic, payload in batch:
            client.publish(topic, payload, qos=0)
        info = client.publish(_topic("diagnostics", fb), b'{"marker": true}', qos=1)
        info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()

    stats = app.async_mqtt_service.get_stats
    # The storm arrived (QoS 0 on loopback: nearly all of it) and nothing escaped a handler.
    assert wait_until(
        lambda: stats()["messages_received"] - received_before >= len(batch) * 0.9, timeout=30
    ), stats()
    assert stats()["handler_errors"] == errors_before
    consultation = app.controllers["consultation"]
    assert consultation.get_consultation(sentinel).status == "pending"

    # The service keeps delivering: a valid ACKNOWLEDGE from A's desk still works.
    deadline = time.monotonic() + 20
    client2 = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client2.connect("127.0.0.1", port, 30)
    client2.loop_start()
    try:
        client2.publish(
            topics.faculty_responses_topic(fa), response_payload(fa, sentinel), qos=0
        ).wait_for_publish(10)
        assert wait_until(
            lambda: consultation.get_consultation(sentinel).status == "accepted",
            timeout=max(1.0, deadline - time.monotonic()),
        )
    finally:
        client2.loop_stop()
        client2.disconnect()


@pytest.mark.parametrize("uptime", [63931796709368.0, 2**62, "99999999999999999999", 2**32 - 1, 0])
def test_an_uptime_from_before_year_one_is_no_uptime_and_the_message_still_counts(
    fuzz_world: dict[str, Any], uptime: object
) -> None:
    # 63931796709368 ms is ~2026 years: ``now - uptime`` (the desk's boot time) fell before
    # year 1 and the heartbeat handler raised OverflowError (found by the fuzz test above).
    fb, app = fuzz_world["fb"], fuzz_world["app"]
    liveness = app.controllers["liveness"]
    for leaf, payload in (
        ("heartbeat", {**json.loads(heartbeat_payload(fb)), "uptime": uptime}),
        ("status", {**json.loads(presence_payload(fb, "AVAILABLE")), "timestamp": uptime}),
    ):
        fuzz_world["handlers"][leaf](MQTTMessage(_topic(leaf, fb), _dumps(payload)))
        state = liveness.desk_state(fb)
        assert state is not None and state.online, leaf
        plausible = isinstance(uptime, int) and uptime <= 2**32
        assert (state.uptime_ms == uptime) is plausible, leaf
