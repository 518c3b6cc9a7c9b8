"""A consultation from kiosk to desk and back, against a real Mosquitto and both databases."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from central_system import topics
from central_system.controllers import (
    ConsultationController,
    ConsultationEvent,
    FacultyController,
    FacultyEvent,
    StudentController,
)
from central_system.controllers.consultation_controller import (
    FacultyUnavailableError,
    InvalidCourseCodeError,
    InvalidMessageError,
    NotCancellableError,
    NotOwnConsultationError,
    TooManyPendingError,
)
from central_system.controllers.liveness import LivenessService
from central_system.controllers.outbound import iso
from central_system.db import session_scope
from central_system.main import ConsultEaseApp
from central_system.models import AuditLog, DeskUnit
from tests.integration.controller_helpers import (
    bring_desk_online,
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


@pytest.fixture
def central(make_settings, engine: Engine) -> Iterator[ConsultEaseApp]:
    """The headless central system with a short liveness timeout."""
    settings = make_settings(
        database_url=db_url_of(engine), desk_offline_after_s=3.0, liveness_check_interval_s=0.2
    )
    with running_app(settings) as app:
        yield app


@pytest.fixture
def world(central: ConsultEaseApp, broker) -> dict[str, Any]:
    """Two students, two faculty; faculty 0's desk online and available."""
    data = seed(central)
    fac0 = data["faculty"][0]
    bring_desk_online(broker.port, fac0.id, central.controllers["faculty"])
    data["fid"] = fac0.id
    return data


def _events(controller: ConsultationController) -> list[ConsultationEvent]:
    events: list[ConsultationEvent] = []
    lock = threading.Lock()

    def on_event(event: ConsultationEvent) -> None:
        with lock:
            events.append(event)

    controller.add_listener(on_event)
    return events


def test_headless_app_wires_controllers_subscriptions_and_liveness(central: ConsultEaseApp) -> None:
    controllers = central.controllers
    assert isinstance(controllers["consultation"], ConsultationController)
    assert isinstance(controllers["faculty"], FacultyController)
    assert isinstance(controllers["student"], StudentController)
    assert "admin" in controllers
    liveness = controllers["liveness"]
    assert isinstance(liveness, LivenessService)
    assert liveness.offline_after_s == 3.0
    assert central.system is not None and liveness in central.system.components
    # Six desk-side filters: status, legacy status, mac_status, responses, heartbeat, diagnostics.
    assert central.async_mqtt_service.get_stats()["subscriptions"] >= 6
    first = liveness.checks
    assert wait_until(lambda: liveness.checks >= first + 3, timeout=10), (
        "liveness timer not running"
    )


def test_request_reaches_the_three_topics_with_exact_payloads(
    central: ConsultEaseApp, world: dict[str, Any], broker
) -> None:
    fid = world["fid"]
    student = world["students"][0]
    probe = Probe(
        broker.port, [f"consultease/faculty/{fid}/#", "consultease/consultations/#"], qos=2
    )
    try:
        controller: ConsultationController = central.controllers["consultation"]
        bring_desk_online(broker.port, fid, central.controllers["faculty"])
        c = controller.create_consultation(
            student.id, fid, "  Could we go over my thesis draft?  ", course_code="cs 101"
        )
        assert c.status == "pending"
        assert c.course_code == "CS 101"
        # The returned object is built without a reload: it must match the stored row.
        stored = controller.get_consultation(c.id)
        assert stored is not None
        for field in ("student_id", "faculty_id", "message", "course_code", "status"):
            assert getattr(c, field) == getattr(stored, field), field
        assert c.created_at == stored.created_at == stored.last_sent_at == c.last_sent_at
        assert c.student.name == "Maria Santos" and c.faculty.id == fid
        assert c.accepted_at is None and stored.accepted_at is None
        assert probe.wait_for(
            lambda ms: (
                {m.topic for m in ms}
                >= {
                    topics.consultation_topic(c.id),
                    topics.faculty_requests_topic(fid),
                    topics.faculty_messages_topic(fid),
                }
            )
        ), [m.topic for m in probe.messages]
        by_topic = {m.topic: m for m in probe.messages}
        text = by_topic[topics.faculty_messages_topic(fid)]
        assert (
            text.payload
            == (
                f"CID:{c.id} From:Maria Santos (SID:{student.id}): "
                f"[{c.course_code}] Could we go over my thesis draft?"
            ).encode()
        )
        assert text.qos == 2
        expected = {
            "id": c.id,
            "student_name": "Maria Santos",
            "student_id": "2021-00001",
            "message": "Could we go over my thesis draft?",
            "timestamp": iso(c.created_at),
            "status": "pending",
            "faculty_id": fid,
            "faculty_name": world["faculty"][0].name,
            "course_code": "CS 101",
            "student_department": "Computer Science",
        }
        for topic in (topics.consultation_topic(c.id), topics.faculty_requests_topic(fid)):
            assert json.loads(by_topic[topic].payload) == expected
        stored = controller.get_consultation(c.id)
        assert stored is not None and stored.status == "pending"
        assert stored.last_sent_at is not None
        assert controller._publish_consultation(stored) is True
        assert probe.wait_for(
            lambda ms: sum(m.topic == topics.faculty_messages_topic(fid) for m in ms) == 2
        )
    finally:
        probe.close()


