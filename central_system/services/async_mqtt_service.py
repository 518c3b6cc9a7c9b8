"""The central system's one asynchronous MQTT service.

This is the only module of ``central_system`` that imports paho-mqtt. One
``AsyncMQTTService`` owns the process's single MQTT connection; everything else
publishes and subscribes through it.

Guarantees:

* **Never blocks the caller.** ``publish_async`` validates and serialises the
  payload, appends it to an in-memory queue and returns a :class:`PublishHandle`.
  No disk or network I/O happens on the caller's thread.
* **Loses nothing.** Every QoS >= 1 message is written to the outbox table by a
  writer thread in batches (group commit) and deleted only when the broker
  acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2). A message that
  announces a database change is staged in the same transaction as that change
  (:meth:`AsyncMQTTService.stage`). After a process restart, unacknowledged
  rows are published again, in ``id`` order.
* **Bounded backlog.** See :data:`BACKLOG_POLICY`.
* **Survives inbound bursts.** Received messages wait in a bounded queue where a
  newer state report replaces an older one on the same topic and nothing else is
  ever dropped; at the bound the service stops reading. See :data:`INBOUND_POLICY`.

Threads: ``mqtt-writer`` (database), ``mqtt-network`` (paho's socket, driven
through paho's external-loop API so that reconnects use our own jittered
backoff), ``mqtt-dispatch`` (subscription handlers, so a slow handler never
stalls keepalive).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Connection, Engine, Executable, Table, bindparam, delete, insert
from sqlalchemy import event as sa_event
from sqlalchemy import select as sa_select
from sqlalchemy.orm import Session

from ..config import Settings, get_settings
from ..models.base import utcnow
from ..models.outbox import OutboxMessage
from ..topics import central_status_topic, parse_faculty_topic
from .inbound_queue import InboundQueue, parent_level

logger = logging.getLogger(__name__)

BACKLOG_POLICY: Final = (
    "The backlog (accepted, not yet acknowledged) is bounded by mqtt_max_backlog. "
    "A retained message that is still waiting supersedes an older waiting retained message "
    "on the same topic (the older is deleted and counted in coalesced_messages). "
    "When the backlog is still over the bound, the oldest waiting message is deleted from the "
    "outbox, counted in dropped_messages and logged; its handle's waits return False. "
    "Pending consultation requests are not lost this way: the liveness service re-sends them "
    "from the consultations table when a desk reconnects. "
    "QoS 0 messages are never stored: they are dropped (and counted) while disconnected."
)

INBOUND_POLICY: Final = (
    "Received messages wait for the handlers in one queue, in arrival order. A message on a "
    "topic whose every subscription allows coalescing (desk presence, heartbeats, diagnostics: "
    "state that a newer report replaces) takes the place of a still-waiting message on the same "
    "topic: the newest wins, the older is never handled and is counted as superseded "
    "(inbound_superseded, and per subscription in inbound), unless the same sender (one desk: "
    "its topics, the legacy one included) sent something else after the older one; then both "
    "are handled, so each desk's messages are handled in the order it sent them. Every other "
    "message (a desk's ACKNOWLEDGE or BUSY) is never replaced or dropped. The queue is bounded by "
    "mqtt_inbound_max_pending messages and mqtt_inbound_max_bytes payload bytes: at the bound the "
    "service stops reading from the broker until the handlers catch up (inbound_pauses), so the "
    "rest of a burst waits in TCP buffers and at the broker instead of in memory here."
)

_OUTBOX = cast(Table, OutboxMessage.__table__)
_AUTH_REASON_CODES: Final = frozenset(
    {0x86, 0x87, 0x8C}
)  # bad credentials, not authorised, bad auth method
_UNSUPPORTED_PROTOCOL: Final = 0x84
_PUBCOMP_ID_NOT_FOUND: Final = 0x92
_RELAY_WINDOW: Final = 1000  # QoS>=1 messages handed to paho and not yet acknowledged
_DISPATCH_BATCH: Final = 256  # messages the dispatch thread takes from the inbound queue at once
_ROUTE_CACHE_MAX: Final = 100_000  # topics whose matching subscriptions are remembered
_ECHO_TTL_S: Final = 30.0
_STATE_POLL_S: Final = 1.0
_DELETE_FLUSH_S: Final = 0.25
# Rows per multi-row INSERT into the SQLite outbox (5 parameters each; SQLite allows 32,766).
_SQLITE_ROWS_PER_INSERT: Final = 500
_CONNECT_TIMEOUT_S: Final = 5.0
_READ_BUFFER_BYTES: Final = 64 * 1024
_PACKETS_PER_READ: Final = 2000  # packets handled per wake-up of the network thread, at most
# Inbound reads at most this often while messages trickle in, so that one wake-up of the
# network and dispatch threads handles several messages (a wake-up costs more CPU than a
# heartbeat's parsing). Writes and the wake socket are never delayed; a burst (a full read
# buffer) is read at once.
_READ_TICK_S: Final = 0.01


# --------------------------------------------------------------------------- errors


class MQTTServiceError(Exception):
    """Base class of every error this service raises."""


class PublishValidationError(MQTTServiceError, ValueError):
    """``publish_async`` refused its arguments; nothing was queued."""


class PayloadTooLargeError(PublishValidationError):
    """The serialised payload is over ``mqtt_max_payload_bytes``."""


class ServiceStoppedError(MQTTServiceError):
    """The service was stopped and accepts no more messages."""


class AuthenticationError(MQTTServiceError):
    """The broker refused the configured credentials; reconnecting stopped."""


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class MQTTMessage:
    """An inbound message as handlers receive it (no paho types leak out)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    # How many older messages on this topic this one replaced while they waited (coalescing).
    superseded: int = 0

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (invalid bytes replaced)."""
        return self.payload.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The payload parsed as JSON (raises ``ValueError`` when it is not)."""
        return json.loads(self.payload)


Handler = Callable[[MQTTMessage], None]


@dataclass(frozen=True, eq=False, slots=True)
class Subscription:
    """One handler on one filter. Identity, not value, tells two apart."""

    topic_filter: str
    handler: Handler
    qos: int
    no_local: bool
    coalesce: bool = False


@dataclass(slots=True)
class _InboundKind:
    """Inbound counters of one subscription filter (get_stats()["inbound"])."""

    coalesce: bool
    received: int = 0
    superseded: int = 0
    handled: int = 0


@dataclass(frozen=True, slots=True)
class _Route:
    """What a topic matches locally: its handlers, whether it coalesces, its counters."""

    subs: tuple[Subscription, ...]
    coalescible: bool
    kinds: tuple[_InboundKind, ...]


_ACCEPTED, _PERSISTED, _ACKED, _DROPPED = 0, 1, 2, -1


@dataclass(slots=True)
class _Staged:
    """A message staged in a session: its outbox id once inserted (before commit)."""

    handle: PublishHandle
    row_id: int | None = None


