"""Builders of every payload the central system sends to desk units (contract section 1).

One builder per payload, shared by the transactional path (``mqtt.stage``) and the
direct path (``_publish_consultation``, the liveness re-send), so both send the
same bytes.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from anyascii import anyascii

from .. import topics
from ..models import Consultation, Faculty, Student

MAX_REQUEST_TEXT_BYTES: Final = 512  # the deployed firmware truncates at 512 bytes (contract 1.1)
ELLIPSIS: Final = "…"
# Names are capped in the /messages text so the prefix always leaves room for the request.
MAX_NAME_BYTES_IN_TEXT: Final = 160

MESSAGES_QOS: Final = 2
JSON_QOS: Final = 1

# Contract 1.1: these characters would break the firmware's parse of the name.
_NAME_REPLACEMENTS: Final = str.maketrans({"(": "[", ")": "]", ":": "-"})
# Contract 3.1: what the deployed firmware's screen shows of a request.
DISPLAY_NAME_BYTES: Final = 19
DISPLAY_MESSAGE_BYTES: Final = 125  # 5 lines of 25


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: topic, payload (dict or str), QoS."""

    topic: str
    payload: dict[str, Any] | str
    qos: int = JSON_QOS
    retain: bool = False


def iso(dt: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and offset (contract: ``2026-11-27T16:25:29.123+00:00``)."""
    return dt.isoformat(timespec="milliseconds")


def _is_control(ch: str) -> bool:
    # Cc: C0/C1 controls incl. newlines; Zl/Zp: Unicode line/paragraph separators;
    # Cf: invisible format characters (bidi overrides) that confuse a tiny display.
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cf")


def _without_controls(text: str) -> str:
    """Line breaks and other controls become spaces (``Lea\tMae`` stays two words); invisible
    format characters (Cf: zero-width, bidi) are removed."""
    return "".join(
        "" if unicodedata.category(ch) == "Cf" else " " if _is_control(ch) else ch for ch in text
    )


def fold_to_ascii(text: str) -> str:
    """What the deployed firmware's ASCII font can draw (contract 3.1): ``é`` -> ``e``,
    ``ñ`` -> ``n``, ``ß`` -> ``ss``, ``中文`` -> ``ZhongWen``, an emoji -> ``:grinning:``.

    anyascii (ISC) transliterates every script; what it has no form for becomes ``?``.
    """
    folded = anyascii(_without_controls(text))
    return "".join(ch if " " <= ch <= "~" else "?" for ch in folded)


def sanitize_name(name: str) -> str:
    """A name safe inside the ``CID:`` text: ``(`` ``)`` ``:`` replaced, controls become spaces."""
    cleaned = _without_controls(name).translate(_NAME_REPLACEMENTS)
    cleaned = " ".join(cleaned.split())
    return truncate_utf8(cleaned, MAX_NAME_BYTES_IN_TEXT, ellipsis=False) or "?"


def sanitize_request_text(text: str) -> str:
    """A request text without control characters (newlines become spaces)."""
    return "".join(" " if _is_control(ch) else ch for ch in text).strip()


def truncate_utf8(
    text: str, max_bytes: int, *, ellipsis: bool = True, ellipsis_text: str = ELLIPSIS
) -> str:
    """``text`` cut on a character boundary to at most ``max_bytes`` UTF-8 bytes (ending in ``…`` if cut)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    suffix = ellipsis_text if ellipsis else ""
    budget = max(0, max_bytes - len(suffix.encode("utf-8")))
    # Decoding with "ignore" drops the partial character left at the cut.
    return encoded[:budget].decode("utf-8", errors="ignore") + suffix


def request_text(
    consultation_id: int,
    student_name: str,
    student_pk: int,
    message: str,
    course_code: str | None = None,
    *,
    utf8: bool = False,
) -> str:
    """The firmware's request line ``CID:{cid} From:{name} (SID:{pk}): {message}``, at most 512 bytes.

    The course code leads the message (``[CS101] …``): the desk shows only its
    first 125 bytes. Unless the desk said it draws UTF-8 (an improved desk), name
    and message are folded to ASCII (``fold_to_ascii``); the database, the kiosk
    and the JSON topics keep the original text.
    """
    if not utf8:
        student_name, message = fold_to_ascii(student_name), fold_to_ascii(message)
        course_code = fold_to_ascii(course_code) if course_code else course_code
    prefix = (
        f"CID:{int(consultation_id)} From:{sanitize_name(student_name)} (SID:{int(student_pk)}): "
    )
    body = sanitize_request_text(message)
    if course_code:
        body = f"[{sanitize_request_text(course_code)}] {body}"
    budget = MAX_REQUEST_TEXT_BYTES - len(prefix.encode("utf-8"))
    return prefix + truncate_utf8(body, budget, ellipsis_text=ELLIPSIS if utf8 else "...")


def consultation_json(
    consultation: Consultation, student: Student, faculty: Faculty
) -> dict[str, Any]:
    """The consultation JSON of contract 1.2 (the plan's fields first)."""
    return {
        "id": consultation.id,
        "student_name": student.name,
        "student_id": student.student_id,
        "message": consultation.message,
        "timestamp": iso(consultation.created_at),
        "status": str(consultation.status),
        "faculty_id": faculty.id,
        "faculty_name": faculty.name,
        "course_code": consultation.course_code,
        "student_department": student.department,
    }


def consultation_messages(
    consultation: Consultation, student: Student, faculty: Faculty, *, utf8: bool = False
) -> list[Outgoing]:
    """The three messages that announce a new request (contract 1, plan step 2.1)."""
    data = consultation_json(consultation, student, faculty)
    return [
        Outgoing(topics.consultation_topic(consultation.id), data, JSON_QOS),
        Outgoing(topics.faculty_requests_topic(faculty.id), data, JSON_QOS),
        request_message(consultation, student, utf8=utf8),
    ]


def request_message(
    consultation: Consultation, student: Student, *, utf8: bool = False
) -> Outgoing:
    """Only the plain-text ``/messages`` request (what the liveness re-send sends)."""
    return Outgoing(
        topics.faculty_messages_topic(consultation.faculty_id),
        request_text(
            consultation.id,
            student.name,
            student.id,
            consultation.message,
            consultation.course_code,
            utf8=utf8,
        ),
        MESSAGES_QOS,
    )


def withdrawal_message(consultation: Consultation) -> Outgoing:
    """Take a request off a desk right before it is sent again (docs/mqtt-topics.md).

    The deployed firmware reads ``/cancellations`` without a JSON library (contract
    3.1): it removes the request named after ``consultation_id`` whatever the
    ``type``, so a desk that still holds the request does not show the re-sent copy
    next to it, and one that lost it loses nothing. JSON consumers see
    ``consultation_resend``, not a cancellation.
    """
    return Outgoing(
        topics.faculty_cancellations_topic(consultation.faculty_id),
        {"consultation_id": consultation.id, "type": "consultation_resend"},
        JSON_QOS,
    )


def cancellation_message(
    consultation: Consultation,
    student: Student,
    cancelled_at: datetime,
    reason: str | None = None,
) -> Outgoing:
    """The cancellation of contract 1.3 on ``/cancellations``.

    ``reason`` (``"expired"`` when nobody answered in time) is an extra last field:
    the deployed firmware reads only ``consultation_id`` (contract 3), and a student's
    own cancellation keeps exactly the bytes it always had.
    """
    payload: dict[str, Any] = {
        "type": "consultation_cancelled",
        "consultation_id": consultation.id,
        "student_name": student.name,
        "course_code": consultation.course_code,
        "cancelled_at": iso(cancelled_at),
    }
    if reason is not None:
        payload["reason"] = reason
    return Outgoing(topics.faculty_cancellations_topic(consultation.faculty_id), payload, JSON_QOS)


def answered_elsewhere_message(consultation: Consultation, at: datetime) -> Outgoing:
    """Take a request answered in the web dashboard off the desk (docs/mqtt-topics.md).

    The deployed firmware reads ``/cancellations`` without a JSON library and removes
    the request named after ``consultation_id`` whatever the ``type`` (contract 3.1);
    JSON consumers see ``consultation_answered`` with the new status, not a cancellation.
    """
    return Outgoing(
        topics.faculty_cancellations_topic(consultation.faculty_id),
        {
            "consultation_id": consultation.id,
            "type": "consultation_answered",
            "status": str(consultation.status),
            "source": "web",
            "answered_at": iso(at),
        },
        JSON_QOS,
    )


def faculty_status_message(
    faculty_id: int, status: str, timestamp: float | None = None
) -> Outgoing:
    """The central system's faculty status of contract 1.4 (``source: "central"``)."""
    return Outgoing(
        topics.faculty_status_topic(faculty_id),
        {
            "faculty_id": int(faculty_id),
            "status": str(status),
            "timestamp": time.time() if timestamp is None else timestamp,
            "source": "central",
        },
        JSON_QOS,
    )


def consultation_event_message(
    consultation: Consultation, previous_status: str | None, at: datetime, origin: str
) -> Outgoing:
    """A status change for other kiosks on ``consultease/ui/consultations`` (docs/mqtt-topics.md)."""
    return Outgoing(
        topics.ui_consultation_events_topic(),
        {
            "type": "consultation_status",
            "consultation_id": consultation.id,
            "student_id": consultation.student_id,
            "faculty_id": consultation.faculty_id,
            "status": str(consultation.status),
            "previous_status": previous_status,
            "timestamp": iso(at),
            "origin": origin,
        },
        JSON_QOS,
    )
