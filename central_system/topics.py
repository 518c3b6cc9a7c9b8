"""Every MQTT topic string of ConsultEase is built here and nowhere else (contract v1)."""

from __future__ import annotations

import re

ROOT = "consultease"

# Subscription filters of the central system (contract section 2).
FACULTY_STATUS_FILTER = f"{ROOT}/faculty/+/status"
LEGACY_FACULTY_STATUS_FILTER = "faculty/+/status"
FACULTY_MAC_STATUS_FILTER = f"{ROOT}/faculty/+/mac_status"
FACULTY_RESPONSES_FILTER = f"{ROOT}/faculty/+/responses"
FACULTY_HEARTBEAT_FILTER = f"{ROOT}/faculty/+/heartbeat"
FACULTY_DIAGNOSTICS_FILTER = f"{ROOT}/faculty/+/diagnostics"
UI_EVENTS_FILTER = f"{ROOT}/ui/#"

_FACULTY_TOPIC = re.compile(r"^(?:consultease/)?faculty/(\d{1,9})/([a-z_]+)$")


def faculty_messages_topic(faculty_id: int) -> str:
    """Plain-text requests that the deployed firmware reads (contract 1.1)."""
    return f"{ROOT}/faculty/{int(faculty_id)}/messages"


def faculty_requests_topic(faculty_id: int) -> str:
    """JSON requests for newer desk units and dashboards (contract 1.2)."""
    return f"{ROOT}/faculty/{int(faculty_id)}/requests"


def faculty_cancellations_topic(faculty_id: int) -> str:
    """Cancellations (contract 1.3)."""
    return f"{ROOT}/faculty/{int(faculty_id)}/cancellations"


def faculty_status_topic(faculty_id: int) -> str:
    """Presence, written by desk units and by ``publish_faculty_status`` (contract 1.4, 2.1)."""
    return f"{ROOT}/faculty/{int(faculty_id)}/status"


def legacy_faculty_status_topic(faculty_id: int) -> str:
    """The older firmware's presence topic (contract 2)."""
    return f"faculty/{int(faculty_id)}/status"


def faculty_mac_status_topic(faculty_id: int) -> str:
    """The oldest firmware's BLE presence topic (contract 2)."""
    return f"{ROOT}/faculty/{int(faculty_id)}/mac_status"


def faculty_responses_topic(faculty_id: int) -> str:
    """Button presses (contract 2.2)."""
    return f"{ROOT}/faculty/{int(faculty_id)}/responses"


def faculty_heartbeat_topic(faculty_id: int) -> str:
    """Desk heartbeats (contract 2.3)."""
    return f"{ROOT}/faculty/{int(faculty_id)}/heartbeat"


def faculty_diagnostics_topic(faculty_id: int) -> str:
    """Desk diagnostics (contract 2)."""
    return f"{ROOT}/faculty/{int(faculty_id)}/diagnostics"


def consultation_topic(consultation_id: int) -> str:
    """One topic per consultation (contract 1.2, plan step 2.1)."""
    return f"{ROOT}/consultations/{int(consultation_id)}"


def central_status_topic(client_id: str) -> str:
    """The central system's retained online/offline status (contract 4)."""
    return f"{ROOT}/system/central/{client_id}/status"


def ui_consultation_events_topic() -> str:
    """Consultation changes for other kiosks of the same campus (docs/mqtt-topics.md)."""
    return f"{ROOT}/ui/consultations"


def parse_faculty_topic(topic: str) -> tuple[int, str] | None:
    """``(faculty_id, leaf)`` for ``consultease/faculty/{fid}/{leaf}`` or legacy ``faculty/{fid}/status``."""
    match = _FACULTY_TOPIC.match(topic)
    if match is None:
        return None
    if not topic.startswith(ROOT + "/") and match.group(2) != "status":
        return None
    return int(match.group(1)), match.group(2)