class OutboxBatch:
    """Messages to send once, and only if, a transaction on a Core connection commits.

    :meth:`AsyncMQTTService.stage` does this for an ORM session, through its commit events;
    the hottest write (a kiosk's request) runs on a bare connection instead, so its caller
    says when: :meth:`write` (or :meth:`insert_statement` and :meth:`written`) inside the
    transaction, then :meth:`committed` after COMMIT or :meth:`discarded` after a rollback.
    """

    __slots__ = ("_ids", "_service", "handles")

    def __init__(self, service: AsyncMQTTService, handles: list[PublishHandle]) -> None:
        self._service = service
        self.handles = handles
        self._ids: list[int] = []

    @property
    def durable(self) -> list[PublishHandle]:
        """The messages the outbox keeps (QoS 1 and 2), in order."""
        return [h for h in self.handles if h.qos > 0]

    @property
    def row_ids(self) -> list[int]:
        """The outbox ids of :attr:`durable`, in order, once written."""
        return list(self._ids)

    def write(self, conn: Connection) -> None:
        """Insert the outbox rows in ``conn``'s open transaction."""
        durable = self.durable
        self._ids = self._service._insert_rows(conn, durable) if durable else []

    def write_with(self, conn: Connection, change: Executable, params: dict[str, Any]) -> None:
        """PostgreSQL: ``change`` (a statement with bind parameters, ``params``: the INSERT of
        the row the messages announce) and the outbox rows as one statement,
        ``WITH change AS (…) INSERT INTO mqtt_outbox … RETURNING``. In autocommit that one
        statement is the transaction: one round trip where BEGIN, two INSERTs and COMMIT take
        four. Its SQL is compiled once per ``change`` and row count, and run through the
        driver (SQLAlchemy compiles a multi-row INSERT with a CTE anew on every call)."""
        durable = self.durable
        sql, literals = self._service._outbox_with_sql(conn, change, len(durable))
        args = {**literals, **params}
        now = utcnow()
        for i, h in enumerate(durable):
            args |= {
                f"outbox_topic_{i}": h.topic,
                f"outbox_payload_{i}": h.payload,
                f"outbox_qos_{i}": h.qos,
                f"outbox_retain_{i}": h.retain,
                f"outbox_at_{i}": now,
            }
        self.written(conn.exec_driver_sql(sql, args))

    def written(self, rows: Iterable[Any]) -> None:
        """The rows ``RETURNING id, topic, payload`` gave, matched to the messages by topic
        and payload (RETURNING promises no order; two identical messages are interchangeable)."""
        ids: dict[tuple[str, bytes], list[int]] = {}
        for row_id, topic, payload in rows:
            ids.setdefault((topic, bytes(payload)), []).append(row_id)
        try:
            self._ids = [ids[(h.topic, h.payload)].pop() for h in self.durable]
        except (KeyError, IndexError):
            raise MQTTServiceError("the outbox rows written do not match the messages") from None

    def committed(self) -> None:
        """The transaction committed: send the messages."""
        ids = iter(self._ids)
        self._service._committed([(h, next(ids) if h.qos > 0 else None) for h in self.handles])

    def discarded(self) -> None:
        """The transaction rolled back: nothing is sent (waits on the handles answer False)."""
        self._service._discarded(self.handles)


class PublishHandle:
    """What ``publish_async`` returns: lets a caller (never the UI thread) wait for durability."""

    __slots__ = (
        "_service",
        "accepted_at",
        "payload",
        "qos",
        "retain",
        "row_id",
        "seq",
        "state",
        "topic",
    )

    def __init__(
        self,
        service: AsyncMQTTService,
        seq: int,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        row_id: int | None = None,
    ) -> None:
        self._service = service
        self.seq = seq
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.row_id = row_id
        self.state = _ACCEPTED if row_id is None else _PERSISTED
        self.accepted_at = time.perf_counter()

    @property
    def persisted(self) -> bool:
        """True once the message is in the outbox (QoS >= 1) and will survive a crash."""
        return self.state in (_PERSISTED, _ACKED) and self.qos > 0

    @property
    def acknowledged(self) -> bool:
        """True once the broker acknowledged it (QoS 0: once written to the socket)."""
        return self.state == _ACKED

    @property
    def dropped(self) -> bool:
        """True when the backlog policy dropped this message."""
        return self.state == _DROPPED

    def wait_persisted(self, timeout: float | None = None) -> bool:
        """Wait until the message is durable. QoS 0 messages are never durable: returns False."""
        if self.qos == 0:
            return False
        return self._service._wait(lambda: self.state != _ACCEPTED, timeout) and self.state in (
            _PERSISTED,
            _ACKED,
        )

    def wait_acknowledged(self, timeout: float | None = None) -> bool:
        """Wait until the broker acknowledged the message; False on timeout or drop."""
        return self._service._wait(lambda: self.state in (_ACKED, _DROPPED), timeout) and (
            self.state == _ACKED
        )

    def __repr__(self) -> str:
        return f"PublishHandle(seq={self.seq}, topic={self.topic!r}, qos={self.qos}, state={self.state})"


@dataclass(slots=True)
class _Stats:
    messages_received: int = 0
    messages_published: int = 0
    publish_errors: int = 0
    dropped_messages: int = 0
    coalesced_messages: int = 0
    dropped_inbound: int = 0  # no longer happens: kept so dashboards reading it see 0
    inbound_superseded: int = 0
    inbound_pauses: int = 0
    handler_errors: int = 0
    persist_errors: int = 0
    connects: int = 0
    last_error: str | None = None
    persist_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


# --------------------------------------------------------------------------- payloads


# One encoder for every call: json.dumps with options builds a new encoder each time.
_JSON: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sender_of(topic: str) -> Any:
    """Whose message this is, for the inbound queue's order: a desk (any of its topics, the
    legacy status topic too), else the topic without its last level."""
    located = parse_faculty_topic(topic)
    return ("desk", located[0]) if located is not None else parent_level(topic)


def encode_payload(data: Any) -> bytes:
    """``dict``/``list`` -> compact JSON, ``str`` -> UTF-8, ``bytes`` as they are."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError as err:
            raise PublishValidationError(f"payload text is not valid Unicode: {err}") from err
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (dict, list)):
        try:
            return _JSON.encode(data).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as err:
            raise PublishValidationError(f"payload cannot be serialised as JSON: {err}") from err
    raise PublishValidationError(
        f"payload must be dict, list, str or bytes, not {type(data).__name__}"
    )


def validate_publish_topic(topic: Any) -> str:
    """Raise :class:`PublishValidationError` unless ``topic`` is a valid publish topic [MQTT-3.3.2-2]."""
    if not isinstance(topic, str) or not topic:
        raise PublishValidationError("topic must be a non-empty string")
    if "+" in topic or "#" in topic:
        raise PublishValidationError(f"wildcards are not allowed in a publish topic: {topic!r}")
    if "\0" in topic:
        raise PublishValidationError("NUL characters are not allowed in a topic [MQTT-4.7.3-2]")
    if topic.startswith("$"):
        raise PublishValidationError(
            f"topics starting with $ are reserved for the broker: {topic!r}"
        )
    if len(topic) > 16383 and len(topic.encode("utf-8", "surrogatepass")) > 65535:
        raise PublishValidationError("topic is longer than 65535 bytes [MQTT-4.7.3-3]")
    return topic


def validate_topic_filter(topic_filter: Any) -> str:
    """Raise :class:`PublishValidationError` unless ``topic_filter`` is a valid subscription filter."""
    if not isinstance(topic_filter, str) or not topic_filter or "\0" in topic_filter:
        raise PublishValidationError("topic filter must be a non-empty string without NUL")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise PublishValidationError(f"'#' must be a whole last level: {topic_filter!r}")
        if "+" in level and level != "+":
            raise PublishValidationError(f"'+' must be a whole level: {topic_filter!r}")
    return topic_filter


def filter_covers(outer: str, inner: str) -> bool:
    """True when every topic matching ``inner`` also matches ``outer``."""
    outer_levels, inner_levels = outer.split("/"), inner.split("/")
    for i, level in enumerate(outer_levels):
        if level == "#":
            return True
        if i >= len(inner_levels):
            return False
        other = inner_levels[i]
        if level == "+":
            if other == "#":
                return False
            continue
        if level != other:
            return False
    return len(outer_levels) == len(inner_levels)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` matches ``topic_filter`` (MQTT wildcard rules)."""
    return bool(paho.topic_matches_sub(topic_filter, topic))


def apply_credentials(client: paho.Client, s: Settings) -> None:
    """Username/password and TLS from the settings (the password is never logged)."""
    if s.mqtt_username:
        client.username_pw_set(
            s.mqtt_username, s.mqtt_password.get_secret_value() if s.mqtt_password else None
        )
    if s.mqtt_tls_ca_certs is not None:
        client.tls_set(
            ca_certs=str(s.mqtt_tls_ca_certs),
            certfile=str(s.mqtt_tls_certfile) if s.mqtt_tls_certfile else None,
            keyfile=str(s.mqtt_tls_keyfile) if s.mqtt_tls_keyfile else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )


