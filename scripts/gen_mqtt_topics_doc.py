"""Write docs/mqtt-topics.md from the real payload builders and parsers (run: python scripts/gen_mqtt_topics_doc.py)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from central_system.controllers import outbound
from central_system.controllers.schemas import (
    HeartbeatPayload,
    MacStatusPayload,
    PresencePayload,
    ResponsePayload,
)
from central_system.models import Consultation, Faculty, Student

OUT = Path(__file__).resolve().parent.parent / "docs" / "mqtt-topics.md"
AT = datetime(2026, 11, 27, 16, 25, 29, 123000, tzinfo=UTC)


def _block(payload: object) -> str:
    if isinstance(payload, str):
        return f"```text\n{payload}\n```"
    return "```json\n" + json.dumps(payload, indent=2, ensure_ascii=False) + "\n```"


def _examples() -> tuple[Consultation, Student, Faculty]:
    student = Student(
        id=7,
        name="Maria Santos",
        student_id="2021-00001",
        department="Computer Science",
        rfid_uid="04A1B2C3",
    )
    faculty = Faculty(id=3, name="Dr. Cruz")
    consultation = Consultation(
        id=42,
        student_id=7,
        faculty_id=3,
        message="Could we go over my thesis draft?",
        course_code="CS 101",
        status="pending",
        created_at=AT,
    )
    return consultation, student, faculty


INBOUND: list[tuple[str, str, type, dict[str, object]]] = [
    (
        "consultease/faculty/{fid}/status",
        "Presence (contract 2.1), QoS 0, retained. Parsed by `PresencePayload`.",
        PresencePayload,
        {
            "faculty_id": 3,
            "faculty_name": "Dr. Cruz",
            "present": True,
            "status": "AVAILABLE",
            "timestamp": 123456,
            "ntp_sync_status": "SYNCED",
            "in_grace_period": False,
            "detailed_status": "AVAILABLE",
        },
    ),
    (
        "faculty/{fid}/status",
        "Legacy presence topic, same payload (also in its grace-period form).",
        PresencePayload,
        {
            "faculty_id": 3,
            "faculty_name": "Dr. Cruz",
            "present": True,
            "status": "AVAILABLE",
            "timestamp": 123456,
            "ntp_sync_status": "SYNCING",
            "in_grace_period": True,
            "grace_period_remaining": 15000,
            "detailed_status": "AVAILABLE (reconnecting... 15s)",
        },
    ),
    (
        "consultease/faculty/{fid}/mac_status",
        "The oldest firmware's BLE presence. Parsed by `MacStatusPayload`.",
        MacStatusPayload,
        {"status": "faculty_present", "mac": "AA:BB:CC:DD:EE:FF", "timestamp": 123456},
    ),
    (
        "consultease/faculty/{fid}/responses",
        "A button press (contract 2.2). `message_id` is a string (an int is accepted). Parsed by `ResponsePayload`.",
        ResponsePayload,
        {
            "faculty_id": 3,
            "faculty_name": "Dr. Cruz",
            "response_type": "ACKNOWLEDGE",
            "message_id": "42",
            "timestamp": "123456",
            "faculty_present": True,
            "response_method": "physical_button",
            "status": "Professor acknowledges the request",
        },
    ),
    (
        "consultease/faculty/{fid}/heartbeat",
        "Heartbeat (contract 2.3), about every 30 s. Parsed by `HeartbeatPayload`.",
        HeartbeatPayload,
        {
            "faculty_id": 3,
            "uptime": 123456,
            "free_heap": 150000,
            "wifi_connected": True,
            "wifi_rssi": -60,
            "wifi_stable": True,
            "mqtt_stable": True,
            "wifi_retries": 0,
            "mqtt_retries": 0,
            "time_initialized": True,
            "ntp_sync_status": "SYNCED",
            "presence_status": "AVAILABLE",
            "queue_size": 0,
            "consultation_queue_size": 0,
        },
    ),
    (
        "consultease/faculty/{fid}/heartbeat",
        "The second heartbeat shape, after a clock sync.",
        HeartbeatPayload,
        {
            "faculty_id": 3,
            "ntp_sync_success": True,
            "ntp_sync_status": "SYNCED",
            "retry_count": 0,
            "timestamp": 1764260729,
            "current_time": "2026-11-27 16:25:29",
        },
    ),
]


def render() -> str:
    """The whole document."""
    consultation, student, faculty = _examples()
    msgs = outbound.consultation_messages(consultation, student, faculty)
    long_text = outbound.request_text(43, "José (Pepe): Núñez", 8, "日本語の質問です。" * 40)
    cancel = outbound.cancellation_message(consultation, student, AT)
    expired = outbound.cancellation_message(consultation, student, AT, reason="expired")
    status = outbound.faculty_status_message(3, "away", timestamp=1764260729.12)
    event = outbound.consultation_event_message(
        consultation, "pending", AT, "consultease-central-kiosk1"
    )
    event.payload["status"] = "accepted"  # type: ignore[index]

    parts = [
        "# MQTT topics as implemented",
        "",
        "Generated by `scripts/gen_mqtt_topics_doc.py` from the real builders "
        "(`central_system/controllers/outbound.py`) and parsers "
        "(`central_system/controllers/schemas.py`); do not edit by hand. "
        "The wire contract with the deployed firmware is `mqtt-contract.md` (v1); "
        "this page shows what the central system sends and accepts. `{fid}` is `Faculty.id`, "
        "`{cid}` is `Consultation.id`.",
        "",
        "## Central system -> desk unit",
        "",
        "| topic | QoS | retain | builder |",
        "|---|---|---|---|",
        "| `consultease/consultations/{cid}` | 1 | no | `consultation_messages` |",
        "| `consultease/faculty/{fid}/requests` | 1 | no | `consultation_messages` |",
        "| `consultease/faculty/{fid}/messages` | 2 | no | `request_text` / `request_message` |",
        "| `consultease/faculty/{fid}/cancellations` | 1 | no | `cancellation_message` |",
        "| `consultease/faculty/{fid}/status` | 1 | no | `faculty_status_message` |",
        "| `consultease/ui/consultations` | 1 | no | `consultation_event_message` |",
        "",
        "A new request is written with its three messages in one transaction "
        "(`AsyncMQTTService.stage`): they are sent only if, and after, the row commits.",
        "",
        f"### `{msgs[0].topic}` and `{msgs[1].topic}`",
        "",
        _block(msgs[0].payload),
        "",
        f"### `{msgs[2].topic}` (the only channel the deployed firmware reads)",
        "",
        _block(msgs[2].payload),
        "",
        "Capped at 512 bytes by shortening the request on a UTF-8 boundary and ending it with `…`; "
        "`(`, `)` and `:` in names become `[`, `]` and `-`, control characters are removed:",
        "",
        _block(long_text),
        "",
        f"({len(long_text.encode())} bytes.) Pending requests are re-sent here when a desk comes back "
        "or its faculty becomes available again (`last_sent_at` is updated).",
        "",
        f"### `{cancel.topic}`",
        "",
        _block(cancel.payload),
        "",
        "A request nobody answered in time expires (issue 12: `consultation_expire_after_s`, "
        "`consultation_day_end`); the desk gets the same cancellation with one more, last field "
        "(the deployed firmware reads only `consultation_id`, contract 3):",
        "",
        _block(expired.payload),
        "",
        f"### `{status.topic}` (published by the central system)",
        "",
        _block(status.payload),
        "",
        "`timestamp` is epoch seconds (the plan's `time.time()`). The central system subscribes "
        'to this topic with No Local and also ignores any payload with `source: "central"`, so '
        "neither its own publications nor another kiosk's are taken for a desk's report. "
        "The liveness service publishes `offline` here when a desk falls silent.",
        "",
        "### `consultease/ui/consultations` (between kiosks of one campus)",
        "",
        "Every consultation status change, staged in the transaction that made it:",
        "",
        _block(event.payload),
        "",
        "## Desk unit -> central system",
        "",
        "Every payload is parsed into a pydantic model (unknown fields are ignored). "
        "Over 16 KiB, invalid UTF-8 or JSON (including NaN/Infinity), not an object, wrong types, "
        "a `faculty_id` that disagrees with the topic, or an unknown faculty: dropped with one "
        "log line (payload cut to 200 characters) and counted in `InboundStats` "
        "(`central_system.controllers.inbound_stats`).",
        "",
    ]
    for topic, note, model, example in INBOUND:
        model.model_validate(example)  # the example really parses
        parts += [f"### `{topic}`", "", note, "", _block(example), ""]
    parts += [
        "### `consultease/faculty/{fid}/diagnostics`",
        "",
        "Free-form JSON object, stored on `DeskUnit.last_diagnostics`; only `faculty_id` is checked.",
        "",
        "## Responses (contract 2.2)",
        "",
        "| response_type | becomes |",
        "|---|---|",
        "| ACKNOWLEDGE, ACCEPTED | accepted |",
        "| BUSY, UNAVAILABLE | busy |",
        "| DECLINED, REJECTED | declined |",
        "| COMPLETED | completed |",
        "",
        "Applied only when the topic's `{fid}`, the payload's `faculty_id` and the consultation's "
        "faculty agree and `models.ALLOWED_TRANSITIONS` allows it. The same response twice is a "
        "no-op (no second notification). Anything else is logged, written to `audit_log` "
        "(`consultation_response_rejected`, at most 20 per desk per minute) and changes nothing.",
        "",
        "## Liveness (contract 3)",
        "",
        "Any valid, non-retained message from a desk marks it online (`Faculty.desk_online`, "
        "`last_seen`). A desk silent for `desk_offline_after_s` (90 s) is marked offline by a check "
        "every `liveness_check_interval_s`, and its faculty is shown `offline`; the last reported "
        "presence is kept in memory and restored when the desk returns (a heartbeat's "
        "`presence_status` is enough). Retained messages replayed by the broker update presence "
        "but are not a sign of life. `last_seen`, heartbeats and diagnostics are written in one "
        "batch per check, so hundreds of desks cost one transaction per interval.",
        "",
    ]
    return "\n".join(parts)


def main() -> int:
    """Write the document; with ``--check`` only compare."""
    text = render()
    if "--check" in sys.argv:
        return 0 if OUT.read_text(encoding="utf-8") == text else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
