"""The wire contract's numbers and rules, end to end: central system, real Mosquitto, the firmware-mode desk.

The numbers are written here as literals, from the contract (shared/mqtt-contract.md)
and docs/mqtt-topics.md, never imported from the code: a test that compares the code
with its own constant cannot notice when the constant changes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, select

from central_system import topics
from central_system.controllers import ConsultationController, ConsultationEvent, outbound
from central_system.db import session_scope
from central_system.main import ConsultEaseApp
from central_system.models import AuditLog
from central_system.services.async_mqtt_service import MQTTMessage
from faculty_desk_unit import DeskUnit
from faculty_desk_unit.protocol import build_response_json
from tests.integration.controller_helpers import (
    db_url_of,
    heartbeat_payload,
    presence_payload,
    response_payload,
    running_app,
    seed,
    wait_until,
)
from tests.mqtt_probe import Probe, publish_raw

pytestmark = pytest.mark.timeout(120)

FIRMWARE_MAX_MESSAGE_BYTES = 512  # contract 1.1: the deployed firmware's MAX_MESSAGE_LENGTH
MAX_REQUEST_CHARS = 500  # the kiosk's limit on a request's length, in characters
MAX_INBOUND_BYTES = 16 * 1024  # docs/mqtt-topics.md: "Over 16 KiB ... dropped"
ELLIPSIS = "…"


@pytest.fixture
def central(make_settings, engine: Engine) -> Iterator[ConsultEaseApp]:
    """The headless central system on both databases (liveness slow enough to stay out of the way)."""
    settings = make_settings(
        database_url=db_url_of(engine), desk_offline_after_s=600, liveness_check_interval_s=0.5
    )
    with running_app(settings) as app:
        yield app


@contextmanager
def _online_desk(central: ConsultEaseApp, broker, mode: str) -> Iterator[dict[str, Any]]:
    """One student, and faculty 0 with a desk of ``mode`` that is online and available."""
    data = seed(central)
    fac = data["faculty"][0]
    desk = DeskUnit(fac.id, fac.name, "127.0.0.1", broker.port, mode=mode).start()
    try:
        assert desk.wait_connected(10)
        faculty = central.controllers["faculty"]
        assert wait_until(
            lambda: (f := faculty.get_faculty(fac.id)).desk_online and f.status == "available",
            15,
        ), faculty.get_faculty(fac.id)
        yield {"desk": desk, "fid": fac.id, "student": data["students"][0], **data}
    finally:
        desk.stop()


@pytest.fixture
def firmware_desk(central: ConsultEaseApp, broker) -> Iterator[dict[str, Any]]:
    """A deployed-firmware desk (ASCII screen, clean session), online and available."""
    with _online_desk(central, broker, "firmware") as world:
        yield world


@pytest.fixture
def utf8_desk(central: ConsultEaseApp, broker) -> Iterator[dict[str, Any]]:
    """An improved desk (it announces a UTF-8 screen), online and available."""
    with _online_desk(central, broker, "improved") as world:
        yield world


def _events(controller: ConsultationController) -> list[ConsultationEvent]:
    events: list[ConsultationEvent] = []
    lock = threading.Lock()

    def on_event(event: ConsultationEvent) -> None:
        with lock:
            events.append(event)

    controller.add_listener(on_event)
    return events


def _rejections(cid: int) -> list[AuditLog]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(AuditLog).where(
                    AuditLog.action == "consultation_response_rejected",
                    AuditLog.target == f"consultation:{cid}",
                )
            )
        )


def _send_long_request(central: ConsultEaseApp, world: dict[str, Any]) -> tuple[Any, str, bytes]:
    """A 500-character request of two-, three- and four-byte characters; what the desk received."""
    desk: DeskUnit = world["desk"]
    controller: ConsultationController = central.controllers["consultation"]
    # So a cut at any byte count can fall inside a character.
    message = ("é日😀" * MAX_REQUEST_CHARS)[:MAX_REQUEST_CHARS]
    assert len(message) == 500 and len(message.encode()) > 1000
    c = controller.create_consultation(world["student"].id, world["fid"], message)
    assert desk.wait_for_request(15, cid=c.id) is not None, desk.received_raw
    raw = [p for t, p in desk.received_raw if t == topics.faculty_messages_topic(world["fid"])]
    # Only the wire copy is shortened: the database keeps all of it.
    stored = controller.get_consultation(c.id)
    assert stored is not None and stored.message == message
    return c, message, raw[-1]


def test_a_500_character_multibyte_request_reaches_the_firmware_desk_in_512_ascii_bytes(
    central: ConsultEaseApp, firmware_desk: dict[str, Any]
) -> None:
    # Contract 1.1 and 3.1, docs/mqtt-topics.md: the firmware cuts at 512 bytes and draws
    # each byte as one ASCII glyph, so it gets at most 512 bytes of folded ASCII, "..." last.
    c, message, raw = _send_long_request(central, firmware_desk)
    assert len(raw) <= 512
    assert len(raw) > 512 - 4  # filled up, not cut short
    assert all(0x20 <= b < 0x7F for b in raw)  # one glyph per byte, nothing cut in half
    text = raw.decode("ascii")
    assert text.endswith("...")
    sid = firmware_desk["student"].id
    assert text.startswith(f"CID:{c.id} From:Maria Santos (SID:{sid}): ")
    request = firmware_desk["desk"].wait_for_request(1, cid=c.id)
    assert request is not None and request.sid == str(sid)
    assert "\ufffd" not in request.text
    assert outbound.fold_to_ascii(message).startswith(request.message[: -len("...")])


def test_a_500_character_multibyte_request_reaches_a_utf8_desk_in_512_bytes_ending_in_ellipsis(
    central: ConsultEaseApp, utf8_desk: dict[str, Any]
) -> None:
    # Contract 1.1: at most 512 bytes, shortened on a UTF-8 character boundary, "…" last.
    c, message, raw = _send_long_request(central, utf8_desk)
    assert len(raw) <= 512
    assert len(raw) > 512 - 4 - len(ELLIPSIS.encode())  # filled up, not cut short
    text = raw.decode("utf-8")  # strict: the cut is on a character boundary
    assert text.endswith(ELLIPSIS)
    prefix = f"CID:{c.id} From:Maria Santos (SID:{utf8_desk['student'].id}): "
    assert text.startswith(prefix)
    shortened = text[len(prefix) : -len(ELLIPSIS)]
    assert shortened and message.startswith(shortened)
    request = utf8_desk["desk"].wait_for_request(1, cid=c.id)
    assert request is not None and request.message == shortened + ELLIPSIS
    assert "\ufffd" not in request.text


def test_busy_after_acknowledge_through_the_broker_is_refused_and_audited(
    central: ConsultEaseApp, firmware_desk: dict[str, Any], broker
) -> None:
    desk: DeskUnit = firmware_desk["desk"]
    fid = firmware_desk["fid"]
    controller: ConsultationController = central.controllers["consultation"]
    events = _events(controller)
    ui_probe = Probe(broker.port, [topics.ui_consultation_events_topic()])
    try:
        c = controller.create_consultation(
            firmware_desk["student"].id, fid, "May I see you about my thesis?"
        )
        assert desk.wait_for_request(15, cid=c.id) is not None
        assert desk.acknowledge(c.id) is not None  # the button, through the broker
        assert wait_until(lambda: controller.get_consultation(c.id).status == "accepted")
        # The same ACKNOWLEDGE again (the firmware retries): a no-op, neither applied nor audited.
        ack = build_response_json(
            fid, desk.faculty_name, "ACKNOWLEDGE", str(c.id), desk.uptime_ms(), True
        )
        stats = central.controllers["inbound_stats"]
        parsed = stats.accepted.get("ResponsePayload", 0)
        publish_raw(broker.port, topics.faculty_responses_topic(fid), ack, qos=0)
        assert wait_until(lambda: stats.accepted.get("ResponsePayload", 0) > parsed)
        assert wait_until(lambda: False, timeout=0.3) or _rejections(c.id) == []
        # A second press on a copy of the same request (contract 3.1: a re-sent copy is
        # queued as a second request): the firmware's exact BUSY bytes, at QoS 0.
        busy = build_response_json(
            fid, desk.faculty_name, "BUSY", str(c.id), desk.uptime_ms(), True
        )
        publish_raw(broker.port, topics.faculty_responses_topic(fid), busy, qos=0)
        assert wait_until(lambda: len(_rejections(c.id)) == 1), "BUSY after ACKNOWLEDGE not audited"
        row = _rejections(c.id)[0]
        assert row.success is False and row.actor == f"desk:{fid}"
        assert row.details is not None
        assert row.details["reason"] == "transition accepted -> busy not allowed"
        assert row.details["response_type"] == "BUSY"
        stored = controller.get_consultation(c.id)
        assert stored is not None and stored.status == "accepted" and stored.busy_at is None
        assert [(e.previous_status, e.status) for e in events] == [
            (None, "pending"),
            ("pending", "accepted"),
        ]
        # Other kiosks heard of the acceptance and of nothing else.
        assert ui_probe.wait_for(lambda ms: any(b"accepted" in m.payload for m in ms))
        wait_until(lambda: False, timeout=0.5)
        statuses = [json.loads(m.payload)["status"] for m in list(ui_probe.messages)]
        assert "busy" not in statuses
    finally:
        ui_probe.close()


def _response_of_size(fid: int, cid: int, size: int) -> bytes:
    """The firmware's ACKNOWLEDGE JSON, the same object, padded with JSON whitespace to ``size`` bytes."""
    compact = response_payload(fid, cid)
    payload = b"{" + b" " * (size - len(compact)) + compact[1:]
    assert len(payload) == size and json.loads(payload) == json.loads(compact)
    return payload


