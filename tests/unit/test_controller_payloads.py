"""Outgoing builders (contract 1), inbound parsing (contract 2) and the transition table, without network."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from central_system.controllers.consultation_controller import (
    InvalidCourseCodeError,
    InvalidMessageError,
    normalize_course_code,
    normalize_message,
)
from central_system.controllers.outbound import (
    cancellation_message,
    consultation_messages,
    faculty_status_message,
    request_text,
    sanitize_name,
    truncate_utf8,
)
from central_system.controllers.schemas import (
    RESPONSE_MAPPING,
    DiagnosticsPayload,
    HeartbeatPayload,
    InboundStats,
    MacStatusPayload,
    PresencePayload,
    ResponsePayload,
    parse_inbound,
)
from central_system.controllers.student_controller import (
    StudentValidationError,
    normalize_rfid_uid,
)
from central_system.models import (
    ALLOWED_TRANSITIONS,
    Consultation,
    ConsultationStatus,
    Faculty,
    FacultyStatus,
    Student,
)
from central_system.services.async_mqtt_service import MQTTMessage

# The contract's numbers, as literals: a test that compares the code with its own
# constant cannot notice when the constant changes (contract 1.1, docs/mqtt-topics.md).
FIRMWARE_MAX_MESSAGE_BYTES = 512  # the deployed firmware's MAX_MESSAGE_LENGTH
MAX_INBOUND_BYTES = 16 * 1024  # "Over 16 KiB ... dropped"


def _parse_firmware_text(text: str) -> dict[str, str]:
    """The deployed firmware's parse of a /messages payload (contract 1.1)."""
    assert text.startswith("CID:")
    cid = text[4 : text.index(" ")]
    name = text[text.index("From:") + 5 : text.index(" (SID:")]
    sid = text[text.index(" (SID:") + 6 : text.index(")", text.index(" (SID:"))]
    request = text[text.index("): ") + 3 :]
    return {"cid": cid, "name": name, "sid": sid, "request": request}


# --------------------------------------------------------------------------- /messages text


def test_request_text_has_the_firmware_cid_format() -> None:
    text = request_text(42, "Maria Santos", 7, "Can we meet about the exam?")
    assert text == "CID:42 From:Maria Santos (SID:7): Can we meet about the exam?"
    assert _parse_firmware_text(text) == {
        "cid": "42",
        "name": "Maria Santos",
        "sid": "7",
        "request": "Can we meet about the exam?",
    }


@pytest.mark.parametrize("char", ["é", "日", "😀"])
def test_request_text_is_capped_at_512_bytes_on_a_character_boundary(char: str) -> None:
    message = char * 500
    text = request_text(123456, "José Ñúñez", 99, message, utf8=True)  # an improved desk
    encoded = text.encode("utf-8")
    assert len(encoded) <= FIRMWARE_MAX_MESSAGE_BYTES
    assert len(encoded) > FIRMWARE_MAX_MESSAGE_BYTES - 4  # filled, not cut short
    assert text.endswith("…")
    parsed = _parse_firmware_text(text)
    assert parsed["cid"] == "123456" and parsed["name"] == "José Ñúñez" and parsed["sid"] == "99"
    assert set(parsed["request"][:-1]) == {char}


def test_short_text_is_not_shortened_and_has_no_ellipsis() -> None:
    text = request_text(1, "A", 1, "x" * 100)
    assert not text.endswith("…") and text.endswith("x" * 100)


def test_names_are_sanitised_so_the_parse_survives() -> None:
    name = "Evil (SID:1): \n\x00Name\u2028)"
    text = request_text(5, name, 3, "hello there friend")
    parsed = _parse_firmware_text(text)
    assert parsed["cid"] == "5" and parsed["sid"] == "3"
    assert parsed["request"] == "hello there friend"
    for bad in "():\n\x00\u2028":
        assert bad not in parsed["name"]


def test_a_huge_name_still_leaves_room_for_the_request() -> None:
    text = request_text(5, "名" * 100, 3, "the request itself")
    assert len(text.encode()) <= FIRMWARE_MAX_MESSAGE_BYTES
    assert _parse_firmware_text(text)["request"] == "the request itself"
    assert sanitize_name("") == "?"


def test_truncate_utf8_never_splits_a_character() -> None:
    for n in range(0, 20):
        out = truncate_utf8("ab😀cd😀", n)
        assert len(out.encode()) <= max(n, 3)
        out.encode("utf-8")  # valid


# --------------------------------------------------------------------------- JSON builders


def _rows() -> tuple[Consultation, Student, Faculty]:
    student = Student(id=7, name="Maria", student_id="2021-1", department="CS", rfid_uid="AA")
    faculty = Faculty(id=3, name="Dr. Cruz")
    consultation = Consultation(
        id=42,
        student_id=7,
        faculty_id=3,
        message="Question about grades",
        course_code="CS101",
        status="pending",
        created_at=datetime(2026, 11, 27, 16, 25, 29, 123000, tzinfo=UTC),
    )
    return consultation, student, faculty


