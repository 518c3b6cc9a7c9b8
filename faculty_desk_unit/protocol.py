"""The deployed firmware's side of contract v1, as pure functions (no network).

Every payload a desk unit publishes is built here the way the ESP32 firmware
builds it: by string concatenation, compact, in the firmware's field order. That
means a ``"`` in a faculty name yields invalid JSON on purpose (contract 2.1): the
central system must survive it, and tests prove that it does.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

# Contract 1.1: the firmware copies at most this many bytes of a payload.
MAX_MESSAGE_BYTES = 512
# The firmware's request queue holds this many entries (contract, issue 3).
MAX_QUEUED_REQUESTS = 10
# Contract 2.3: heartbeat period of the deployed firmware.
FIRMWARE_HEARTBEAT_INTERVAL_S = 30.0
# Contract 3.1: what the firmware's screen shows, one ASCII glyph per byte.
DISPLAY_NAME_BYTES = 19
DISPLAY_LINE_BYTES = 25
DISPLAY_LINES = 5
DISPLAY_MESSAGE_BYTES = DISPLAY_LINE_BYTES * DISPLAY_LINES  # 125
# docs/mqtt-topics.md: what an improved desk adds to its presence and heartbeat JSON.
IMPROVED_CAPABILITIES = ',"session":"persistent","charset":"UTF-8"'

REQUEST_PREFIX = "CID:"
ACKNOWLEDGE = "ACKNOWLEDGE"
BUSY = "BUSY"

# The status texts the firmware sends with each button (contract 2.2 leaves them free-form).
RESPONSE_STATUS_TEXT = {
    ACKNOWLEDGE: "Professor acknowledges the request and will respond accordingly",
    BUSY: "Professor is currently busy and cannot cater to this request",
}

NTP_STATES = ("PENDING", "SYNCING", "SYNCED", "FAILED")


class DeskProtocolError(ValueError):
    """Base class: an inbound payload the desk unit drops (one log line, never a crash)."""


class NotARequestError(DeskProtocolError):
    """The ``/messages`` payload does not start with ``CID:``; the firmware ignores it."""


class MalformedRequestError(DeskProtocolError):
    """The payload starts with ``CID:`` but lacks ``From:``, `` (SID:``, ``)`` or ``): ``."""


class MalformedCancellationError(DeskProtocolError):
    """The ``/cancellations`` payload is not the JSON of contract 1.3."""


@dataclass(frozen=True)
class DeskRequest:
    """One request as the firmware parsed it from ``/messages`` (contract 1.1)."""

    cid: str
    student_name: str
    sid: str
    message: str
    text: str = field(repr=False)
    received_at: float = field(default_factory=time.time, compare=False)


def truncate_payload(payload: bytes) -> bytes:
    """The firmware's bounds check: anything past 512 bytes is cut off (contract 1.1)."""
    return payload[:MAX_MESSAGE_BYTES]


def decode_payload(payload: bytes) -> str:
    """Bytes as the firmware's ``String`` sees them; a UTF-8 sequence cut at byte 512 becomes U+FFFD."""
    return truncate_payload(payload).decode("utf-8", errors="replace")


def parse_request(payload: bytes, received_at: float | None = None) -> DeskRequest:
    """Parse ``CID:{cid} From:{name} (SID:{sid}): {message}`` exactly as the firmware does.

    The id runs up to the first space, the name between ``From:`` and `` (SID:``,
    the SID up to the next ``)``, and the message is everything after the first
    ``): `` of the whole text (contract 1.1). Raises a ``DeskProtocolError``.
    """
    text = decode_payload(payload)
    if not text.startswith(REQUEST_PREFIX):
        raise NotARequestError(f"no {REQUEST_PREFIX} prefix")
    space = text.find(" ", len(REQUEST_PREFIX))
    if space < 0:
        raise MalformedRequestError("no space after the consultation id")
    cid = text[len(REQUEST_PREFIX) : space]
    name_start = text.find("From:", space)
    if name_start < 0:
        raise MalformedRequestError("no 'From:'")
    name_start += len("From:")
    sid_marker = text.find(" (SID:", name_start)
    if sid_marker < 0:
        raise MalformedRequestError("no ' (SID:'")
    sid_start = sid_marker + len(" (SID:")
    sid_end = text.find(")", sid_start)
    if sid_end < 0:
        raise MalformedRequestError("no ')' after the SID")
    body = text.find("): ")
    if body < 0:
        raise MalformedRequestError("no '): ' before the message")
    return DeskRequest(
        cid=cid,
        student_name=text[name_start:sid_marker],
        sid=text[sid_start:sid_end],
        message=text[body + 3 :],
        text=text,
        received_at=time.time() if received_at is None else received_at,
    )


def parse_cancellation(payload: bytes, *, firmware: bool = False) -> str:
    """The consultation id (as the firmware's string) named by a contract 1.3 cancellation.

    ``firmware=True`` reads it like the deployed firmware (contract 3.1): without a
    JSON library, so the ``type`` is never looked at; ``consultation_resend``
    (docs/mqtt-topics.md, a withdrawal right before a re-send) removes a request too.
    An improved desk accepts exactly those two types.
    """
    try:
        data: Any = json.loads(truncate_payload(payload))
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedCancellationError(f"not JSON: {err}") from err
    if not isinstance(data, dict):
        raise MalformedCancellationError("not a JSON object")
    kind = data.get("type", "consultation_cancelled")
    if not firmware and kind not in ("consultation_cancelled", "consultation_resend"):
        raise MalformedCancellationError(f"unknown type {kind!r}")
    cid = data.get("consultation_id")
    if isinstance(cid, bool) or not isinstance(cid, int | str) or str(cid).strip() == "":
        raise MalformedCancellationError("consultation_id missing or not an id")
    return str(cid).strip()