class _ReadBufferedSocket:
    """paho's socket with a read buffer: one ``recv`` system call per 64 KiB, not ~4 per packet.

    paho reads a packet as ``recv(1)`` (type), ``recv(1)`` per length byte and
    ``recv(n)`` (body). Each call releases CPython's interpreter lock, and getting it
    back from the busy dispatch thread can take a switch interval (5 ms): the network
    thread fell to about 1,300 messages a second in a 10,000-desk burst. paho's reads
    are served from this buffer instead; everything else goes to the real socket.
    """

    __slots__ = ("_buf", "_pos", "_sock", "more")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self.more = False  # the last refill filled the buffer: the kernel likely holds more

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes, from the buffer, refilled by one real ``recv`` when empty."""
        if self._pos >= len(self._buf):
            data = self._sock.recv(_READ_BUFFER_BYTES)  # BlockingIOError etc. reach paho as before
            if not data:
                return b""
            self._buf, self._pos = data, 0
            self.more = len(data) == _READ_BUFFER_BYTES
        start = self._pos
        self._pos = min(len(self._buf), start + bufsize)
        return self._buf[start : self._pos]

    @property
    def buffered(self) -> int:
        """Bytes read from the kernel and not yet given to paho."""
        return len(self._buf) - self._pos

    def pending(self) -> int:
        """Bytes readable without waiting for the socket (buffer, plus TLS's own buffer)."""
        inner = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        return self.buffered + inner

    def fileno(self) -> int:
        """The real socket's descriptor (for select)."""
        return int(self._sock.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


# --------------------------------------------------------------------------- the service


class AsyncMQTTService:
    """Owns the one MQTT connection of the central system. See the module docstring."""

    def __init__(self, settings: Settings | None = None, engine: Engine | None = None) -> None:
        self.settings = settings or get_settings()
        self._engine = engine
        self.client_id = self.settings.mqtt_client_id
        self.status_topic = central_status_topic(self.client_id)

        self._seq = itertools.count(1)
        # The SQL of OutboxBatch.write_with, by (statement, row count, dialect).
        self._with_sql: dict[tuple[int, int, str], tuple[Executable, str, dict[str, Any]]] = {}
        self._last_seq = 0
        # A message's way: _incoming -> _persisting (the writer's batch) -> _ready ->
        # _relaying (being handed to paho) -> _inflight -> acknowledged. Each step adds it to
        # the next place before removing it from the last, and queue_size reads the places in
        # this order, so it never misses a message that is on its way.
        self._incoming: deque[PublishHandle] = deque()
        self._persisting: list[PublishHandle] = []
        self._ready: deque[PublishHandle] = deque()
        self._relaying = 0
        self._requeues = 0  # odd while the network thread moves a message back to _ready
        self._ready_lock = threading.Lock()
        self._latest_retained: dict[str, PublishHandle] = {}
        self._to_delete: deque[int] = deque()
        self._inflight: dict[int, PublishHandle] = {}
        self._wait_cond = threading.Condition()

        self._subs_lock = threading.Lock()
        self._subs: dict[str, list[Subscription]] = {}
        self._subs_dirty = threading.Event()
        self._echo_risk = False
        self._acked_since_notify = False
        self._broker_subs: dict[str, tuple[int, bool]] = {}
        self._echo: dict[tuple[str, int], list[float]] = {}
        self._echo_lock = threading.Lock()
        self._inbound: InboundQueue[MQTTMessage] = InboundQueue(
            self.settings.mqtt_inbound_max_pending,
            self.settings.mqtt_inbound_max_bytes,
            sender_of,
        )
        self._routes: dict[str, _Route] = {}
        self._kinds: dict[str, _InboundKind] = {}
        self._paused_since: float | None = None
        self._dispatch_thread: threading.Thread | None = None
        self._after_batch: list[Callable[[], None]] = []
        self._dispatch_event = threading.Event()
        self._inbound_new = False  # network thread: queued since the dispatch thread was woken
        self._state_listeners: list[Callable[[str], None]] = []

        self._stats = _Stats()
        self._writer_event = threading.Event()
        self._stopping = threading.Event()
        self._stopped = False
        self._started = False
        self._start_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

        self._client: paho.Client | None = None
        self._protocol: MQTTProtocolVersion | None = None
        self._connected = False
        self._state = "stopped"
        self._auth_failed = False
        self._attempt = 0
        self._session_connects = 0
        self._connected_event = threading.Event()

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Start the writer, network and dispatch threads. Returns at once; connecting is asynchronous."""
        with self._start_lock:
            if self._started:
                return
            if self._stopped:
                raise ServiceStoppedError("a stopped AsyncMQTTService cannot be restarted")
            if self._engine is None:
                from ..db import get_engine

                self._engine = get_engine()
            self._started = True
            self._set_state("connecting")
            self._recover_outbox()
            for name, target in (
                ("mqtt-writer", self._writer_loop),
                ("mqtt-network", self._network_loop),
                ("mqtt-dispatch", self._dispatch_loop),
            ):
                thread = threading.Thread(target=target, name=name, daemon=True)
                if name == "mqtt-dispatch":
                    self._dispatch_thread = thread
                thread.start()
                self._threads.append(thread)
            logger.info(
                "MQTT service started: broker %s:%s, client id %s, protocol %s",
                self.settings.mqtt_host,
                self.settings.mqtt_port,
                self.client_id,
                self.settings.mqtt_protocol,
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Persist what was accepted, wait up to ``timeout`` s for acknowledgements, disconnect cleanly."""
        with self._start_lock:
            if self._stopped:
                return
            self._stopped = True
            if not self._started:
                return
        deadline = time.monotonic() + timeout
        self._wait(
            lambda: not self._incoming and not self._persisting,
            max(0.0, deadline - time.monotonic()),
        )
        if self._connected:
            self._wait(lambda: self.queue_size == 0, max(0.0, deadline - time.monotonic()))
        self._stopping.set()
        self._writer_event.set()
        self._dispatch_event.set()
        self._wake_network()
        for thread in self._threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic() + 2.0))
        self._set_state("stopped")
        with self._wait_cond:
            self._wait_cond.notify_all()
        logger.info("MQTT service stopped; %d messages remain in the outbox", self.queue_size)

    def publish_async(
        self, topic: str, data: Any, qos: int = 1, retain: bool = False
    ) -> PublishHandle:
        """Accept a message for delivery and return at once. Raises on bad input; queues nothing then."""
        if self._stopped:
            raise ServiceStoppedError("the MQTT service is stopped")
        handle = self._unsent(topic, data, qos, retain)
        handle.seq = self._last_seq = next(self._seq)
        self._incoming.append(handle)
        if not self._writer_event.is_set():
            self._writer_event.set()
        return handle

    def stage(
        self, session: Session, topic: str, data: Any, qos: int = 1, retain: bool = False
    ) -> PublishHandle:
        """Add a message to ``session``'s transaction: it is sent only if, and after, the session commits."""
        handle = self._unsent(topic, data, qos, retain)
        staged: list[_Staged] | None = session.info.get("mqtt_staged")
        if staged is None:
            staged = []
            session.info["mqtt_staged"] = staged
        if not session.info.get("mqtt_listening"):
            # Listeners stay for the session's life: removing them from inside after_commit
            # mutates the deque SQLAlchemy is iterating ("deque mutated during iteration").
            session.info["mqtt_listening"] = True
            sa_event.listen(session, "before_commit", self._before_commit)
            sa_event.listen(session, "after_commit", self._after_commit)
            sa_event.listen(session, "after_rollback", self._after_rollback)
        staged.append(_Staged(handle))
        return handle

    def batch(self, messages: Iterable[tuple[str, Any, int, bool]]) -> OutboxBatch:
        """Messages ``(topic, data, qos, retain)`` for a transaction on a Core connection, as
        :meth:`stage` does for a session's: see :class:`OutboxBatch`. Raises on bad input."""
        return OutboxBatch(self, [self._unsent(*message) for message in messages])

    def _unsent(self, topic: str, data: Any, qos: int, retain: bool) -> PublishHandle:
        """A checked and encoded message that no queue holds yet (published, staged, or in a
        batch); raises on bad input."""
        validate_publish_topic(topic)
        if qos not in (0, 1, 2):
            raise PublishValidationError(f"qos must be 0, 1 or 2, not {qos!r}")
        payload = encode_payload(data)
        if len(payload) > self.settings.mqtt_max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload is {len(payload)} bytes; the maximum is {self.settings.mqtt_max_payload_bytes}"
            )
        return PublishHandle(self, 0, topic, payload, qos, bool(retain))

    def subscribe(
        self,
        topic_filter: str,
        handler: Handler,
        qos: int = 1,
        *,
        no_local: bool = False,
        coalesce: bool = False,
    ) -> Callable[[], None]:
        """Call ``handler`` for every message matching ``topic_filter``. Returns the unsubscriber.

        ``no_local`` skips the service's own publications: MQTT 5 No Local on the
        broker; on MQTT 3.1.1 the service drops echoes of what it published itself.
        ``coalesce`` says that a newer message on a topic makes an older one that is
        still waiting for the handlers worthless (state reports): under a burst only
        the newest is handled (see :data:`INBOUND_POLICY`). A topic coalesces only
        when every subscription it matches allows it.
        """
        validate_topic_filter(topic_filter)
        if qos not in (0, 1, 2):
            raise PublishValidationError(f"qos must be 0, 1 or 2, not {qos!r}")
        if not callable(handler):
            raise PublishValidationError("handler must be callable")
        sub = Subscription(topic_filter, handler, qos, no_local, bool(coalesce))
        with self._subs_lock:
            self._subs.setdefault(topic_filter, []).append(sub)
            self._routes = {}
        self._subs_dirty.set()
        self._wake_network()

        def unsubscribe() -> None:
            with self._subs_lock:
                subs = self._subs.get(topic_filter)
                if not subs or sub not in subs:
                    return
                subs.remove(sub)
                if not subs:
                    del self._subs[topic_filter]
                self._routes = {}
            self._subs_dirty.set()
            self._wake_network()

        return unsubscribe

    @property
    def _has_local_echo_risk(self) -> bool:
        """True when some no_local handler could see our own publications (3.1.1 or a covering filter)."""
        # A snapshot: subscribe() on another thread may change the dict while this runs
        # on the network thread (it did: "dictionary changed size during iteration").
        with self._subs_lock:
            local = [(g, any(sub.no_local for sub in subs)) for g, subs in self._subs.items()]
        if self._protocol != MQTTProtocolVersion.MQTTv5:
            return any(no_local for _g, no_local in local)
        return any(
            not n
            for f, (_q, n) in list(self._broker_subs.items())
            if any(no_local for g, no_local in local if filter_covers(f, g))
        )

    @property
    def is_connected(self) -> bool:
        """True while a CONNACK-accepted connection is open."""
        return self._connected

    @property
    def state(self) -> str:
        """One of ``stopped``, ``connecting``, ``connected``, ``disconnected``, ``auth_failed``."""
        return self._state

    @property
    def queue_size(self) -> int:
        """Messages accepted and not yet acknowledged by the broker (never fewer; see __init__)."""
        for _ in range(100):  # bounded: a re-read is needed only while a message moves back
            requeues = self._requeues
            size = (
                len(self._incoming)
                + len(self._persisting)
                + len(self._ready)
                + self._relaying
                + len(self._inflight)
            )
            if requeues % 2 == 0 and requeues == self._requeues:
                return size
        return size + 1

    @property
    def protocol(self) -> str | None:
        """The negotiated MQTT protocol ("5" or "3.1.1"), or None before the first connect."""
        if self._protocol is None:
            return None
        return "5" if self._protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"

    @property
    def on_dispatch_thread(self) -> bool:
        """True when called from a subscription handler (the dispatch thread)."""
        return threading.current_thread() is self._dispatch_thread

    def call_after_batch(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after the handlers' current batch, or now when not called from a handler.

        Handlers run on the dispatch thread in batches of up to ``_DISPATCH_BATCH``
        messages. A handler that would write to the database for each message can
        instead record the change and ask to be called back once per batch: under a
        burst, hundreds of changes go in one transaction; when messages trickle in, a
        batch is one message and nothing waits. Callbacks run in the order given;
        one that raises is logged and the others still run.
        """
        if not self.on_dispatch_thread:
            callback()
            return
        self._after_batch.append(callback)

    @property
    def inbound_waiting(self) -> int:
        """Received messages still waiting for the handlers (a handler may wait for 0 to flush)."""
        return len(self._inbound)

    def _run_after_batch(self) -> None:
        # One pass: a callback that asks again (call_after_batch from inside) runs after the next batch.
        callbacks, self._after_batch = self._after_batch, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                self._stats.handler_errors += 1
                logger.exception("after-batch callback %r failed", callback)

    def add_state_listener(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(state)`` (on a service thread) on every state change. Returns the remover."""
        self._state_listeners.append(listener)
        return lambda: self._state_listeners.remove(listener)

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected (tests, CLI); never call it on the UI thread."""
        return self._connected_event.wait(timeout)

    def get_stats(self) -> dict[str, Any]:
        """Counters and state for dashboards, the admin screen and ``consultease doctor``."""
        lat = sorted(self._stats.persist_latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None

        return {
            "connected": self._connected,
            "state": self._state,
            "protocol": self.protocol,
            "client_id": self.client_id,
            "broker": f"{self.settings.mqtt_host}:{self.settings.mqtt_port}",
            "messages_queued": self._last_seq,
            "messages_published": self._stats.messages_published,
            "messages_received": self._stats.messages_received,
            "publish_errors": self._stats.publish_errors,
            "dropped_messages": self._stats.dropped_messages,
            "coalesced_messages": self._stats.coalesced_messages,
            "dropped_inbound": self._stats.dropped_inbound,
            "inbound_pending": len(self._inbound),
            "inbound_pending_bytes": self._inbound.bytes,
            "inbound_superseded": self._stats.inbound_superseded,
            "inbound_paused": self._inbound.paused,
            "inbound_pauses": self._stats.inbound_pauses,
            "inbound": {
                f: {
                    "coalesce": k.coalesce,
                    "received": k.received,
                    "superseded": k.superseded,
                    "handled": k.handled,
                }
                for f, k in list(self._kinds.items())
            },
            "handler_errors": self._stats.handler_errors,
            "persist_errors": self._stats.persist_errors,
            "queue_size": self.queue_size,
            "inflight": len(self._inflight),
            "reconnects": max(0, self._stats.connects - 1),
            "last_error": self._stats.last_error,
            "persist_ms_p50": pct(0.50),
            "persist_ms_p99": pct(0.99),
            "subscriptions": sum(len(v) for v in self._subs.values()),
            "backlog_policy": BACKLOG_POLICY,
            "inbound_policy": INBOUND_POLICY,
        }

    # ------------------------------------------------------------------ transactional staging

    def _before_commit(self, session: Session) -> None:
        # The outbox rows go in through Core, in the session's transaction (so they commit
        # or roll back with the caller's change): no ORM unit of work per message.
        staged: list[_Staged] | None = session.info.get("mqtt_staged")
        if not staged:
            return
        todo = [s for s in staged if s.row_id is None and s.handle.qos > 0]
        if todo:
            ids = self._insert_rows(session.connection(), [s.handle for s in todo])
            for item, row_id in zip(todo, ids, strict=True):
                item.row_id = row_id

    def _after_commit(self, session: Session) -> None:
        staged: list[_Staged] | None = session.info.pop("mqtt_staged", None)
        if staged:
            self._committed([(item.handle, item.row_id) for item in staged])

    def _after_rollback(self, session: Session) -> None:
        # The change was not committed, so its announcements are never sent: waits return False.
        staged: list[_Staged] | None = session.info.pop("mqtt_staged", None)
        if staged:
            self._discarded([item.handle for item in staged])

    def _committed(self, rows: list[tuple[PublishHandle, int | None]]) -> None:
        """Messages whose transaction committed, with their outbox ids (None: QoS 0), to send."""
        for handle, row_id in rows:
            handle.seq = next(self._seq)
            self._last_seq = handle.seq
            if row_id is None:
                self._incoming.append(handle)  # QoS 0: nothing durable, through the writer
                continue
            # Already durable (committed with the caller's change): straight to the sender.
            handle.row_id = row_id
            handle.state = _PERSISTED
            self._enqueue_ready(handle)
        self._writer_event.set()
        self._wake_network()

    def _discarded(self, handles: list[PublishHandle]) -> None:
        for handle in handles:
            handle.state = _DROPPED
        self._notify_waiters()

    def _wait(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._wait_cond:
            while not predicate():
                if self._stopping.is_set() and self._state == "stopped":
                    return predicate()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._wait_cond.wait(0.5 if remaining is None else min(remaining, 0.5))
            return True

    def _notify_waiters(self) -> None:
        with self._wait_cond:
            self._wait_cond.notify_all()

    # ------------------------------------------------------------------ writer thread

    def _recover_outbox(self) -> None:
        """Queue every unacknowledged row left by an earlier run, oldest first."""
        assert self._engine is not None
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa_select(
                    _OUTBOX.c.id,
                    _OUTBOX.c.topic,
                    _OUTBOX.c.payload,
                    _OUTBOX.c.qos,
                    _OUTBOX.c.retain,
                ).order_by(_OUTBOX.c.id)
            ).all()
        if rows:
            logger.info("recovering %d unacknowledged messages from the outbox", len(rows))
        for row in rows:
            handle = PublishHandle(
                self, 0, row.topic, bytes(row.payload), row.qos, row.retain, row.id
            )
            self._enqueue_ready(handle)

    def _writer_loop(self) -> None:
        """Group commit: persist what was accepted since the last commit, in one transaction.

        Deletes of acknowledged rows ride along with the next insert, or are flushed on
        their own after ``_DELETE_FLUSH_S`` without fsync: losing a delete in a power cut
        only means one duplicate delivery after restart (at-least-once), never a loss.
        """
        pending = self._persisting
        deletes: list[int] = []
        deletes_since = 0.0
        failures = 0
        while True:
            wait = _DELETE_FLUSH_S if deletes else _STATE_POLL_S
            self._writer_event.wait(wait)
            self._writer_event.clear()
            while self._incoming:
                pending.append(self._incoming[0])  # in _persisting before it leaves _incoming
                self._incoming.popleft()
            if self._to_delete and not deletes:
                deletes_since = time.monotonic()
            while self._to_delete:
                deletes.append(self._to_delete.popleft())
            stopping = self._stopping.is_set()
            new_rows = [h for h in pending if h.qos > 0 and h.row_id is None]
            flush_deletes = bool(deletes) and (
                bool(new_rows)
                or stopping
                or len(deletes) >= 500
                or time.monotonic() - deletes_since >= _DELETE_FLUSH_S
            )
            if new_rows or flush_deletes:
                try:
                    self._persist(new_rows, deletes if flush_deletes else [])
                    failures = 0
                except Exception as err:
                    failures += 1
                    self._stats.persist_errors += 1
                    self._stats.last_error = f"outbox write failed: {err}"
                    logger.exception("outbox write failed (attempt %d); retrying", failures)
                    self._enforce_pending_bound(pending)
                    if self._stopping.wait(min(5.0, 0.1 * 2**failures)) and failures > 3:
                        break
                    continue
                if flush_deletes:
                    deletes = []
            if pending:
                now = time.perf_counter()
                latencies = self._stats.persist_latencies
                for handle in new_rows:
                    latencies.append(now - handle.accepted_at)
                for handle in pending:
                    self._enqueue_ready(handle)
                pending.clear()  # only now: every one of them is in _ready
                self._notify_waiters()
                self._wake_network()
            if stopping and not self._incoming and not self._to_delete and not deletes:
                break

    def _persist(self, new_rows: list[PublishHandle], deletes: list[int]) -> None:
        assert self._engine is not None
        relaxed = not new_rows and self._engine.dialect.name == "sqlite"
        with self._engine.connect() as conn:
            if relaxed:
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                conn.commit()
            try:
                ids = self._insert_rows(conn, new_rows) if new_rows else []
                for i in range(0, len(deletes), 500):
                    conn.execute(delete(_OUTBOX).where(_OUTBOX.c.id.in_(deletes[i : i + 500])))
                conn.commit()
            finally:
                if relaxed:
                    conn.exec_driver_sql("PRAGMA synchronous=FULL")
                    conn.commit()
        for handle, row_id in zip(new_rows, ids, strict=True):
            handle.row_id = row_id
            if handle.state == _ACCEPTED:
                handle.state = _PERSISTED

    def _outbox_with_sql(
        self, conn: Connection, change: Executable, count: int
    ) -> tuple[str, dict[str, Any]]:
        """The driver SQL of ``WITH change AS (change) INSERT INTO mqtt_outbox`` ``count`` rows
        ``RETURNING id, topic, payload``, compiled once (see :meth:`OutboxBatch.write_with`),
        and the values of the parameters ``change`` holds itself (its literals)."""
        key = (id(change), count, conn.dialect.name)
        cached = self._with_sql.get(key)
        if cached is not None and cached[0] is change:
            return cached[1], cached[2]
        rows = [
            {
                "topic": bindparam(f"outbox_topic_{i}", type_=_OUTBOX.c.topic.type),
                "payload": bindparam(f"outbox_payload_{i}", type_=_OUTBOX.c.payload.type),
                "qos": bindparam(f"outbox_qos_{i}", type_=_OUTBOX.c.qos.type),
                "retain": bindparam(f"outbox_retain_{i}", type_=_OUTBOX.c.retain.type),
                "created_at": bindparam(f"outbox_at_{i}", type_=_OUTBOX.c.created_at.type),
            }
            for i in range(count)
        ]
        statement = (
            insert(_OUTBOX)
            .values(rows)
            .returning(_OUTBOX.c.id, _OUTBOX.c.topic, _OUTBOX.c.payload)
            .add_cte(cast(Any, change).cte("change"))
        )
        compiled = statement.compile(dialect=conn.dialect)
        literals = {k: v for k, v in compiled.params.items() if v is not None}
        self._with_sql[key] = (change, str(compiled), literals)
        return str(compiled), literals

    def _insert_rows(self, conn: Connection, rows: list[PublishHandle]) -> list[int]:
        """Insert outbox rows in ``conn``'s transaction; their ids in order."""
        if conn.dialect.name == "sqlite":
            return self._insert_sqlite(conn, rows)
        result = conn.execute(
            insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True),
            [
                {"topic": h.topic, "payload": h.payload, "qos": h.qos, "retain": h.retain}
                for h in rows
            ],
        )
        return list(result.scalars().all())

    @staticmethod
    def _insert_sqlite(conn: Connection, rows: list[PublishHandle]) -> list[int]:
        """Bulk insert on SQLite through the driver: one multi-row INSERT per chunk of rows.

        One statement, not an ``executemany`` of one per row and a ``last_insert_rowid()``
        query: each statement gives up the interpreter lock while SQLite runs it and waits
        to get it back, and a transaction that announces a change holds the write lock
        meanwhile (a kiosk's request stages four messages: issue 9, "Numbers"). Ids are
        contiguous: ``id`` is the rowid (no AUTOINCREMENT) and this transaction holds
        SQLite's write lock from its first insert, so each new rowid is max + 1; the
        statement's ``lastrowid`` is its last row's.
        """
        # The text format SQLAlchemy's SQLite DATETIME uses, naive UTC (see models.base).
        stamp = utcnow().replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        ids: list[int] = []
        for start in range(0, len(rows), _SQLITE_ROWS_PER_INSERT):
            chunk = rows[start : start + _SQLITE_ROWS_PER_INSERT]
            params: list[object] = []
            for h in chunk:
                params += (h.topic, h.payload, h.qos, int(h.retain), stamp)
            # Placeholders only: every value is a bound parameter.
            values = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
            result = conn.exec_driver_sql(
                f"INSERT INTO mqtt_outbox (topic, payload, qos, retain, created_at) VALUES {values}",  # noqa: S608
                tuple(params),
            )
            last = int(result.lastrowid)
            ids += range(last - len(chunk) + 1, last + 1)
        return ids

    def _enforce_pending_bound(self, pending: list[PublishHandle]) -> None:
        over = (
            len(pending)
            + self._live_ready_count()
            + len(self._inflight)
            - self.settings.mqtt_max_backlog
        )
        if over > 0:
            dropped = pending[:over]
            del pending[:over]
            for handle in dropped:
                handle.state = _DROPPED
            self._count_drop(len(dropped), "the outbox cannot be written")

    def _count_drop(self, count: int, why: str) -> None:
        before = self._stats.dropped_messages
        self._stats.dropped_messages += count
        if before // 1000 != self._stats.dropped_messages // 1000 or before == 0:
            logger.warning(
                "MQTT backlog over %d messages (%s): dropped %d oldest, %d dropped in total",
                self.settings.mqtt_max_backlog,
                why,
                count,
                self._stats.dropped_messages,
            )

    # ------------------------------------------------------------------ ready queue

    def _live_ready_count(self) -> int:
        return len(self._ready)

    def _enqueue_ready(self, handle: PublishHandle) -> None:
        """Append to the send queue, coalescing retained topics and enforcing the bound."""
        with self._ready_lock:
            if handle.retain and handle.qos > 0:
                older = self._latest_retained.get(handle.topic)
                if older is not None and older.state in (_ACCEPTED, _PERSISTED):
                    try:
                        self._ready.remove(older)
                    except ValueError:
                        older = None
                    if older is not None:
                        older.state = _DROPPED
                        if older.row_id is not None:
                            self._to_delete.append(older.row_id)
                        self._stats.coalesced_messages += 1
                self._latest_retained[handle.topic] = handle
            self._ready.append(handle)
            over = len(self._ready) + len(self._inflight) - self.settings.mqtt_max_backlog
            dropped = 0
            while over > 0 and self._ready:
                victim = self._ready.popleft()
                if self._latest_retained.get(victim.topic) is victim:
                    del self._latest_retained[victim.topic]
                victim.state = _DROPPED
                if victim.row_id is not None:
                    self._to_delete.append(victim.row_id)
                over -= 1
                dropped += 1
        if dropped:
            self._count_drop(dropped, "broker unreachable or too slow")
            self._writer_event.set()

    def _pop_ready(self) -> PublishHandle | None:
        with self._ready_lock:
            if not self._ready:
                return None
            self._relaying = 1  # counted before it leaves _ready; _relay clears it
            handle = self._ready.popleft()
            if handle.retain and self._latest_retained.get(handle.topic) is handle:
                del self._latest_retained[handle.topic]
            return handle

    # ------------------------------------------------------------------ network thread

    def _wake_network(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:
                logger.exception("MQTT state listener failed")

    def _protocol_candidates(self) -> list[MQTTProtocolVersion]:
        if self.settings.mqtt_protocol == "5":
            return [MQTTProtocolVersion.MQTTv5]
        if self.settings.mqtt_protocol == "3.1.1":
            return [MQTTProtocolVersion.MQTTv311]
        return [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311]

    def _make_client(self, protocol: MQTTProtocolVersion) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            # Clean sessions, always: paho itself re-sends unacknowledged QoS 1/2
            # messages on reconnect, and a clean session means a broker that lost its
            # state (restart without persistence) can never swallow a PUBREL.
            clean_session=True if protocol != MQTTProtocolVersion.MQTTv5 else None,
            reconnect_on_failure=False,
        )
        client.max_inflight_messages_set(s.mqtt_inflight_window)
        client.max_queued_messages_set(0)
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        apply_credentials(client, s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _backoff(self) -> bool:
        """Sleep a jittered exponential delay (aiomqtt's formula); False when stopping."""
        self._attempt += 1
        delay = min(
            self.settings.mqtt_reconnect_max_delay,
            0.1 + random.uniform(0, 1.5 ** min(10, self._attempt)),
        )
        logger.debug("reconnecting in %.2f s (attempt %d)", delay, self._attempt)
        deadline = time.monotonic() + delay
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            select.select([self._wake_r], [], [], remaining)
            self._drain_wake()
        return False

    def _connect_once(self) -> bool:
        """One connection attempt (TCP/TLS + CONNECT). True when CONNECT was sent."""
        candidates = self._protocol_candidates()
        if self._protocol is None:
            protocol = candidates[self._attempt % len(candidates)]
        else:
            protocol = self._protocol
        if self._client is None or self._client.protocol != protocol:
            self._client = self._make_client(protocol)
            self._client.connect_timeout = _CONNECT_TIMEOUT_S
        client = self._client
        self._pending_protocol = protocol
        try:
            if self._session_connects == 0 and not getattr(client, "_host", ""):
                if protocol == MQTTProtocolVersion.MQTTv5:
                    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                    props.SessionExpiryInterval = 0
                    client.connect(
                        self.settings.mqtt_host,
                        self.settings.mqtt_port,
                        self.settings.mqtt_keepalive,
                        clean_start=True,
                        properties=props,
                    )
                else:
                    client.connect(
                        self.settings.mqtt_host,
                        self.settings.mqtt_port,
                        self.settings.mqtt_keepalive,
                    )
            else:
                client.reconnect()
            sock = client.socket()
            if isinstance(sock, socket.socket):
                # Small request packets must not wait for a delayed ACK (Nagle): ~40 ms on Linux.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if sock is not None and not isinstance(sock, _ReadBufferedSocket):
                client._sock = _ReadBufferedSocket(sock)  # see the class: paho reads through it
        except (OSError, ssl.SSLError, ValueError) as err:
            self._stats.last_error = (
                f"cannot reach broker {self.settings.mqtt_host}:{self.settings.mqtt_port}: {err}"
            )
            logger.warning("%s", self._stats.last_error)
            return False
        return True

    def _network_loop(self) -> None:
        while not self._stopping.is_set():
            if self._auth_failed:
                self._stopping.wait(_STATE_POLL_S)
                continue
            if not self._connect_once():
                self._set_state("disconnected")
                if not self._backoff():
                    break
                continue
            self._serve_connection()
            if self._stopping.is_set():
                break
            if self._auth_failed:
                continue
            if not self._backoff():
                break
        self._shutdown_connection()

    def _serve_connection(self) -> None:
        """Drive paho's external loop until the connection ends or the service stops."""
        client = self._client
        assert client is not None
        connack_deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        next_read = 0.0  # monotonic time before which the socket is not read (see _READ_TICK_S)
        while not self._stopping.is_set():
            sock = client.socket()
            if sock is None:
                return
            now = time.monotonic()
            if not self._connected and now > connack_deadline:
                self._stats.last_error = "no CONNACK from the broker"
                logger.warning("no CONNACK within %.0f s; reconnecting", _CONNECT_TIMEOUT_S)
                client.disconnect()
                self._on_link_down()
                return
            may_read = self._may_read()
            tick = max(0.0, next_read - now) if may_read else 0.0
            pending = (
                may_read
                and not tick
                and isinstance(sock, _ReadBufferedSocket)
                and sock.pending() > 0
            )
            wlist = [sock] if client.want_write() else []
            rlist = [sock, self._wake_r] if may_read and not tick else [self._wake_r]
            if pending:
                timeout = 0.0
            elif tick:
                timeout = tick
            else:
                timeout = _STATE_POLL_S
            try:
                readable, writable, _ = select.select(rlist, wlist, [], timeout)
            except (OSError, ValueError):
                readable, writable = ([sock] if may_read and not tick else []), []
            if self._wake_r in readable:
                self._drain_wake()
            if sock in readable or pending:
                client.loop_read()
                # paho handles one packet per loop_read; go on while it is already buffered.
                for _ in range(_PACKETS_PER_READ):
                    if not (
                        isinstance(sock, _ReadBufferedSocket)
                        and sock.buffered
                        and client.socket() is sock
                        and self._may_read()
                    ):
                        break
                    client.loop_read()
                if self._inbound_new:
                    self._inbound_new = False
                    self._dispatch_event.set()
                # A trickle: read again after the tick, with what arrived meanwhile. A burst: now.
                more = isinstance(sock, _ReadBufferedSocket) and (sock.more or sock.buffered > 0)
                next_read = 0.0 if more or not self._connected else time.monotonic() + _READ_TICK_S
                if self._acked_since_notify:
                    self._acked_since_notify = False
                    self._notify_waiters()  # once per read batch, not once per PUBACK
            if client.socket() is not None and (sock in writable or client.want_write()):
                client.loop_write()
            if client.socket() is None:
                return
            client.loop_misc()
            if self._connected:
                self._apply_control(client)
                self._relay(client)

    def _may_read(self) -> bool:
        """False while the inbound queue is full (back-pressure), except for a keepalive read.

        paho closes the connection when no packet was read for a keepalive period after
        its PINGREQ, so a pause longer than half the keepalive lets one read through.
        """
        if not self._inbound.full():
            self._paused_since = None
            return True
        now = time.monotonic()
        if self._paused_since is None:
            self._paused_since = now
            self._stats.inbound_pauses += 1
            logger.warning(
                "inbound queue full (%d messages, %d bytes): reading from the broker paused "
                "until the handlers catch up",
                len(self._inbound),
                self._inbound.bytes,
            )
            return False
        if now - self._paused_since >= self.settings.mqtt_keepalive / 2:
            self._paused_since = now
            return True
        return False

    def _relay(self, client: paho.Client) -> None:
        """Hand waiting messages to paho, keeping at most ``_RELAY_WINDOW`` unacknowledged."""
        while len(self._inflight) < _RELAY_WINDOW and self._connected:
            handle = self._pop_ready()
            if handle is None:
                return
            try:
                if not self._hand_to_paho(client, handle):
                    return
            finally:
                self._relaying = 0  # it is in _inflight, _ready again, or done

    def _hand_to_paho(self, client: paho.Client, handle: PublishHandle) -> bool:
        """Publish one message through paho; False when paho refused it (it is back in _ready)."""
        if handle.state == _DROPPED:
            return True
        info = client.publish(handle.topic, handle.payload, handle.qos, handle.retain)
        self._remember_echo(handle.topic, handle.payload)
        if handle.qos == 0:
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                handle.state = _ACKED
                self._stats.messages_published += 1
            else:
                handle.state = _DROPPED
                self._stats.dropped_messages += 1
            return True
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            # paho refused it outright (it queued nothing): put it back for the next connection.
            self._stats.publish_errors += 1
            self._stats.last_error = f"publish failed: {paho.error_string(info.rc)}"
            self._requeue(handle, lambda: setattr(self, "_relaying", 0))
            return False
        self._inflight[info.mid] = handle
        return True

    def _requeue(self, handle: PublishHandle, leave: Callable[[], object]) -> None:
        """Move ``handle`` back to the front of _ready, then ``leave`` where it was (network thread).

        A move backwards could slip between queue_size's reads; the odd counter makes it re-read.
        """
        self._requeues += 1
        with self._ready_lock:
            self._ready.appendleft(handle)
        leave()
        self._requeues += 1

    def _wanted_broker_subs(self) -> dict[str, tuple[int, bool]]:
        """The broker-level subscriptions: filters not covered by another one.

        Brokers deliver one copy per matching subscription, so overlapping filters
        (``a/1/b``, ``a/+/b``, ``a/#``) would deliver duplicates. Only the covering
        filters are subscribed; each message then arrives once and is dispatched
        locally to every matching handler. QoS is the highest wanted in the group;
        No Local only when every handler in the group asked for it.
        """
        with self._subs_lock:
            wanted = {
                f: (max(s.qos for s in subs), all(s.no_local for s in subs))
                for f, subs in self._subs.items()
            }
        cover: dict[str, tuple[int, bool]] = {}
        for f in wanted:
            if any(
                g != f and filter_covers(g, f) and not (filter_covers(f, g) and g > f)
                for g in wanted
            ):
                continue
            group = [wanted[g] for g in wanted if filter_covers(f, g)]
            cover[f] = (max(q for q, _ in group), all(n for _, n in group))
        return cover

    def _apply_control(self, client: paho.Client) -> None:
        if not self._subs_dirty.is_set():
            return
        self._subs_dirty.clear()
        wanted = self._wanted_broker_subs()
        gone = [f for f in self._broker_subs if f not in wanted]
        changed = [(f, q, n) for f, (q, n) in wanted.items() if self._broker_subs.get(f) != (q, n)]
        if gone:
            client.unsubscribe(gone)
        if changed:
            self._send_subscribe(client, changed)
        self._broker_subs = wanted
        self._echo_risk = self._has_local_echo_risk

    def _send_subscribe(
        self, client: paho.Client, filters: Iterable[tuple[str, int, bool]]
    ) -> None:
        items: list[tuple[str, Any]] = []
        for topic_filter, qos, no_local in filters:
            if self._protocol == MQTTProtocolVersion.MQTTv5:
                items.append((topic_filter, SubscribeOptions(qos=qos, noLocal=no_local)))
            else:
                items.append((topic_filter, qos))
        for i in range(0, len(items), 50):
            client.subscribe(items[i : i + 50])

    def _shutdown_connection(self) -> None:
        client = self._client
        if client is None:
            return
        if self._connected:
            # A clean DISCONNECT does not fire the will [MQTT-3.14.4-3]; say offline ourselves.
            info = client.publish(self.status_topic, b"offline", qos=1, retain=True)
            deadline = time.monotonic() + 1.0
            while not info.is_published() and time.monotonic() < deadline:
                sock = client.socket()
                if sock is None:
                    break
                wl = [sock] if client.want_write() else []
                r, _w, _ = select.select([sock], wl, [], 0.05)
                if r:
                    client.loop_read()
                if client.want_write():
                    client.loop_write()
            client.disconnect()
            try:
                client.loop_write()
            except Exception:
                logger.debug("final write failed", exc_info=True)
        self._connected = False
        self._connected_event.clear()
        if client.socket() is not None:
            client.disconnect()

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Any,
    ) -> None:
        if reason_code.is_failure:
            text = str(reason_code)
            self._stats.last_error = f"broker refused the connection: {text}"
            if reason_code.value in _AUTH_REASON_CODES:
                self._auth_failed = True
                logger.error(
                    "MQTT authentication failed (%s) for user %r; not retrying. Fix the credentials "
                    "and restart.",
                    text,
                    self.settings.mqtt_username,
                )
                self._set_state("auth_failed")
            else:
                logger.warning("%s", self._stats.last_error)
            return
        self._protocol = self._pending_protocol
        self._connected = True
        self._attempt = 0
        self._session_connects += 1
        self._stats.connects += 1
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        self._broker_subs = {}
        self._subs_dirty.set()
        self._apply_control(client)  # resubscribe everything on every CONNACK
        logger.info(
            "connected to MQTT broker %s:%s (MQTT %s, reconnects %d)",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            self.protocol,
            max(0, self._stats.connects - 1),
        )
        self._connected_event.set()
        self._set_state("connected")
        self._notify_waiters()

    def _on_link_down(self) -> None:
        was = self._connected
        self._connected = False
        self._connected_event.clear()
        if was:
            self._set_state("disconnected")
            self._notify_waiters()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any
    ) -> None:
        if self._connected and self._stopping.is_set():
            logger.info("disconnected from the MQTT broker")
        elif self._connected:
            logger.warning(
                "MQTT connection lost (%s); %d unacknowledged", reason_code, len(self._inflight)
            )
            self._stats.last_error = f"connection lost: {reason_code}"
        elif (
            self._protocol is None
            and not self._auth_failed
            and self.settings.mqtt_protocol == "auto"
        ):
            logger.info(
                "MQTT %s refused or closed; trying the next protocol version",
                self._pending_protocol,
            )
        self._on_link_down()

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, reason_code: ReasonCode, _props: Any
    ) -> None:
        handle = self._inflight.get(mid)
        if handle is None:
            return  # QoS 0 or our own status message
        if reason_code.is_failure and reason_code.value == _PUBCOMP_ID_NOT_FOUND:
            # The broker lost its QoS 2 state (restarted): the message may not have been delivered.
            self._requeue(handle, lambda: self._inflight.pop(mid, None))
            return
        if reason_code.is_failure:
            self._stats.publish_errors += 1
            self._stats.last_error = f"broker rejected a publish to {handle.topic}: {reason_code}"
            logger.error("%s; the message is dropped", self._stats.last_error)
            handle.state = _DROPPED
        else:
            handle.state = _ACKED
            self._stats.messages_published += 1
        del self._inflight[mid]  # after its state: queue_size and the handle never disagree
        if handle.row_id is not None:
            # No wake-up: the writer batches deletes on its own clock (_DELETE_FLUSH_S).
            self._to_delete.append(handle.row_id)
        self._acked_since_notify = True

    def _on_subscribe(
        self, _c: paho.Client, _u: Any, mid: int, reason_codes: list[ReasonCode], _p: Any
    ) -> None:
        for rc in reason_codes:
            if rc.is_failure:
                self._stats.last_error = f"subscription refused: {rc}"
                logger.error("broker refused a subscription (mid %d): %s", mid, rc)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        self._stats.messages_received += 1
        msg = MQTTMessage(message.topic, bytes(message.payload), message.qos, bool(message.retain))
        route = self._route(msg.topic)
        if not route.subs:
            return  # nobody listens any more (unsubscribed while the broker still sent it)
        superseded = self._inbound.put(msg, route.coalescible)
        for kind in route.kinds:
            kind.received += 1
            if superseded:
                kind.superseded += 1
        if superseded:
            self._stats.inbound_superseded += 1
        self._inbound_new = True  # the dispatch thread is woken once per read batch

    # ------------------------------------------------------------------ echo suppression (MQTT 3.1.1 No Local)

    def _remember_echo(self, topic: str, payload: bytes) -> None:
        if not self._echo_risk:
            return
        key = (topic, hash(payload))
        now = time.monotonic()
        with self._echo_lock:
            self._echo.setdefault(key, []).append(now)
            if len(self._echo) > 5000:
                cutoff = now - _ECHO_TTL_S
                for k in [k for k, v in self._echo.items() if v[-1] < cutoff]:
                    del self._echo[k]

    def _is_own_echo(self, message: MQTTMessage) -> bool:
        key = (message.topic, hash(message.payload))
        with self._echo_lock:
            times = self._echo.get(key)
            if not times:
                return False
            cutoff = time.monotonic() - _ECHO_TTL_S
            while times and times[0] < cutoff:
                times.pop(0)
            if not times:
                del self._echo[key]
                return False
            times.pop(0)
            return True

    # ------------------------------------------------------------------ dispatch thread

    def _handlers_for_locked(self, topic: str) -> list[Subscription]:
        """The subscriptions matching ``topic``, exact filters first (hold ``_subs_lock``)."""
        matched = list(self._subs.get(topic, ()))
        for topic_filter, subs in self._subs.items():
            if (
                topic_filter != topic
                and ("+" in topic_filter or "#" in topic_filter)
                and topic_matches(topic_filter, topic)
            ):
                matched.extend(subs)
        return matched

    def _route(self, topic: str) -> _Route:
        """The subscriptions ``topic`` matches, remembered until the subscriptions change."""
        routes = self._routes
        route = routes.get(topic)
        if route is not None:
            return route
        with self._subs_lock:
            routes = self._routes  # the current map: subscribe() replaces it under this lock
            subs = tuple(self._handlers_for_locked(topic))
            kinds = []
            for topic_filter in dict.fromkeys(s.topic_filter for s in subs):
                coalesce = all(s.coalesce for s in self._subs.get(topic_filter, ()))
                kind = self._kinds.get(topic_filter)
                if kind is None:
                    kind = self._kinds[topic_filter] = _InboundKind(coalesce)
                kind.coalesce = coalesce
                kinds.append(kind)
            route = _Route(subs, bool(subs) and all(s.coalesce for s in subs), tuple(kinds))
            if len(routes) >= _ROUTE_CACHE_MAX:
                routes.clear()
            routes[topic] = route
        return route

    def _dispatch_loop(self) -> None:
        inbound = self._inbound
        while True:
            self._dispatch_event.wait(_STATE_POLL_S)
            self._dispatch_event.clear()
            while True:
                batch = inbound.take(_DISPATCH_BATCH)
                if not batch:
                    if self._after_batch:  # asked again while the queue ran dry: run them now
                        self._run_after_batch()
                        continue
                    break
                for waiting in batch:
                    message = waiting.message
                    if waiting.superseded:
                        message = replace(message, superseded=waiting.superseded)
                    self._dispatch(message)
                self._run_after_batch()
                if inbound.paused:
                    self._wake_network()  # the reader checks whether it may read again
            if self._stopping.is_set():
                return

    def _dispatch(self, message: MQTTMessage) -> None:
        route = self._route(message.topic)
        subs = route.subs
        for kind in route.kinds:
            kind.handled += 1
        if not subs:
            return
        echo: bool | None = None
        for sub in subs:
            if sub.no_local:
                if echo is None:
                    echo = self._is_own_echo(message)
                if echo:
                    continue
            try:
                sub.handler(message)
            except Exception:
                self._stats.handler_errors += 1
                logger.exception(
                    "handler %r for %r failed on topic %r",
                    getattr(sub.handler, "__qualname__", sub.handler),
                    sub.topic_filter,
                    message.topic,
                )