def test_consultation_messages_topics_qos_and_json() -> None:
    consultation, student, faculty = _rows()
    msgs = consultation_messages(consultation, student, faculty)
    assert [(m.topic, m.qos) for m in msgs] == [
        ("consultease/consultations/42", 1),
        ("consultease/faculty/3/requests", 1),
        ("consultease/faculty/3/messages", 2),
    ]
    assert (
        msgs[0].payload
        == msgs[1].payload
        == {
            "id": 42,
            "student_name": "Maria",
            "student_id": "2021-1",
            "message": "Question about grades",
            "timestamp": "2026-11-27T16:25:29.123+00:00",
            "status": "pending",
            "faculty_id": 3,
            "faculty_name": "Dr. Cruz",
            "course_code": "CS101",
            "student_department": "CS",
        }
    )
    assert msgs[2].payload == "CID:42 From:Maria (SID:7): [CS101] Question about grades"


def test_cancellation_and_status_payloads() -> None:
    consultation, student, _faculty = _rows()
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    msg = cancellation_message(consultation, student, at)
    assert msg.topic == "consultease/faculty/3/cancellations"
    assert msg.payload == {
        "type": "consultation_cancelled",
        "consultation_id": 42,
        "student_name": "Maria",
        "course_code": "CS101",
        "cancelled_at": "2026-01-02T03:04:05.000+00:00",
    }
    status = faculty_status_message(3, "away", timestamp=1.5)
    assert status.topic == "consultease/faculty/3/status"
    assert status.payload == {
        "faculty_id": 3,
        "status": "away",
        "timestamp": 1.5,
        "source": "central",
    }


# --------------------------------------------------------------------------- inbound parsing


def _msg(topic: str, payload: bytes | str | dict[str, object]) -> MQTTMessage:
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return MQTTMessage(topic, payload)


RESPONSE = {
    "faculty_id": 1,
    "faculty_name": "Dr. X",
    "response_type": "ACKNOWLEDGE",
    "message_id": "42",
    "timestamp": "123456",
    "faculty_present": True,
    "response_method": "physical_button",
    "status": "ok",
    "some_future_field": [1, 2],
}