def test_an_oversized_but_valid_response_is_dropped_and_one_at_the_limit_is_applied(
    central: ConsultEaseApp, firmware_desk: dict[str, Any], broker
) -> None:
    fid = firmware_desk["fid"]
    controller: ConsultationController = central.controllers["consultation"]
    stats = central.controllers["inbound_stats"]
    c = controller.create_consultation(
        firmware_desk["student"].id, fid, "Could you sign my study plan?"
    )
    topic = topics.faculty_responses_topic(fid)
    too_large_before = stats.dropped.get("too_large", 0)
    publish_raw(broker.port, topic, _response_of_size(fid, c.id, MAX_INBOUND_BYTES + 1))
    assert wait_until(lambda: stats.dropped.get("too_large", 0) == too_large_before + 1)
    assert controller.get_consultation(c.id).status == "pending"
    # The same response at exactly 16 KiB is within the limit and is applied.
    publish_raw(broker.port, topic, _response_of_size(fid, c.id, MAX_INBOUND_BYTES))
    assert wait_until(lambda: controller.get_consultation(c.id).status == "accepted")
    assert stats.dropped.get("too_large", 0) == too_large_before + 1


def test_rejected_responses_are_audited_at_most_20_per_desk_per_minute(
    central: ConsultEaseApp, firmware_desk: dict[str, Any]
) -> None:
    # docs/mqtt-topics.md: "written to audit_log (... at most 20 per desk per minute)".
    fid = firmware_desk["fid"]
    other = firmware_desk["faculty"][1].id
    controller: ConsultationController = central.controllers["consultation"]
    stats = central.controllers["inbound_stats"]
    before = stats.dropped

    def reject(faculty_id: int, cid: int) -> None:
        # A response for a request that does not exist: rejected, logged, audited.
        message = MQTTMessage(
            topics.faculty_responses_topic(faculty_id), response_payload(faculty_id, cid)
        )
        controller.on_response_message(message)

    for cid in range(900_001, 900_026):  # 25 rejections from one desk within a minute
        reject(fid, cid)
    reject(other, 900_100)  # another desk has its own allowance
    with session_scope() as session:
        actors = list(
            session.scalars(
                select(AuditLog.actor).where(AuditLog.action == "consultation_response_rejected")
            )
        )
    assert actors.count(f"desk:{fid}") == 20
    assert actors.count(f"desk:{other}") == 1
    after = stats.dropped  # counters are per process: compare with before
    assert after["response_rejected"] - before.get("response_rejected", 0) == 26
    assert after["audit_suppressed"] - before.get("audit_suppressed", 0) == 5


