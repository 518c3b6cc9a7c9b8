"""The desk-unit simulator parses and builds payloads exactly as the deployed firmware does (contract v1)."""

from __future__ import annotations

import json

import pytest

from faculty_desk_unit.protocol import (
    MalformedCancellationError,
    MalformedRequestError,
    NotARequestError,
    build_heartbeat_json,
    build_presence_json,
    build_response_json,
    jittered_backoff,
    parse_cancellation,
    parse_request,
)


def test_parse_request_reads_every_field_of_the_contract_format() -> None:
    request = parse_request(b"CID:42 From:Juan Dela Cruz (SID:7): Please review my thesis draft")
    assert (request.cid, request.student_name, request.sid, request.message) == (
        "42",
        "Juan Dela Cruz",
        "7",
        "Please review my thesis draft",
    )


def test_parse_request_keeps_names_with_several_spaces() -> None:
    request = parse_request(b"CID:7 From:Maria  de la Paz Santos (SID:1234): hi there")
    assert request.student_name == "Maria  de la Paz Santos"
    assert request.sid == "1234"


def test_message_is_everything_after_the_first_close_paren_colon_space() -> None:
    text = "CID:9 From:Ana (SID:3): see (appendix): figure 2): done"
    request = parse_request(text.encode())
    assert request.message == "see (appendix): figure 2): done"


def test_utf8_names_and_messages_survive() -> None:
    request = parse_request("CID:5 From:José Niño (SID:8): ¿Puedo pasar? ✓".encode())
    assert request.student_name == "José Niño"
    assert request.message == "¿Puedo pasar? ✓"


def test_payload_is_truncated_at_512_bytes() -> None:
    prefix = b"CID:1 From:A (SID:2): "
    payload = prefix + b"x" * 1000
    request = parse_request(payload)
    assert len(request.text.encode()) == 512  # the deployed firmware's MAX_MESSAGE_LENGTH
    assert request.message == "x" * (512 - len(prefix))


def test_truncation_inside_a_multibyte_character_does_not_crash() -> None:
    prefix = b"CID:1 From:A (SID:2): "
    # 'é' is two bytes; place one so that byte 512 falls inside it.
    payload = prefix + b"a" * (511 - len(prefix)) + "é".encode() + b"tail"
    request = parse_request(payload)
    assert request.message.endswith("\ufffd")
    assert "tail" not in request.message


@pytest.mark.parametrize(
    "payload",
    [
        b"Consultation request from Juan: hello",  # the plan's wording: no CID prefix
        b"cid:1 From:A (SID:2): lower-case prefix",
        b" CID:1 From:A (SID:2): leading space",
        b"",
    ],
)
def test_payload_without_cid_prefix_is_not_a_request(payload: bytes) -> None:
    with pytest.raises(NotARequestError):
        parse_request(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"CID:1",
        b"CID:1 Juan (SID:2): no From",
        b"CID:1 From:Juan SID:2: no marker",
        b"CID:1 From:Juan (SID:2 no close",
        b"CID:1 From:Juan (SID:2):no space after",
    ],
)
def test_malformed_cid_payload_is_rejected_with_a_reason(payload: bytes) -> None:
    with pytest.raises(MalformedRequestError):
        parse_request(payload)


def test_presence_json_is_byte_for_byte_the_firmware_concatenation() -> None:
    assert build_presence_json(3, "Dr. Ada Lovelace", True, 123456) == (
        '{"faculty_id":3,"faculty_name":"Dr. Ada Lovelace","present":true,'
        '"status":"AVAILABLE","timestamp":123456,"ntp_sync_status":"SYNCED",'
        '"in_grace_period":false,"detailed_status":"AVAILABLE"}'
    )


def test_presence_json_away_and_grace_period_shapes() -> None:
    away = json.loads(build_presence_json(1, "B", False, 5, "PENDING"))
    assert away["present"] is False
    assert away["status"] == "AWAY"
    assert away["ntp_sync_status"] == "PENDING"
    assert "grace_period_remaining" not in away
    grace = build_presence_json(1, "B", True, 5, grace_period_remaining_ms=15000)
    assert grace == (
        '{"faculty_id":1,"faculty_name":"B","present":true,"status":"AVAILABLE",'
        '"timestamp":5,"ntp_sync_status":"SYNCED","grace_period_remaining":15000,'
        '"in_grace_period":true,"detailed_status":"AVAILABLE (reconnecting... 15s)"}'
    )


def test_quote_in_faculty_name_yields_invalid_json_like_the_firmware() -> None:
    payload = build_presence_json(2, 'Dr. "Bob" Reyes', True, 1)
    assert '"faculty_name":"Dr. "Bob" Reyes"' in payload
    with pytest.raises(json.JSONDecodeError):
        json.loads(payload)


def test_response_json_carries_message_id_and_uptime_as_strings() -> None:
    payload = build_response_json(3, "Dr. Ada", "ACKNOWLEDGE", "42", 98765, True)
    assert payload == (
        '{"faculty_id":3,"faculty_name":"Dr. Ada","response_type":"ACKNOWLEDGE",'
        '"message_id":"42","timestamp":"98765","faculty_present":true,'
        '"response_method":"physical_button",'
        '"status":"Professor acknowledges the request and will respond accordingly"}'
    )
    busy = json.loads(build_response_json(3, "Dr. Ada", "BUSY", "7", 1, False))
    assert busy["response_type"] == "BUSY"
    assert busy["faculty_present"] is False


def test_heartbeat_json_has_every_contract_field_in_order() -> None:
    payload = build_heartbeat_json(4, 30000, True, 2, free_heap=150000, wifi_rssi=-60)
    data = json.loads(payload)
    assert list(data) == [
        "faculty_id", "uptime", "free_heap", "wifi_connected", "wifi_rssi", "wifi_stable",
        "mqtt_stable", "wifi_retries", "mqtt_retries", "time_initialized", "ntp_sync_status",
        "presence_status", "queue_size", "consultation_queue_size",
    ]  # fmt: skip
    assert data["uptime"] == 30000
    assert data["presence_status"] == "AVAILABLE"
    assert data["consultation_queue_size"] == 2
    assert " " not in payload  # compact, like the firmware's concatenation


def test_cancellation_accepts_int_and_string_ids() -> None:
    body = {"type": "consultation_cancelled", "consultation_id": 42, "student_name": "A",
            "course_code": None, "cancelled_at": "2026-11-27T16:25:29.123+00:00"}  # fmt: skip
    assert parse_cancellation(json.dumps(body).encode()) == "42"
    body["consultation_id"] = "43"
    assert parse_cancellation(json.dumps(body).encode()) == "43"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"type": "consultation_cancelled"}',
        b'{"type": "something_else", "consultation_id": 1}',
        b'{"type": "consultation_cancelled", "consultation_id": true}',
        b'{"type": "consultation_cancelled", "consultation_id": null}',
        b"\xff\xfe",
    ],
)
def test_bad_cancellations_raise_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(MalformedCancellationError):
        parse_cancellation(payload)


def test_backoff_is_jittered_within_the_aiomqtt_window_and_capped() -> None:
    for attempt in range(1, 15):
        window = 1.5 ** min(10, attempt)
        delays = [jittered_backoff(attempt, cap=30.0) for _ in range(200)]
        assert all(0 <= d <= min(30.0, window) for d in delays)
        if window < 30.0:
            assert len(set(delays)) > 150  # jittered, not a fixed step
            assert max(delays) > window / 2  # spread over the whole window
    assert max(jittered_backoff(50, cap=5.0) for _ in range(200)) <= 5.0