def test_acknowledge_with_string_id_accepts_and_listener_hears(
    central: ConsultEaseApp, world: dict[str, Any], broker
) -> None:
    fid = world["fid"]
    controller: ConsultationController = central.controllers["consultation"]
    events = _events(controller)
    ui_probe = Probe(broker.port, [topics.ui_consultation_events_topic()])
    try:
        bring_desk_online(broker.port, fid, central.controllers["faculty"])
        c = controller.create_consultation(world["students"][0].id, fid, "Question about grades")
        publish_raw(broker.port, topics.faculty_responses_topic(fid), response_payload(fid, c.id))
        assert wait_until(lambda: controller.get_consultation(c.id).status == "accepted")
        assert wait_until(lambda: any(e.status == "accepted" for e in events))
        accepted = [e for e in events if e.status == "accepted"]
        assert accepted[0].previous_status == "pending"
        assert accepted[0].consultation_id == c.id
        assert controller.get_consultation(c.id).accepted_at is not None
        assert ui_probe.wait_for(
            lambda ms: any(json.loads(m.payload).get("status") == "accepted" for m in ms)
        )
        # The same press again (the firmware retries): no error, no second notification.
        publish_raw(broker.port, topics.faculty_responses_topic(fid), response_payload(fid, c.id))
        wait_until(lambda: False, timeout=0.8)
        assert len([e for e in events if e.status == "accepted"]) == 1
        # Answering one request does not make the faculty member unavailable.
        faculty = central.controllers["faculty"].get_faculty(fid)
        assert faculty.status == "available" and faculty.desk_online is True
    finally:
        ui_probe.close()


def test_busy_response_makes_the_request_busy(
    central: ConsultEaseApp, world: dict[str, Any], broker
) -> None:
    fid = world["fid"]
    controller: ConsultationController = central.controllers["consultation"]
    c = controller.create_consultation(world["students"][1].id, fid, "Can I see you today?")
    publish_raw(
        broker.port, topics.faculty_responses_topic(fid), response_payload(fid, c.id, "BUSY")
    )
    assert wait_until(lambda: controller.get_consultation(c.id).status == "busy")
    assert controller.get_consultation(c.id).busy_at is not None


def test_cancellation_reaches_the_desk_and_only_the_owner_may_cancel(
    central: ConsultEaseApp, world: dict[str, Any], broker
) -> None:
    fid = world["fid"]
    s1, s2 = world["students"]
    controller: ConsultationController = central.controllers["consultation"]
    probe = Probe(broker.port, [topics.faculty_cancellations_topic(fid)])
    try:
        bring_desk_online(broker.port, fid, central.controllers["faculty"])
        c = controller.create_consultation(s1.id, fid, "Need a signature please", "MATH2010")
        with pytest.raises(NotOwnConsultationError):
            controller.cancel_consultation(c.id, s2.id)
        cancelled = controller.cancel_consultation(c.id, s1.id)
        assert cancelled.status == "cancelled"
        assert probe.wait_for(lambda ms: len(ms) >= 1)
        body = json.loads(probe.messages[0].payload)
        assert body == {
            "type": "consultation_cancelled",
            "consultation_id": c.id,
            "student_name": "Maria Santos",
            "course_code": "MATH2010",
            "cancelled_at": iso(controller.get_consultation(c.id).cancelled_at),
        }
        with pytest.raises(NotCancellableError):
            controller.cancel_consultation(c.id, s1.id)
        assert [x.id for x in controller.list_by_student(s1.id)] == [c.id]
        assert [x.id for x in controller.list_by_faculty(fid, status="cancelled")] == [c.id]
    finally:
        probe.close()


