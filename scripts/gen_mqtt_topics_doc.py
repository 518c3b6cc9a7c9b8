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
    utf8_text = outbound.request_text(
        44, "José Núñez", 8, "¿Podemos vernos? 日本語", "MATH 2010", utf8=True
    )
    withdrawal = outbound.withdrawal_message(consultation)
    cancel = outbound.cancellation_message(consultation, student, AT)
    expired = outbound.cancellation_message(consultation, student, AT, reason="expired")
    consultation.status = "accepted"
    answered = outbound.answered_elsewhere_message(consultation, AT)
    consultation.status = "pending"
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
        "A new request is written with its three messages (and its `consultease/ui/consultations` "
        "event) in one transaction (`AsyncMQTTService.batch`, an `OutboxBatch`; on PostgreSQL the "
        "request and its outbox rows are one INSERT statement): they are sent only if, and after, "
        "the row commits. Other changes stage their messages in their ORM session's transaction "
        "(`AsyncMQTTService.stage`), with the same guarantee.",
        "",
        f"### `{msgs[0].topic}` and `{msgs[1].topic}`",
        "",
        _block(msgs[0].payload),
        "",
        f"### `{msgs[2].topic}` (the only channel the deployed firmware reads)",
        "",
        _block(msgs[2].payload),
        "",
        "The course code leads the request: the deployed firmware shows 19 bytes of the name and "
        "5 × 25 = 125 bytes of the request, each byte as one glyph of an ASCII font (contract 3.1). "
        "So for every desk that has not said it draws UTF-8, name, course code and request are "
        "folded to ASCII (`outbound.fold_to_ascii`, anyascii: `é` → `e`, `ñ` → `n`, `中文` → "
        "`ZhongWen`, an emoji → `:grinning:`); the database, the kiosk, the web pages and the "
        "JSON topics keep the original text. Capped at 512 bytes by shortening the request and "
        "ending it with `...`; `(`, `)` and `:` in names become `[`, `]` and `-`; tabs, newlines "
        "and other control characters become spaces; invisible format characters are removed:",
        "",
        _block(long_text),
        "",
        f'({len(long_text.encode())} bytes.) A desk that says `"charset": "UTF-8"` '
        "(an improved desk, below) gets UTF-8, shortened on a character boundary with `…`:",
        "",
        _block(utf8_text),
        "",
        "### When a request is sent again",
        "",
        "The deployed firmware connects with a clean session and a random client id, so what is "
        "published while it is disconnected, even for a second, is lost at the broker; it drops "
        "requests that arrive while AWAY; and it queues another copy of a request it holds as a "
        "second request (contract 3.1). The central system therefore re-sends a pending request "
        "exactly when the desk may not hold it (`LivenessService._what_to_resend`, "
        "`ConsultationController.resend_pending`):",
        "",
        "| the desk … | sign | re-sent once it is online and AVAILABLE |",
        "|---|---|---|",
        "| rebooted | `uptime` (heartbeat) or presence `timestamp` went backwards; or, with no "
        "earlier uptime known (we restarted), it booted more than 2 s after the last message we "
        "had from it (`Faculty.last_seen`) | every pending request (oldest first, at most 10) |",
        "| reconnected | a presence message that is not the legacy copy of the last one (the firmware "
        "publishes presence after every connect), or the desk coming back after 90 s of silence | "
        "those sent (`last_sent_at`) since the last message we had from it before, minus 5 s |",
        "| was AWAY | presence AWAY, later AVAILABLE | those sent since the last message before "
        "it said AWAY, minus 5 s |",
        "",
        "These signs compare a desk's messages in the order it sent them: the central system "
        "handles each desk's messages (its topics and the legacy status topic) in arrival order, "
        "even when it is behind and folds a newer heartbeat into a waiting one "
        "(`central_system/services/inbound_queue.py`). "
        "Nothing else is re-sent: a request sent more than 5 s before a message we had from the "
        "desk since is on it, and stays there across AWAY → AVAILABLE and outages of any length "
        "without a reboot. The last-will presence (`OFFLINE`) of an improved desk is no sign of "
        "a connection and its `timestamp` (written at connect time) is not read. Which of the "
        "requests sent since our last "
        "message from the desk reached it cannot be known (the firmware acknowledges nothing, "
        "and the broker only notices a dead link after 1.5 keepalives). So each re-send in the "
        "last two rows is preceded, in the same transaction, by a withdrawal on "
        "`/cancellations`:",
        "",
        _block(withdrawal.payload),
        "",
        "The firmware reads `/cancellations` without a JSON library (contract 3.1): it removes "
        "the request named after `consultation_id` whatever the `type`, the request on screen "
        "first. A desk that held the request therefore shows it once, now at the end of its "
        "queue; one that lost it shows it once. JSON readers see `consultation_resend`, not a "
        "cancellation. Both arrive in order: the withdrawal (QoS 1) is published first, and "
        "the broker forwards a QoS 2 request only after its PUBREL. Not for the "
        '`faculty_desk_unit_FIXED.ino` variant: it compares `"CID"+id` with the stored id, '
        "never removes a cancelled or withdrawn request, and so may still show a re-sent copy "
        "twice; nothing we send can fix that without breaking the main firmware's "
        "acknowledgements.",
        "",
        "An improved desk (persistent session) says so in its presence and heartbeat with "
        '`"session": "persistent"` (and `"charset": "UTF-8"` when its screen draws UTF-8). The '
        "broker keeps what it misses while disconnected, so it gets nothing again after a "
        "reconnect; after a reboot and after AWAY it is treated like the firmware. "
        "`last_sent_at` is updated on every re-send.",
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
        "Also carries the withdrawals above (`type: consultation_resend`).",
        "",
        "A request the faculty member answered in the web dashboard (issue 10: accept or "
        "busy in the browser) leaves the desk's screen through the same topic. The deployed "
        "firmware reads `/cancellations` without a JSON library and removes the request named "
        "after `consultation_id` whatever the `type` (contract 3.1), so nothing changes for it; "
        "JSON consumers see `consultation_answered` and the new status, not a cancellation. "
        "The browser's answer is the same transition as the desk's button (contract 2.2 rules, "
        "ownership, audit) and the kiosks hear it on `consultease/ui/consultations` as usual:",
        "",
        _block(answered.payload),
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