def test_response_accepts_string_and_int_message_id_and_unknown_fields() -> None:
    stats = InboundStats()
    parsed = parse_inbound(
        ResponsePayload, _msg("consultease/faculty/1/responses", RESPONSE), stats
    )
    assert parsed is not None and parsed.message_id == 42
    assert parsed.target_status == ConsultationStatus.ACCEPTED
    as_int = dict(RESPONSE, message_id=42)
    assert parse_inbound(ResponsePayload, _msg("consultease/faculty/1/responses", as_int), stats)
    assert stats.accepted == {"ResponsePayload": 2}


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("ACKNOWLEDGE", "accepted"),
        ("ACCEPTED", "accepted"),
        ("BUSY", "busy"),
        ("UNAVAILABLE", "busy"),
        ("DECLINED", "declined"),
        ("REJECTED", "declined"),
        ("COMPLETED", "completed"),
    ],
)
def test_response_mapping(word: str, status: str) -> None:
    assert RESPONSE_MAPPING[word] == status
    parsed = parse_inbound(
        ResponsePayload,
        _msg("consultease/faculty/1/responses", dict(RESPONSE, response_type=word)),
        InboundStats(),
    )
    assert parsed is not None and parsed.target_status == status


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("consultease/faculty/1/responses", b"\xff\xfe", "bad_utf8"),
        # The firmware's string concatenation with a '"' in the name (contract 2.1).
        (
            "consultease/faculty/1/status",
            '{"faculty_id": 1, "faculty_name": "Dr. "Bob"", "present": true}',
            "bad_json",
        ),
        ("consultease/faculty/1/responses", "[1, 2]", "not_an_object"),
        ("consultease/faculty/1/responses", dict(RESPONSE, message_id="4x2"), "invalid"),
        ("consultease/faculty/1/responses", dict(RESPONSE, message_id=True), "invalid"),
        ("consultease/faculty/1/responses", dict(RESPONSE, response_type="MAYBE"), "invalid"),
        ("consultease/faculty/1/responses", dict(RESPONSE, faculty_id="1"), "invalid"),
        ("consultease/faculty/2/responses", RESPONSE, "faculty_mismatch"),
        ("consultease/elsewhere/1/responses", RESPONSE, "bad_topic"),
        ("consultease/faculty/1/responses", b"{" * (MAX_INBOUND_BYTES + 1), "too_large"),
    ],
)
def test_bad_payloads_are_dropped_with_one_log_line_and_counted(
    topic: str,
    payload: bytes | str | dict[str, object],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = InboundStats()
    with caplog.at_level(logging.WARNING, logger="central_system.controllers.schemas"):
        assert parse_inbound(ResponsePayload, _msg(topic, payload), stats) is None
    assert stats.dropped == {reason: 1}
    lines = [r for r in caplog.records if r.name == "central_system.controllers.schemas"]
    assert len(lines) == 1
    assert len(lines[0].getMessage()) < 700  # the payload is cut short


def _padded_response(size: int) -> bytes:
    """RESPONSE, valid JSON of the right shape, padded with JSON whitespace to ``size`` bytes."""
    compact = json.dumps(RESPONSE).encode()
    payload = b"{" + b" " * (size - len(compact)) + compact[1:]
    assert len(payload) == size and json.loads(payload) == RESPONSE
    return payload


def test_a_valid_response_over_16_kib_is_dropped_and_one_of_exactly_16_kib_is_accepted() -> None:
    stats = InboundStats()
    topic = "consultease/faculty/1/responses"
    assert (
        parse_inbound(ResponsePayload, _msg(topic, _padded_response(16 * 1024 + 1)), stats) is None
    )
    assert stats.dropped == {"too_large": 1}
    assert parse_inbound(ResponsePayload, _msg(topic, _padded_response(16 * 1024)), stats)
    assert stats.accepted == {"ResponsePayload": 1}


def test_presence_shapes_and_grace_period() -> None:
    stats = InboundStats()
    grace = {
        "faculty_id": 1,
        "faculty_name": "Dr. X",
        "present": True,
        "status": "AVAILABLE",
        "timestamp": 123456,
        "ntp_sync_status": "SYNCING",
        "in_grace_period": True,
        "grace_period_remaining": 15000,
        "detailed_status": "AVAILABLE (reconnecting... 15s)",
    }
    parsed = parse_inbound(PresencePayload, _msg("faculty/1/status", grace), stats)
    assert parsed is not None and parsed.presence() == FacultyStatus.AVAILABLE
    assert parsed.grace_period_remaining == 15000
    away = parse_inbound(PresencePayload, _msg("consultease/faculty/1/status", {"present": False}))
    assert away is not None and away.presence() == FacultyStatus.AWAY
    offline = parse_inbound(
        PresencePayload, _msg("consultease/faculty/1/status", {"status": "OFFLINE"})
    )
    assert offline is not None and offline.presence() == FacultyStatus.OFFLINE
    mac = parse_inbound(
        MacStatusPayload,
        _msg("consultease/faculty/1/mac_status", {"status": "faculty_absent", "mac": "AA"}),
    )
    assert mac is not None and mac.presence() == FacultyStatus.AWAY


def test_heartbeat_both_shapes_and_diagnostics() -> None:
    first = {"faculty_id": 1, "uptime": 5, "free_heap": 150000, "presence_status": "AWAY"}
    second = {
        "faculty_id": 1,
        "ntp_sync_success": True,
        "ntp_sync_status": "SYNCED",
        "retry_count": 0,
        "timestamp": 1764260729,
        "current_time": "2026-11-27 16:25:29",
    }
    hb = parse_inbound(HeartbeatPayload, _msg("consultease/faculty/1/heartbeat", first))
    assert hb is not None and hb.presence() == FacultyStatus.AWAY
    assert parse_inbound(HeartbeatPayload, _msg("consultease/faculty/1/heartbeat", second))
    diag = parse_inbound(
        DiagnosticsPayload, _msg("consultease/faculty/1/diagnostics", {"anything": {"x": 1}})
    )
    assert diag is not None and diag.model_dump()["anything"] == {"x": 1}


# --------------------------------------------------------------------------- transitions & validation


def test_transition_table_only_moves_forward() -> None:
    assert ALLOWED_TRANSITIONS["pending"] == {
        "accepted",
        "busy",
        "declined",
        "cancelled",
        "expired",
    }
    assert ALLOWED_TRANSITIONS["accepted"] == {"completed"}
    for final in ("busy", "declined", "completed", "cancelled", "expired"):
        assert ALLOWED_TRANSITIONS[final] == frozenset()
    # Every response word maps to a status reachable from pending or accepted.
    reachable = ALLOWED_TRANSITIONS["pending"] | ALLOWED_TRANSITIONS["accepted"]
    assert set(RESPONSE_MAPPING.values()) <= reachable


def test_message_and_course_code_validation() -> None:
    assert normalize_message("  ten chars!  ") == "ten chars!"
    with pytest.raises(InvalidMessageError):
        normalize_message("  short  ")
    with pytest.raises(InvalidMessageError):
        normalize_message("y" * 501)
    assert normalize_course_code(" cs101 ") == "CS101"
    assert normalize_course_code("math  2010a") == "MATH 2010A"
    assert normalize_course_code("") is None and normalize_course_code(None) is None
    for bad in ("C101", "CS1", "CS12345", "101", "CS-101"):
        with pytest.raises(InvalidCourseCodeError):
            normalize_course_code(bad)


def test_rfid_uid_normalisation() -> None:
    assert normalize_rfid_uid(" 04:a1:b2:c3 ") == "04A1B2C3"
    assert normalize_rfid_uid("0x04a1b2c3") == "04A1B2C3"
    with pytest.raises(StudentValidationError):
        normalize_rfid_uid("not-hex!")