# --------------------------------------------------------------------------- process singleton

_instance: AsyncMQTTService | None = None
_instance_lock = threading.Lock()


def get_async_mqtt_service() -> AsyncMQTTService:
    """The process's one ``AsyncMQTTService`` (built on first use from the settings)."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = AsyncMQTTService()
        return _instance


def set_async_mqtt_service(service: AsyncMQTTService | None) -> None:
    """Install ``service`` as the process's instance (the composition root and tests use this)."""
    global _instance
    with _instance_lock:
        _instance = service


def reset_async_mqtt_service() -> None:
    """Stop and forget the process's instance (tests)."""
    global _instance
    with _instance_lock:
        service, _instance = _instance, None
    if service is not None:
        service.stop(timeout=1.0)


# --------------------------------------------------------------------------- one-shot broker probe


@dataclass(frozen=True, slots=True)
class BrokerProbeResult:
    """What ``probe_broker`` found: reachability, credentials, retained messages seen."""

    reachable: bool
    authenticated: bool
    auth_failed: bool
    error: str | None
    retained: dict[str, bytes] = field(default_factory=dict)


def probe_broker(
    settings: Settings | None = None,
    topic_filter: str | None = None,
    timeout: float = 5.0,
    settle: float = 0.5,
) -> BrokerProbeResult:
    """Connect once with the configured credentials, optionally collect retained messages, disconnect.

    Used by ``consultease doctor``. It uses a random client id (never the
    service's, which would take over the kiosk's session), sets no will and
    publishes nothing. Bounded by ``timeout`` + ``settle`` seconds.
    """
    s = settings or get_settings()
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"consultease-probe-{random.getrandbits(48):012x}",
        protocol=MQTTProtocolVersion.MQTTv5
        if s.mqtt_protocol == "5"
        else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=False,
    )
    apply_credentials(client, s)
    done = threading.Event()
    subscribed = threading.Event()
    outcome: dict[str, Any] = {"code": None}
    retained: dict[str, bytes] = {}

    def on_connect(c: paho.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        outcome["code"] = rc
        if rc.is_failure or topic_filter is None:
            done.set()
            subscribed.set()  # nothing more to wait for
            return
        c.subscribe(topic_filter, qos=0)

    def on_subscribe(_c: paho.Client, _u: Any, _mid: int, _rcs: Any, _p: Any) -> None:
        outcome["subscribed"] = True
        subscribed.set()

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.retain and len(retained) < 10_000:
            retained[msg.topic] = bytes(msg.payload)

    def on_disconnect(_c: paho.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        done.set()
        subscribed.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    where = f"{s.mqtt_host}:{s.mqtt_port}"
    try:
        client.connect(s.mqtt_host, s.mqtt_port, keepalive=max(5, int(timeout) + 5))
    except (OSError, ssl.SSLError, ValueError) as err:
        return BrokerProbeResult(False, False, False, f"cannot reach broker {where}: {err}")
    client.loop_start()
    try:
        if topic_filter is None:
            done.wait(timeout)
        else:
            subscribed.wait(timeout)
        rc = outcome["code"]
        if rc is None:
            return BrokerProbeResult(
                True, False, False, f"no CONNACK from {where} within {timeout:.0f} s"
            )
        if rc.is_failure:
            auth = rc.value in _AUTH_REASON_CODES
            return BrokerProbeResult(True, False, auth, f"broker refused the connection: {rc}")
        if topic_filter is not None:
            if not outcome.get("subscribed"):
                return BrokerProbeResult(True, True, False, "the broker did not answer SUBSCRIBE")
            # Retained messages follow the SUBACK at once [MQTT-3.3.1-6]; give them a moment.
            time.sleep(settle)
        return BrokerProbeResult(True, True, False, None, retained)  # no writer after loop_stop
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()
