"""Pydantic models of every inbound desk-unit payload (contract section 2) and one parser.

``parse_inbound(model, message)`` turns an :class:`MQTTMessage` into a model or
drops it: one log line with the payload cut short, and a per-reason counter in
:class:`InboundStats`. Nothing a desk sends can raise out of it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..models import ConsultationStatus, FacultyStatus
from ..services.async_mqtt_service import MQTTMessage
from ..topics import parse_faculty_topic

logger = logging.getLogger(__name__)

MAX_INBOUND_BYTES: Final = 16 * 1024
LOG_PAYLOAD_CHARS: Final = 200

# Contract 2.2: every response word a deployed desk unit has ever sent.
RESPONSE_MAPPING: Final[dict[str, ConsultationStatus]] = {
    "ACKNOWLEDGE": ConsultationStatus.ACCEPTED,
    "ACCEPTED": ConsultationStatus.ACCEPTED,
    "BUSY": ConsultationStatus.BUSY,
    "UNAVAILABLE": ConsultationStatus.BUSY,
    "DECLINED": ConsultationStatus.DECLINED,
    "REJECTED": ConsultationStatus.DECLINED,
    "COMPLETED": ConsultationStatus.COMPLETED,
}

# Contract 2.1: the desk's presence words.
PRESENCE_MAPPING: Final[dict[str, FacultyStatus]] = {
    "AVAILABLE": FacultyStatus.AVAILABLE,
    "AWAY": FacultyStatus.AWAY,
    "OFFLINE": FacultyStatus.OFFLINE,
    "BUSY": FacultyStatus.BUSY,
}

DropReason = Literal[
    "too_large",
    "bad_utf8",
    "bad_json",
    "not_an_object",
    "invalid",
    "bad_topic",
    "faculty_mismatch",
    "unknown_faculty",
]


class InboundStats:
    """Thread-safe counters of accepted and dropped inbound messages, by reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dropped: Counter[str] = Counter()
        self._accepted: Counter[str] = Counter()
        self._ignored: Counter[str] = Counter()

    def count_drop(self, reason: str) -> None:
        """Count one dropped message."""
        with self._lock:
            self._dropped[reason] += 1

    def count_accept(self, kind: str) -> None:
        """Count one accepted message of ``kind`` (the model's name)."""
        with self._lock:
            self._accepted[kind] += 1

    def count_ignore(self, reason: str) -> None:
        """Count one well-formed message that is deliberately not acted on (our own echo)."""
        with self._lock:
            self._ignored[reason] += 1

    @property
    def ignored(self) -> dict[str, int]:
        """Ignored messages by reason."""
        with self._lock:
            return dict(self._ignored)

    @property
    def dropped(self) -> dict[str, int]:
        """Dropped messages by reason."""
        with self._lock:
            return dict(self._dropped)

    @property
    def accepted(self) -> dict[str, int]:
        """Accepted messages by payload kind."""
        with self._lock:
            return dict(self._accepted)

    @property
    def total_dropped(self) -> int:
        """All dropped messages."""
        with self._lock:
            return sum(self._dropped.values())

    def snapshot(self) -> dict[str, Any]:
        """Both counters, for the admin screen and ``doctor``."""
        return {"accepted": self.accepted, "dropped": self.dropped, "ignored": self.ignored}

    def reset(self) -> None:
        """Zero every counter (tests)."""
        with self._lock:
            self._dropped.clear()
            self._accepted.clear()
            self._ignored.clear()


# The process's counters; controllers count here unless given their own.
inbound_stats = InboundStats()


# A century in milliseconds: more than any desk runs (the firmware's millis() wraps at 2**32,
# 49.7 days). Beyond it the number is no uptime, and ``now - uptime`` (the liveness service's
# boot time) would fall before year 1.
MAX_UPTIME_MS: Final = 100 * 366 * 24 * 3600 * 1000


