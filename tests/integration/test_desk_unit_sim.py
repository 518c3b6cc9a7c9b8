"""The desk-unit simulator against a real Mosquitto: firmware quirks, improved mode, a fleet."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from faculty_desk_unit import DeskFleet, DeskUnit
from faculty_desk_unit.protocol import build_response_json
from tests.brokers import MosquittoBroker
from tests.mqtt_probe import Probe, publish_raw

FID = 3
NAME = "Dr. Ada Lovelace"
STATUS = f"consultease/faculty/{FID}/status"
LEGACY_STATUS = f"faculty/{FID}/status"
MESSAGES = f"consultease/faculty/{FID}/messages"
CANCELLATIONS = f"consultease/faculty/{FID}/cancellations"
RESPONSES = f"consultease/faculty/{FID}/responses"


class Publisher:
    """One paho connection that plays the central system (``publish_raw`` reconnects each time)."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()

    def __call__(self, topic: str, payload: str | bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publish(broker: MosquittoBroker) -> Iterator[Publisher]:
    """Publish as the central system would."""
    publisher = Publisher(broker.port)
    yield publisher
    publisher.close()


@pytest.fixture
def desk(broker: MosquittoBroker) -> Iterator[DeskUnit]:
    """A connected firmware-mode desk for faculty 3."""
    unit = DeskUnit(FID, NAME, "127.0.0.1", broker.port, mode="firmware").start()
    assert unit.wait_connected(10)
    yield unit
    unit.stop()


def _cancel(cid: int) -> bytes:
    return json.dumps(
        {
            "type": "consultation_cancelled",
            "consultation_id": cid,
            "student_name": "Juan Dela Cruz",
            "course_code": None,
            "cancelled_at": "2026-11-27T16:25:29.123+00:00",
        }
    ).encode()


def _json_on(probe: Probe, topic: str) -> list[dict]:
    return [json.loads(m.payload) for m in list(probe.messages) if m.topic == topic]


def test_firmware_desk_publishes_retained_presence_on_both_topics_at_qos0(
    broker: MosquittoBroker, desk: DeskUnit
) -> None:
    # A subscriber that arrives later gets the retained copy, flagged retained.
    assert desk.wait_for(lambda d: d.stats.presence_published >= 1, 5)
    time.sleep(0.5)  # let the QoS 0 publish reach the broker before the late subscriber
    probe = Probe(broker.port, [STATUS, LEGACY_STATUS], qos=1)
    try:
        assert probe.wait_for(lambda ms: {m.topic for m in ms} == {STATUS, LEGACY_STATUS})
        for message in probe.messages:
            assert message.retain is True
            assert message.qos == 0  # published at QoS 0: the subscription cannot upgrade it
            data = json.loads(message.payload)
            assert data["faculty_id"] == FID
            assert data["faculty_name"] == NAME
            assert data["status"] == "AVAILABLE"
            assert data["present"] is True
            assert isinstance(data["timestamp"], int)
            assert data["timestamp"] < 60_000  # uptime millis, not a clock time
        assert probe.messages[0].payload == probe.messages[1].payload
    finally:
        probe.close()


def test_firmware_desk_uses_a_new_random_client_id_and_clean_session_on_every_connect(
    broker: MosquittoBroker, desk: DeskUnit
) -> None:
    probe = Probe(broker.port, [STATUS, LEGACY_STATUS, MESSAGES])
    try:
        probe.wait_for(lambda ms: len(ms) >= 2)
        first_id = desk.client_id
        assert first_id is not None and re.fullmatch(rf"DeskUnit_{FID}_[0-9a-f]{{6}}", first_id)
        desk.kill_connection(reconnect_after=1.0)
        assert desk.wait_for(lambda d: not d.connected, 5)
        # Sent while the desk is off: a clean session means the broker keeps nothing for it.
        publish_raw(
            broker.port, MESSAGES, b"CID:77 From:Lost Student (SID:1): while you were out", qos=1
        )
        assert probe.wait_for(lambda ms: any(m.topic == MESSAGES for m in ms))
        assert desk.wait_connected(10)
        second_id = desk.client_id
        assert second_id != first_id
        assert second_id is not None and second_id.startswith(f"DeskUnit_{FID}_")
        # Presence is published again after each connect.
        assert probe.wait_for(lambda ms: sum(m.topic == STATUS for m in ms) >= 2)
        assert probe.wait_for(lambda ms: sum(m.topic == LEGACY_STATUS for m in ms) >= 2)
        time.sleep(0.5)
        assert desk.queue == []
        assert not any(topic == MESSAGES for topic, _ in desk.received_raw)
    finally:
        probe.close()


def test_firmware_desk_sets_no_last_will(broker: MosquittoBroker, desk: DeskUnit) -> None:
    probe = Probe(broker.port, [STATUS, LEGACY_STATUS])
    try:
        assert probe.wait_for(lambda ms: len(ms) >= 2)
        before = len(probe.messages)
        desk.kill_connection()  # no DISCONNECT: a will, if any, would fire now
        time.sleep(1.5)
        assert len(probe.messages) == before
        # The retained presence still says AVAILABLE: only central liveness can notice.
        assert json.loads(probe.messages[-1].payload)["status"] == "AVAILABLE"
    finally:
        probe.close()


def test_request_is_parsed_queued_and_acknowledged_with_the_exact_response_json(
    broker: MosquittoBroker, desk: DeskUnit, publish: Publisher
) -> None:
    probe = Probe(broker.port, [RESPONSES])
    try:
        text = "CID:42 From:Juan Dela Cruz (SID:7): Can we discuss (chapter 2): results?"
        publish(MESSAGES, text, qos=2)
        request = desk.wait_for_request(10)
        assert request is not None
        assert (request.cid, request.student_name, request.sid, request.message) == (
            "42",
            "Juan Dela Cruz",
            "7",
            "Can we discuss (chapter 2): results?",
        )
        assert [r.cid for r in desk.queue] == ["42"]

        answered = desk.acknowledge()
        assert answered is not None and answered.cid == "42"
        assert desk.queue == []
        assert probe.wait_for(lambda ms: len(ms) == 1)
        message = probe.messages[0]
        assert message.qos == 0 and message.retain is False
        data = json.loads(message.payload)
        assert re.fullmatch(r"\d+", data["timestamp"])
        expected = build_response_json(FID, NAME, "ACKNOWLEDGE", "42", int(data["timestamp"]), True)
        assert message.payload == expected.encode()
        assert data["message_id"] == "42"
    finally:
        probe.close()


def test_busy_answers_the_named_request_and_leaves_the_others_queued(
    broker: MosquittoBroker, desk: DeskUnit, publish: Publisher
) -> None:
    probe = Probe(broker.port, [RESPONSES])
    try:
        for cid in (10, 11, 12):
            publish(MESSAGES, f"CID:{cid} From:S{cid} (SID:{cid}): hello there", qos=1)
        assert desk.wait_for(lambda d: len(d.queue) == 3, 10)
        assert [r.cid for r in desk.queue] == ["10", "11", "12"]
        assert desk.busy(11) is not None
        assert desk.busy(99) is None  # nothing queued under that id: no response
        assert probe.wait_for(lambda ms: len(ms) >= 1)
        time.sleep(0.3)
        assert len(probe.messages) == 1
        data = json.loads(probe.messages[0].payload)
        assert (data["response_type"], data["message_id"]) == ("BUSY", "11")
        assert [r.cid for r in desk.queue] == ["10", "12"]
    finally:
        probe.close()


def test_non_cid_payloads_are_dropped_and_long_ones_truncated(
    broker: MosquittoBroker, desk: DeskUnit, publish: Publisher
) -> None:
    publish(MESSAGES, "Consultation request from Juan: hello", qos=1)
    long_text = "CID:5 From:Ana (SID:2): " + "x" * 900
    publish(MESSAGES, long_text, qos=1)
    request = desk.wait_for_request(10)
    assert request is not None and request.cid == "5"
    assert len(request.text.encode()) == 512
    assert desk.stats.non_requests_dropped == 1
    assert [r.cid for r in desk.queue] == ["5"]


def test_requests_are_dropped_while_away(
    broker: MosquittoBroker, desk: DeskUnit, publish: Publisher
) -> None:
    probe = Probe(broker.port, [STATUS, LEGACY_STATUS])
    try:
        desk.set_present(False)
        assert probe.wait_for(
            lambda ms: sum(json.loads(m.payload)["status"] == "AWAY" for m in ms) == 2
        )
        publish(MESSAGES, "CID:8 From:Ana (SID:2): are you in?", qos=1)
        assert desk.wait_for(lambda d: d.stats.requests_dropped_away == 1, 10)
        assert desk.queue == []
        desk.set_present(True)
        publish(MESSAGES, "CID:8 From:Ana (SID:2): are you in?", qos=1)
        request = desk.wait_for_request(10)
        assert request is not None and request.cid == "8"
    finally:
        probe.close()


def test_queue_keeps_at_most_ten_requests(
    broker: MosquittoBroker, desk: DeskUnit, publish: Publisher
) -> None:
    for cid in range(1, 13):
        publish(MESSAGES, f"CID:{cid} From:S (SID:1): request {cid}", qos=1)
    assert desk.wait_for(lambda d: d.stats.requests_dropped_full == 2, 10)
    assert [r.cid for r in desk.queue] == [str(c) for c in range(1, 11)]


def test_cancellation_removes_the_request(
    broker: MosquittoBroker, desk: DeskUnit, publish: Publisher
) -> None:
    publish(MESSAGES, "CID:42 From:Juan (SID:7): please meet", qos=1)
    publish(MESSAGES, "CID:43 From:Juan (SID:7): another one", qos=1)
    assert desk.wait_for(lambda d: len(d.queue) == 2, 10)
    publish(CANCELLATIONS, b"{not json", qos=1)
    publish(CANCELLATIONS, _cancel(42), qos=1)
    assert desk.wait_for(lambda d: [r.cid for r in d.queue] == ["43"], 10)
    assert desk.stats.cancellations == 1
    assert desk.stats.malformed_dropped == 1
    assert desk.acknowledge(42) is None  # a cancelled request can no longer be answered


def test_desk_reconnects_after_a_broker_restart(broker: MosquittoBroker, desk: DeskUnit) -> None:
    broker.restart()  # SIGKILL, then a fresh broker on the same port: retained state is gone
    assert desk.wait_for(lambda d: d.stats.link_losses >= 1, 30)
    assert desk.wait_connected(30)
    probe = Probe(broker.port, [STATUS, LEGACY_STATUS])
    try:
        # The presence published after the reconnect is retained on the new broker.
        assert probe.wait_for(lambda ms: {m.topic for m in ms} == {STATUS, LEGACY_STATUS}, 10)
    finally:
        probe.close()


def test_improved_desk_last_will_arrives_when_its_socket_is_killed(
    broker: MosquittoBroker,
) -> None:
    unit = DeskUnit(FID, NAME, "127.0.0.1", broker.port, mode="improved").start()
    probe = Probe(broker.port, [STATUS])
    try:
        assert unit.wait_connected(10)
        assert unit.client_id == f"desk-{FID}"
        assert probe.wait_for(lambda ms: any(b'"AVAILABLE"' in m.payload for m in ms))
        unit.kill_connection()
        assert probe.wait_for(lambda ms: any(b'"OFFLINE"' in m.payload for m in ms), 10)
        will = json.loads(probe.messages[-1].payload)
        assert will["faculty_id"] == FID
        assert will["status"] == "OFFLINE"
        assert will["present"] is False
        late = Probe(broker.port, [STATUS])  # the will was retained
        try:
            assert late.wait_for(lambda ms: len(ms) == 1)
            assert late.messages[0].retain is True
            assert json.loads(late.messages[0].payload)["status"] == "OFFLINE"
        finally:
            late.close()
    finally:
        probe.close()
        unit.stop()


def test_improved_desk_keeps_its_session_and_receives_requests_sent_while_it_was_off(
    broker: MosquittoBroker, publish: Publisher
) -> None:
    unit = DeskUnit(FID, NAME, "127.0.0.1", broker.port, mode="improved").start()
    try:
        assert unit.wait_connected(10)
        unit.kill_connection(reconnect_after=1.5)
        assert unit.wait_for(lambda d: not d.connected, 5)
        publish(MESSAGES, "CID:9 From:Ana (SID:2): while you were out", qos=1)
        request = unit.wait_for_request(15)
        assert request is not None and request.cid == "9"
        assert list(unit.client_ids) == [f"desk-{FID}", f"desk-{FID}"]
    finally:
        unit.stop()


def test_fleet_of_50_desks_connects_and_every_desk_heartbeats(broker: MosquittoBroker) -> None:
    probe = Probe(broker.port, ["consultease/faculty/+/heartbeat"])
    fleet = DeskFleet(50, "127.0.0.1", broker.port, heartbeat_interval=1.0, first_faculty_id=101)
    try:
        fleet.start()
        assert fleet.wait_all_connected(30)

        def every_desk_beat_twice(messages: list) -> bool:
            counts: dict[int, int] = {}
            for m in list(messages):
                fid = json.loads(m.payload)["faculty_id"]
                counts[fid] = counts.get(fid, 0) + 1
            return set(counts) == set(range(101, 151)) and min(counts.values()) >= 2

        assert probe.wait_for(every_desk_beat_twice, 20)
        beat = json.loads(probe.messages[0].payload)
        assert beat["presence_status"] == "AVAILABLE" and isinstance(beat["uptime"], int)
        assert all(m.qos == 0 and not m.retain for m in list(probe.messages))
        # One shared network thread, not one per desk.
        assert fleet.loop.watched_count == 50
    finally:
        fleet.stop()
        probe.close()


def test_fleet_auto_ack_answers_every_request(broker: MosquittoBroker) -> None:
    probe = Probe(broker.port, ["consultease/faculty/+/responses"])
    fleet = DeskFleet(5, "127.0.0.1", broker.port, auto_ack=0.2, first_faculty_id=1)
    try:
        fleet.start()
        assert fleet.wait_all_connected(30)
        for fid in range(1, 6):
            publish_raw(
                broker.port,
                f"consultease/faculty/{fid}/messages",
                f"CID:{fid * 100} From:S (SID:1): hi",
                qos=1,
            )
        assert probe.wait_for(lambda ms: len(ms) == 5, 10)
        answered = {json.loads(m.payload)["message_id"] for m in probe.messages}
        assert answered == {str(fid * 100) for fid in range(1, 6)}
        assert fleet.totals()["queued"] == 0
    finally:
        fleet.stop()
        probe.close()


def test_flapping_fleet_drops_wifi_and_away_and_calms_down(broker: MosquittoBroker) -> None:
    fleet = DeskFleet(
        20,
        "127.0.0.1",
        broker.port,
        heartbeat_interval=1.0,
        first_faculty_id=201,
        flap_interval=0.3,
        long_outage_s=(0.5, 1.0),
    )
    try:
        fleet.start()
        assert fleet.wait_all_connected(30)
        assert fleet.desks[0].wait_for(
            lambda _d: (
                fleet.totals()["link_losses"] >= 4 and any(not d.present for d in fleet.desks)
            ),
            15,
        )
        fleet.calm()
        assert fleet.wait_all_connected(30)  # blips, outages and reboots all end
        assert all(d.present for d in fleet.desks)
        assert fleet.totals()["connects"] >= 20 + 4  # every lost link came back
    finally:
        fleet.stop()


def test_a_firmware_desk_queues_a_copy_and_forgets_everything_on_reboot(
    broker: MosquittoBroker, desk: DeskUnit, publish: Publisher
) -> None:
    publish(MESSAGES, "CID:7 From:Ana (SID:2): first", qos=1)
    publish(MESSAGES, "CID:7 From:Ana (SID:2): first", qos=1)
    assert desk.wait_for(lambda d: len(d.queue) == 2, 10)
    assert desk.deliveries["7"] == 2 and desk.stats.copies_shown == 1
    # A withdrawal (any type: the firmware does not read it) removes one copy.
    publish(CANCELLATIONS, '{"consultation_id": 7, "type": "consultation_resend"}', qos=1)
    assert desk.wait_for(lambda d: len(d.queue) == 1 and d.stats.withdrawals == 1, 10)
    time.sleep(1.0)
    uptime = desk.uptime_ms()
    desk.reboot(down_for=0.3)
    assert desk.queue == []
    assert desk.wait_connected(10)
    assert desk.uptime_ms() < uptime  # millis() starts again
    assert desk.stats.reboots == 1
