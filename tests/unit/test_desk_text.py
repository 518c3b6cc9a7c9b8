"""What a deployed-firmware desk can show (contract 3.1): ASCII folding, the byte budget, names."""

from __future__ import annotations

import json

import pytest

from central_system.controllers.outbound import (
    DISPLAY_MESSAGE_BYTES,
    DISPLAY_NAME_BYTES,
    MAX_REQUEST_TEXT_BYTES,
    fold_to_ascii,
    request_text,
    sanitize_name,
    withdrawal_message,
)
from central_system.controllers.schemas import InboundStats, ResponsePayload, parse_inbound
from central_system.models import Consultation
from central_system.services.async_mqtt_service import MQTTMessage
from faculty_desk_unit import protocol

# (what a student typed, what the firmware's ASCII font must draw)
FOLDING = [
    ("José Peña", "Jose Pena"),
    ("François Müller", "Francois Muller"),
    ("Straße", "Strasse"),
    ("Łukasz Żółć", "Lukasz Zolc"),
    ("Nguyễn Văn Tèo", "Nguyen Van Teo"),
    ("Ærø Øst", "Aero Ost"),
    ("王小明", "WangXiaoMing"),
    ("Привет", "Privet"),
    ("こんにちは", "konnichiha"),
    ("한국어", "HanGugEo"),
    ("Γειά σου", "Geia soy"),  # anyascii romanises υ as y
    ("see you 😀", "see you :grinning:"),
    ("“quoted” – dash…", '"quoted" - dash...'),
    ("zero\u200bwidth", "zerowidth"),
    ("Lea\tMae", "Lea Mae"),
]


@pytest.mark.parametrize(("typed", "shown"), FOLDING)
def test_folding_gives_what_the_ascii_font_can_draw(typed: str, shown: str) -> None:
    folded = fold_to_ascii(typed)
    assert folded == shown
    assert folded.isascii() and folded.isprintable()


@pytest.mark.parametrize(("typed", "shown"), FOLDING)
def test_a_firmware_desk_gets_names_and_messages_folded_and_parses_them(
    typed: str, shown: str
) -> None:
    text = request_text(42, typed, 7, f"{typed} needs help", "CS101")
    assert text.isascii()
    request = protocol.parse_request(text.encode())
    assert request.cid == "42" and request.sid == "7"
    assert request.student_name == sanitize_name(shown)
    assert request.message == f"[CS101] {shown} needs help"


def test_an_improved_desk_gets_utf8_unchanged() -> None:
    text = request_text(42, "王小明", 7, "Café? 😀", "CS101", utf8=True)
    request = protocol.parse_request(text.encode())
    assert request.student_name == "王小明"
    assert request.message == "[CS101] Café? 😀"


def test_the_course_code_is_the_first_thing_on_the_screen_and_everything_shown_is_ascii() -> None:
    long_message = "Ü" + "ber die Klausur: " + "sehr lange Frage " * 40
    text = request_text(
        2**31 + 5, "Anaïs de la Fontaine-Bérénice", 12345, long_message, "MATH 2010"
    )
    assert len(text.encode()) <= MAX_REQUEST_TEXT_BYTES
    request = protocol.parse_request(text.encode())
    assert request.cid == str(2**31 + 5)
    name, lines = protocol.display_text(request)
    assert protocol.DISPLAY_NAME_BYTES == DISPLAY_NAME_BYTES == 19
    assert protocol.DISPLAY_MESSAGE_BYTES == DISPLAY_MESSAGE_BYTES == 125
    assert name == "Anais de la Fontain"  # 19 bytes, one glyph each
    assert len(lines) == 5 and all(len(line) == 25 for line in lines)
    assert lines[0].startswith("[MATH 2010] Uber die")
    assert "?" not in "".join(lines)  # no byte drawn as garbage
    assert text.endswith("...")  # shortened with an ASCII ellipsis


def test_without_folding_the_screen_would_show_garbage() -> None:
    # What we sent before: UTF-8 bytes, each drawn as a glyph of the ASCII font.
    request = protocol.parse_request("CID:1 From:José (SID:1): 中文".encode())
    name, lines = protocol.display_text(request)
    assert name == "Jos??" and lines == ["??????"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Lea\tMae", "Lea Mae"),
        ("Lea\nMae", "Lea Mae"),
        ("Lea\r\n\tMae", "Lea Mae"),
        ("Lea\u2028Mae", "Lea Mae"),
        ("Lea\x00Mae", "Lea Mae"),
        ("Le\u200ba", "Lea"),  # invisible format characters vanish
        ("Dr. (Ana): Cruz", "Dr. [Ana]- Cruz"),
    ],
)
def test_controls_in_names_become_spaces_not_nothing(name: str, expected: str) -> None:
    assert sanitize_name(name) == expected


def _response(message_id: object) -> MQTTMessage:
    body = {"faculty_id": 1, "response_type": "ACKNOWLEDGE", "message_id": message_id}
    return MQTTMessage("consultease/faculty/1/responses", json.dumps(body).encode(), 0, False)


@pytest.mark.parametrize("cid", [1, 2**31 - 1, 2**31, 2**40, 2**63 - 1])
def test_every_id_we_can_create_is_accepted_in_a_response(cid: int) -> None:
    for message_id in (str(cid), cid):
        parsed = parse_inbound(ResponsePayload, _response(message_id), InboundStats())
        assert parsed is not None and parsed.message_id == cid


@pytest.mark.parametrize("bad", [0, -1, 2**63, "99999999999999999999", "1e3"])
def test_ids_no_database_can_hold_are_refused(bad: object) -> None:
    assert parse_inbound(ResponsePayload, _response(bad), InboundStats()) is None


def test_the_firmware_reads_a_withdrawal_as_a_removal_and_json_readers_see_its_type() -> None:
    message = withdrawal_message(Consultation(id=42, faculty_id=3))
    assert message.topic == "consultease/faculty/3/cancellations"
    payload = json.dumps(message.payload).encode()
    assert json.loads(payload)["type"] == "consultation_resend"
    assert protocol.parse_cancellation(payload, firmware=True) == "42"
    assert protocol.parse_cancellation(payload) == "42"  # an improved desk too