def _uptime(value: object) -> int | None:
    """A desk's milliseconds since boot, or None when it is not a number from 0 to
    :data:`MAX_UPTIME_MS` (the message itself still counts)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            return None
    try:
        result = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    return result if 0 <= result <= MAX_UPTIME_MS else None


def _improved(session: str | None, charset: str | None) -> tuple[bool, bool] | None:
    """What an improved desk says of itself (docs/mqtt-topics.md); None from the deployed firmware."""
    if session is None and charset is None:
        return None
    return (
        session.strip().lower() == "persistent" if session else False,
        charset.strip().upper() in ("UTF-8", "UTF8") if charset else False,
    )


class _Inbound(BaseModel):
    """Tolerant of unknown fields (contract 1.2: consumers ignore what they do not know)."""

    model_config = ConfigDict(extra="allow", str_max_length=4096)


class PresencePayload(_Inbound):
    """Contract 2.1, on ``consultease/faculty/{fid}/status`` and legacy ``faculty/{fid}/status``."""

    faculty_id: int | None = Field(default=None, strict=True)
    faculty_name: str | None = None
    present: bool | None = Field(default=None, strict=True)
    status: str | None = None
    timestamp: int | float | str | None = None  # uptime millis: never used as a clock
    ntp_sync_status: str | None = None
    in_grace_period: bool | None = None
    grace_period_remaining: int | None = None
    detailed_status: str | None = None
    source: str | None = None  # "central" on the central system's own publications (1.4)
    # An improved desk's capabilities (docs/mqtt-topics.md); the deployed firmware sends neither.
    session: str | None = None
    charset: str | None = None

    def uptime_ms(self) -> int | None:
        """``timestamp`` as the firmware's milliseconds since boot, if it is a number."""
        return _uptime(self.timestamp)

    def improved(self) -> tuple[bool, bool] | None:
        """(persistent session, UTF-8 screen) as an improved desk declares them; None from the firmware."""
        return _improved(self.session, self.charset)

    def presence(self) -> FacultyStatus | None:
        """The reported presence, or None when the payload says nothing usable."""
        if self.status is not None:
            mapped = PRESENCE_MAPPING.get(self.status.strip().upper())
            if mapped is not None:
                return mapped
            # The central system's own 1.4 payloads use lower-case values.
            try:
                return FacultyStatus(self.status.strip().lower())
            except ValueError:
                pass
        if self.present is not None:
            return FacultyStatus.AVAILABLE if self.present else FacultyStatus.AWAY
        return None


class MacStatusPayload(_Inbound):
    """The oldest firmware's BLE presence on ``consultease/faculty/{fid}/mac_status``."""

    status: Literal["faculty_present", "faculty_absent"]
    mac: str | None = None
    timestamp: int | float | str | None = None

    def presence(self) -> FacultyStatus:
        """available when present, away when absent."""
        return FacultyStatus.AVAILABLE if self.status == "faculty_present" else FacultyStatus.AWAY


class ResponsePayload(_Inbound):
    """Contract 2.2: a button press on the desk."""

    faculty_id: int = Field(strict=True)
    faculty_name: str | None = None
    response_type: str
    message_id: int
    timestamp: int | float | str | None = None
    faculty_present: bool | None = None
    response_method: str | None = None
    status: str | None = None

    @field_validator("message_id", mode="before")
    @classmethod
    def _message_id_str_or_int(cls, value: object) -> int:
        # The firmware sends the id as a string; older tools send an int. Nothing else.
        if isinstance(value, bool):
            raise ValueError("message_id must be a string of digits or an int")
        if isinstance(value, int):
            result = value
        elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            result = int(value.strip())
        else:
            raise ValueError("message_id must be a string of digits or an int")
        # Every id we can create: SQLite and PostgreSQL BIGINT keys reach 2**63 - 1.
        if not 0 < result < 2**63:
            raise ValueError("message_id out of range")
        return result

    @field_validator("response_type")
    @classmethod
    def _known_response(cls, value: str) -> str:
        word = value.strip().upper()
        if word not in RESPONSE_MAPPING:
            raise ValueError(f"unknown response_type {value[:40]!r}")
        return word

    @property
    def target_status(self) -> ConsultationStatus:
        """The consultation status this response asks for (contract 2.2 mapping)."""
        return RESPONSE_MAPPING[self.response_type]