def _audit_rows() -> list[AuditLog]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(AuditLog).where(AuditLog.action == "consultation_response_rejected")
            )
        )


def test_foreign_or_late_responses_change_nothing_and_are_audited(
    central: ConsultEaseApp, world: dict[str, Any], broker
) -> None:
    fid = world["fid"]
    other = world["faculty"][1].id
    controller: ConsultationController = central.controllers["consultation"]
    events = _events(controller)
    c = controller.create_consultation(world["students"][0].id, fid, "Please check my lab report")
    # Another faculty's desk claims the request (its own topic, its own id in the payload).
    publish_raw(broker.port, topics.faculty_responses_topic(other), response_payload(other, c.id))
    assert wait_until(lambda: len(_audit_rows()) == 1)
    row = _audit_rows()[0]
    assert row.success is False and row.actor == f"desk:{other}"
    assert row.target == f"consultation:{c.id}"
    assert controller.get_consultation(c.id).status == "pending"

    # Declined, then a late ACKNOWLEDGE: not an allowed transition.
    publish_raw(
        broker.port, topics.faculty_responses_topic(fid), response_payload(fid, c.id, "DECLINED")
    )
    assert wait_until(lambda: controller.get_consultation(c.id).status == "declined")
    publish_raw(broker.port, topics.faculty_responses_topic(fid), response_payload(fid, c.id))
    assert wait_until(lambda: len(_audit_rows()) == 2)
    assert controller.get_consultation(c.id).status == "declined"
    assert "not allowed" in str(_audit_rows()[1].details)
    assert [e.status for e in events] == ["pending", "declined"]


def test_a_response_with_an_id_beyond_2_31_reaches_the_database_and_is_refused_cleanly(
    central: ConsultEaseApp, world: dict[str, Any], broker
) -> None:
    # SQLite can create such ids; the parser used to drop them as out of range before
    # they were looked up. No such consultation here: refused with an audit entry, on
    # PostgreSQL too (an int4 key compared with a larger number), never a handler error.
    fid = world["fid"]
    stats = central.controllers["inbound_stats"]
    handler_errors = central.async_mqtt_service.get_stats()["handler_errors"]
    for cid in (2**31, 2**40, 2**63 - 1):
        publish_raw(broker.port, topics.faculty_responses_topic(fid), response_payload(fid, cid))
    assert wait_until(lambda: len(_audit_rows()) == 3)
    assert {row.target for row in _audit_rows()} == {
        f"consultation:{cid}" for cid in (2**31, 2**40, 2**63 - 1)
    }
    assert stats.dropped.get("invalid", 0) == 0
    assert central.async_mqtt_service.get_stats()["handler_errors"] == handler_errors


def test_silent_desk_goes_offline_and_gets_its_pending_request_again(
    central: ConsultEaseApp, world: dict[str, Any], broker
) -> None:
    fid = world["fid"]
    faculty: FacultyController = central.controllers["faculty"]
    controller: ConsultationController = central.controllers["consultation"]
    fac_events: list[FacultyEvent] = []
    faculty.add_listener(fac_events.append)
    c = controller.create_consultation(world["students"][0].id, fid, "Office hours question")
    first_sent = controller.get_consultation(c.id).last_sent_at
    probe = Probe(broker.port, [topics.faculty_messages_topic(fid)], qos=1)
    try:
        # Nothing from the desk for longer than desk_offline_after_s (3 s).
        assert wait_until(lambda: faculty.get_faculty(fid).desk_online is False, timeout=10)
        assert faculty.get_faculty(fid).status == "offline"
        # The event follows the write (liveness notifies after its commit): wait for it too.
        assert wait_until(
            lambda: any(e.faculty_id == fid and not e.desk_online for e in fac_events), timeout=5
        )
        with pytest.raises(FacultyUnavailableError):
            controller.create_consultation(world["students"][1].id, fid, "Is anyone there?")
        before = len(probe.messages)
        # The desk returns with a heartbeat (it never said it was away).
        publish_raw(broker.port, topics.faculty_heartbeat_topic(fid), heartbeat_payload(fid))
        assert wait_until(lambda: faculty.get_faculty(fid).desk_online is True)
        assert faculty.get_faculty(fid).status == "available"
        assert probe.wait_for(lambda ms: len(ms) > before), "pending request not re-sent"
        assert probe.messages[-1].payload.startswith(f"CID:{c.id} From:".encode())
        assert controller.get_consultation(c.id).last_sent_at > first_sent
        # The heartbeat is stored on the desk unit (by the next liveness flush).
        with session_scope() as session:
            assert wait_until(
                lambda: (
                    session.scalar(
                        select(DeskUnit.last_heartbeat_at).where(DeskUnit.faculty_id == fid)
                    )
                    is not None
                ),
                timeout=5,
            )
    finally:
        probe.close()