def display_text(request: DeskRequest) -> tuple[str, list[str]]:
    """What the firmware's screen shows of a request: the name line and 5 message lines.

    Each byte is drawn as one glyph of an ASCII font (contract 3.1): a byte
    outside ASCII shows as ``?`` here, as garbage on the desk.
    """

    def glyphs(data: bytes) -> str:
        return "".join(chr(b) if 32 <= b < 127 else "?" for b in data)

    name = glyphs(request.student_name.encode("utf-8")[:DISPLAY_NAME_BYTES])
    body = request.message.encode("utf-8")[:DISPLAY_MESSAGE_BYTES]
    lines = [
        glyphs(body[i : i + DISPLAY_LINE_BYTES]) for i in range(0, len(body), DISPLAY_LINE_BYTES)
    ]
    return name, lines


def _bool(value: bool) -> str:
    return "true" if value else "false"


def presence_status(present: bool) -> str:
    """``AVAILABLE`` or ``AWAY`` (contract 2.1)."""
    return "AVAILABLE" if present else "AWAY"


def build_presence_json(
    faculty_id: int,
    faculty_name: str,
    present: bool,
    uptime_ms: int,
    ntp_sync_status: str = "SYNCED",
    grace_period_remaining_ms: int | None = None,
    status: str | None = None,
    extra: str = "",
) -> str:
    """The presence JSON of contract 2.1, concatenated like the firmware (a ``"`` in the name breaks it).

    ``grace_period_remaining_ms`` puts the unit in its grace period (the faculty
    member's beacon was lost a moment ago: still reported present). ``status``
    overrides the reported status (``OFFLINE`` for an improved unit's last will).
    """
    in_grace = grace_period_remaining_ms is not None
    reported = status or presence_status(present)
    if in_grace:
        detailed = f"{reported} (reconnecting... {int(grace_period_remaining_ms or 0) // 1000}s)"
    else:
        detailed = reported
    payload = "{"
    payload += '"faculty_id":' + str(int(faculty_id)) + ","
    payload += '"faculty_name":"' + faculty_name + '",'
    payload += '"present":' + _bool(present) + ","
    payload += '"status":"' + reported + '",'
    payload += '"timestamp":' + str(int(uptime_ms)) + ","
    payload += '"ntp_sync_status":"' + ntp_sync_status + '"'
    if in_grace:
        payload += ',"grace_period_remaining":' + str(int(grace_period_remaining_ms or 0))
        payload += ',"in_grace_period":true'
    else:
        payload += ',"in_grace_period":false'
    payload += ',"detailed_status":"' + detailed + '"'
    payload += extra
    payload += "}"
    return payload


def build_response_json(
    faculty_id: int,
    faculty_name: str,
    response_type: str,
    message_id: str,
    uptime_ms: int,
    faculty_present: bool,
) -> str:
    """The response JSON of contract 2.2: ``message_id`` and ``timestamp`` are strings."""
    payload = "{"
    payload += '"faculty_id":' + str(int(faculty_id)) + ","
    payload += '"faculty_name":"' + faculty_name + '",'
    payload += '"response_type":"' + response_type + '",'
    payload += '"message_id":"' + message_id + '",'
    payload += '"timestamp":"' + str(int(uptime_ms)) + '",'
    payload += '"faculty_present":' + _bool(faculty_present) + ","
    payload += '"response_method":"physical_button",'
    payload += '"status":"' + RESPONSE_STATUS_TEXT.get(response_type, response_type) + '"'
    payload += "}"
    return payload


def build_heartbeat_json(
    faculty_id: int,
    uptime_ms: int,
    present: bool,
    consultation_queue_size: int,
    ntp_sync_status: str = "SYNCED",
    free_heap: int | None = None,
    wifi_rssi: int | None = None,
    mqtt_retries: int = 0,
    extra: str = "",
) -> str:
    """The heartbeat JSON of contract 2.3, in the firmware's field order."""
    heap = free_heap if free_heap is not None else random.randint(140_000, 160_000)
    rssi = wifi_rssi if wifi_rssi is not None else random.randint(-70, -50)
    payload = "{"
    payload += '"faculty_id":' + str(int(faculty_id)) + ","
    payload += '"uptime":' + str(int(uptime_ms)) + ","
    payload += '"free_heap":' + str(heap) + ","
    payload += '"wifi_connected":true,'
    payload += '"wifi_rssi":' + str(rssi) + ","
    payload += '"wifi_stable":true,'
    payload += '"mqtt_stable":' + _bool(mqtt_retries == 0) + ","
    payload += '"wifi_retries":0,'
    payload += '"mqtt_retries":' + str(int(mqtt_retries)) + ","
    payload += '"time_initialized":' + _bool(ntp_sync_status == "SYNCED") + ","
    payload += '"ntp_sync_status":"' + ntp_sync_status + '",'
    payload += '"presence_status":"' + presence_status(present) + '",'
    payload += '"queue_size":0,'
    payload += '"consultation_queue_size":' + str(int(consultation_queue_size))
    payload += extra
    payload += "}"
    return payload


def jittered_backoff(attempt: int, cap: float) -> float:
    """aiomqtt's reconnect delay ``uniform(0, 1.5 ** min(10, attempt))``, capped.

    The jitter spreads a fleet that lost the broker at the same instant over the
    whole window instead of letting it reconnect in one burst.
    """
    return min(cap, random.uniform(0, 1.5 ** min(10, max(0, attempt))))