class HeartbeatPayload(_Inbound):
    """Contract 2.3, both shapes (periodic, and after a clock sync)."""

    faculty_id: int | None = Field(default=None, strict=True)
    uptime: int | float | None = None
    free_heap: int | float | None = None
    wifi_connected: bool | None = None
    wifi_rssi: int | float | None = None
    wifi_stable: bool | None = None
    mqtt_stable: bool | None = None
    wifi_retries: int | None = None
    mqtt_retries: int | None = None
    time_initialized: bool | None = None
    ntp_sync_status: str | None = None
    presence_status: str | None = None
    queue_size: int | None = None
    consultation_queue_size: int | None = None
    # The second shape.
    ntp_sync_success: bool | None = None
    retry_count: int | None = None
    timestamp: int | float | str | None = None
    current_time: str | int | float | None = None
    session: str | None = None
    charset: str | None = None

    def uptime_ms(self) -> int | None:
        """``uptime`` (the periodic shape), milliseconds since boot."""
        return _uptime(self.uptime)

    def improved(self) -> tuple[bool, bool] | None:
        """(persistent session, UTF-8 screen) as an improved desk declares them; None from the firmware."""
        return _improved(self.session, self.charset)

    def presence(self) -> FacultyStatus | None:
        """The presence this heartbeat reports, if any."""
        if self.presence_status is None:
            return None
        return PRESENCE_MAPPING.get(self.presence_status.strip().upper())


class DiagnosticsPayload(_Inbound):
    """Free-form diagnostics; only ``faculty_id`` is checked."""

    faculty_id: int | None = Field(default=None, strict=True)


M = TypeVar("M", bound=_Inbound)


def payload_excerpt(payload: bytes) -> str:
    """The payload as text cut to ``LOG_PAYLOAD_CHARS`` for a log line."""
    text = payload[: LOG_PAYLOAD_CHARS * 4].decode("utf-8", errors="replace")
    if len(text) > LOG_PAYLOAD_CHARS or len(payload) > LOG_PAYLOAD_CHARS * 4:
        return repr(text[:LOG_PAYLOAD_CHARS]) + "…"
    return repr(text)


def drop(
    message: MQTTMessage, reason: str, detail: str = "", stats: InboundStats | None = None
) -> None:
    """Log one line for a dropped message and count it (an unknown desk: rarely, see :class:`UnknownDeskLog`)."""
    located = parse_faculty_topic(message.topic) if reason == "unknown_faculty" else None
    if located is not None:
        drop_unknown_faculty(message, located[0], stats)
        return
    (stats or inbound_stats).count_drop(reason)
    logger.warning(
        "dropped message on %r (%s%s): %s",
        message.topic[:200],
        reason,
        f": {detail[:200]}" if detail else "",
        payload_excerpt(message.payload),
    )


# An unknown desk (a faculty id not in the database) is reported once per this interval.
UNKNOWN_DESK_LOG_INTERVAL_S: float = 300.0
# Unknown desks remembered at once (bounded memory whatever arrives on the wire).
_UNKNOWN_DESK_MAX_TRACKED: Final = 10_000
_UNKNOWN_DESK_MAX_TOPICS: Final = 8
# New unknown desks reported per interval; more are counted and reported in a later interval
# (ever-new made-up ids, e.g. in the anonymous transition mode, must not flood the log).
UNKNOWN_DESK_MAX_NEW_PER_INTERVAL: Final = 20