def test_faculty_becoming_available_again_gets_pending_requests_resent(
    central: ConsultEaseApp, world: dict[str, Any], broker
) -> None:
    fid = world["fid"]
    faculty: FacultyController = central.controllers["faculty"]
    controller: ConsultationController = central.controllers["consultation"]
    probe = Probe(broker.port, [topics.faculty_messages_topic(fid)], qos=1)
    try:
        bring_desk_online(broker.port, fid, faculty)
        c = controller.create_consultation(world["students"][0].id, fid, "Consultation on project")
        assert probe.wait_for(lambda ms: len(ms) == 1)
        bring_desk_online(broker.port, fid, faculty, status="AWAY")
        wait_until(lambda: False, timeout=0.5)
        assert len(probe.messages) == 1  # nothing is re-sent while the faculty is away
        bring_desk_online(broker.port, fid, faculty, status="AVAILABLE")
        assert probe.wait_for(lambda ms: len(ms) == 2)
        assert probe.messages[1].payload.startswith(f"CID:{c.id} ".encode())
    finally:
        probe.close()


def test_own_status_publication_and_legacy_topics(
    central: ConsultEaseApp, world: dict[str, Any], broker
) -> None:
    fid = world["fid"]
    faculty: FacultyController = central.controllers["faculty"]
    stats = central.controllers["inbound_stats"]
    handle = faculty.publish_faculty_status(fid, "away")
    assert handle.wait_acknowledged(10)
    # The same payload arriving from another kiosk (source "central") is not a desk's report either.
    publish_raw(
        broker.port,
        topics.faculty_status_topic(fid),
        json.dumps({"faculty_id": fid, "status": "away", "timestamp": 1.0, "source": "central"}),
    )
    assert wait_until(lambda: stats.ignored.get("central_publication", 0) >= 1)
    assert faculty.get_faculty(fid).status == "available"
    # The legacy topic and mac_status both carry presence.
    publish_raw(broker.port, topics.legacy_faculty_status_topic(fid), presence_payload(fid, "AWAY"))
    assert wait_until(lambda: faculty.get_faculty(fid).status == "away")
    publish_raw(
        broker.port,
        topics.faculty_mac_status_topic(fid),
        json.dumps({"status": "faculty_present", "mac": "AA:BB:CC:DD:EE:FF", "timestamp": 5}),
    )
    assert wait_until(lambda: faculty.get_faculty(fid).status == "available")


def test_create_consultation_validation_messages(
    central: ConsultEaseApp, world: dict[str, Any]
) -> None:
    fid = world["fid"]
    sid = world["students"][0].id
    controller: ConsultationController = central.controllers["consultation"]
    with pytest.raises(InvalidMessageError):
        controller.create_consultation(sid, fid, "   short   ")
    with pytest.raises(InvalidMessageError):
        controller.create_consultation(sid, fid, "x" * 501)
    with pytest.raises(InvalidCourseCodeError):
        controller.create_consultation(sid, fid, "A valid request text", course_code="101CS")
    with pytest.raises(FacultyUnavailableError):
        controller.create_consultation(sid, world["faculty"][1].id, "A valid request text")
    for _ in range(controller.max_pending_per_faculty):
        controller.create_consultation(sid, fid, "A valid request text")
    with pytest.raises(TooManyPendingError) as err:
        controller.create_consultation(sid, fid, "A valid request text")
    assert isinstance(err.value, ValueError) and "pending" in str(err.value)