def test_a_retained_presence_replayed_by_the_broker_is_not_a_sign_of_life(
    make_settings, engine: Engine, broker
) -> None:
    # docs/mqtt-topics.md, Liveness: "Retained messages replayed by the broker update
    # presence but are not a sign of life."
    settings = make_settings(
        database_url=db_url_of(engine), desk_offline_after_s=1.5, liveness_check_interval_s=0.2
    )
    with running_app(settings) as app:
        fid = seed(app)["faculty"][0].id
        faculty = app.controllers["faculty"]
        stats = app.controllers["inbound_stats"]
        service = app.async_mqtt_service
        # The desk's presence, retained at the broker as the firmware publishes it.
        status = topics.faculty_status_topic(fid)
        publish_raw(broker.port, status, presence_payload(fid), qos=0, retain=True)
        assert wait_until(lambda: faculty.get_faculty(fid).desk_online is True)
        # Then the desk falls silent and is shown offline.
        assert wait_until(lambda: faculty.get_faculty(fid).desk_online is False, 10)
        accepted = stats.accepted.get("PresencePayload", 0)
        # The central system reconnects; the broker replays the retained presence.
        service._client.socket().close()
        assert wait_until(lambda: service.get_stats()["reconnects"] >= 1, 15)
        assert wait_until(lambda: stats.accepted.get("PresencePayload", 0) > accepted, 10)
        wait_until(lambda: False, timeout=1.0)  # several liveness checks
        shown = faculty.get_faculty(fid)
        assert shown.desk_online is False and shown.status == "offline"
        # A live message does bring it back.
        publish_raw(broker.port, topics.faculty_heartbeat_topic(fid), heartbeat_payload(fid))
        assert wait_until(lambda: faculty.get_faculty(fid).desk_online is True)