class UnknownDeskLog:
    """Reports each unknown desk once per interval, never per message and never its payloads.

    A desk configured for a faculty id the database does not have (a fresh
    database, a deleted faculty member) sends a presence on two topics, a heartbeat
    every 30 s, ...; one warning per desk per interval says so and how to fix it,
    with the count and topics of what was dropped since. Every message is still
    counted in the drop statistics.
    """

    def __init__(
        self,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        # faculty id -> [time of the last report, messages since, topics since]
        self._desks: dict[int, tuple[float, int, set[str]]] = {}
        self._new_reported: deque[float] = deque()  # when each of the latest new desks was

    @property
    def interval_s(self) -> float:
        """The reporting interval (the module's setting unless given)."""
        return UNKNOWN_DESK_LOG_INTERVAL_S if self._interval_s is None else self._interval_s

    def report(self, faculty_id: int, topic: str) -> bool:
        """Note one dropped message of ``faculty_id``'s desk; log when its interval is over. True when logged."""
        now = self._clock()
        with self._lock:
            entry = self._desks.get(faculty_id)
            if entry is not None and now - entry[0] < self.interval_s:
                last, count, seen = entry
                if len(seen) < _UNKNOWN_DESK_MAX_TOPICS:
                    seen.add(topic[:200])
                self._desks[faculty_id] = (last, count + 1, seen)
                return False
            if entry is None:
                if len(self._desks) >= _UNKNOWN_DESK_MAX_TRACKED:
                    self._desks.clear()  # a flood of made-up ids: start counting afresh
                recent = self._new_reported
                while recent and now - recent[0] >= self.interval_s:
                    recent.popleft()
                if len(recent) >= UNKNOWN_DESK_MAX_NEW_PER_INTERVAL:
                    self._desks[faculty_id] = (now, 1, {topic[:200]})  # reported next interval
                    return False
                recent.append(now)
            suppressed = entry[1] if entry is not None else 0
            topics_since = sorted(entry[2]) if entry is not None else []
            self._desks[faculty_id] = (now, 0, set())
        since = (
            f"; {suppressed} more dropped since the last report ({', '.join(topics_since)})"
            if suppressed
            else ""
        )
        logger.warning(
            "a desk unit reports as faculty %d, which is not in the database: its messages are "
            "dropped (this one on %r%s). Add the faculty member (`scripts/consultease faculty "
            "add`) or correct the desk's faculty id. Next report in %.0f s at the earliest.",
            faculty_id,
            topic[:200],
            since,
            self.interval_s,
        )
        return True

    def reset(self) -> None:
        """Forget every desk (tests)."""
        with self._lock:
            self._desks.clear()
            self._new_reported.clear()


unknown_desk_log = UnknownDeskLog()


def drop_unknown_faculty(
    message: MQTTMessage, faculty_id: int, stats: InboundStats | None = None
) -> None:
    """Drop a message from a desk whose faculty is not in the database: counted, logged rarely."""
    (stats or inbound_stats).count_drop("unknown_faculty")
    unknown_desk_log.report(faculty_id, message.topic)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); PostgreSQL's json type refuses them.
    raise ValueError(f"{name} is not valid JSON")


def _first_error(err: ValidationError) -> str:
    errors = err.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return f"{loc}: {first.get('msg', 'invalid')}" if loc else str(first.get("msg", "invalid"))


def parse_inbound(
    model: type[M],
    message: MQTTMessage,
    stats: InboundStats | None = None,
    *,
    check_faculty: bool = True,
) -> M | None:
    """Parse a desk unit's message into ``model``; on any problem drop it (one log line, counted).

    With ``check_faculty`` a ``faculty_id`` that disagrees with the topic is dropped
    here; the response handler turns it off to audit that case itself.
    """
    payload = message.payload
    if len(payload) > MAX_INBOUND_BYTES:
        drop(message, "too_large", f"{len(payload)} bytes", stats)
        return None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        drop(message, "bad_utf8", str(err), stats)
        return None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:
        # The firmware concatenates strings: a '"' in a name makes invalid JSON (contract 2.1).
        drop(message, "bad_json", str(err), stats)
        return None
    if not isinstance(data, dict):
        drop(message, "not_an_object", type(data).__name__, stats)
        return None
    try:
        parsed = model.model_validate(data)
    except ValidationError as err:
        drop(message, "invalid", _first_error(err), stats)
        return None
    except (ValueError, TypeError, RecursionError) as err:
        drop(message, "invalid", str(err), stats)
        return None
    located = parse_faculty_topic(message.topic)
    if located is None:
        drop(message, "bad_topic", "", stats)
        return None
    topic_fid = located[0]
    payload_fid = getattr(parsed, "faculty_id", None)
    if check_faculty and payload_fid is not None and payload_fid != topic_fid:
        drop(message, "faculty_mismatch", f"payload {payload_fid} != topic {topic_fid}", stats)
        return None
    (stats or inbound_stats).count_accept(model.__name__)
    return parsed
