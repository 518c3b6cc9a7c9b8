"""A simulated faculty desk unit speaking contract v1 (``/work/shared/mqtt-contract.md``).

``mode="firmware"`` is the deployed ESP32 firmware, quirks included (contract
section 2 and 3.1): a random client id and a clean session on every connect,
every publish at QoS 0, retained presence on the new and the legacy status topic
after every connect, no last will, requests dropped while the faculty member is
away, the current request kept across AWAY and reconnects, another copy of a
request it holds queued as a second request, and everything forgotten on a
reboot (``reboot()``: ``uptime`` starts again). ``mode="improved"`` keeps a
stable client id and a persistent session, sets a retained ``OFFLINE`` last
will, says so in its presence and heartbeat (docs/mqtt-topics.md) and never
shows a request twice.

``deliveries`` counts, per consultation id, every request put on the desk
(shown or queued); ``stats.copies_shown`` counts those that joined a copy of
themselves already there: the duplicates a faculty member would see.

All of a desk's state is changed on its ``NetworkLoop`` thread; the public
methods hand their work to that thread, so many desks can share one loop.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from central_system import topics

from . import protocol
from .loop import NetworkLoop, TimerHandle
from .protocol import DeskProtocolError, DeskRequest, NotARequestError

logger = logging.getLogger(__name__)

Mode = Literal["firmware", "improved"]
MODES: tuple[str, ...] = ("firmware", "improved")

# PubSubClient's default keepalive on the deployed firmware.
FIRMWARE_KEEPALIVE_S = 15
# A CONNECT without CONNACK for this long is abandoned and retried.
CONNACK_TIMEOUT_S = 10.0
# The firmware's offline publish queue: a button pressed while the link is down is sent after it returns.
OFFLINE_QUEUE_SIZE = 10
# Bounds of what a desk keeps for tests and the interactive view.
RAW_HISTORY = 1000
# CONNACK reason codes after which retrying is pointless (MQTT 3.1.1 section 3.2.2.3: 4, 5).
_AUTH_FAILURES = {"Bad user name or password", "Not authorized"}


@dataclass
class DeskStats:
    """Counters of one desk (read them through ``DeskUnit.stats``)."""

    connects: int = 0
    connect_failures: int = 0
    link_losses: int = 0
    requests_received: int = 0
    requests_dropped_away: int = 0
    requests_dropped_full: int = 0
    requests_duplicate: int = 0  # improved mode: a copy it recognised and ignored
    copies_shown: int = 0  # firmware mode: a copy queued next to the request it already holds
    withdrawals: int = 0  # consultation_resend removals (docs/mqtt-topics.md)
    reboots: int = 0
    non_requests_dropped: int = 0
    malformed_dropped: int = 0
    cancellations: int = 0
    responses_sent: int = 0
    heartbeats_sent: int = 0
    presence_published: int = 0


class DeskUnit:
    """One simulated desk unit (see the module docstring for the two modes)."""

    def __init__(
        self,
        faculty_id: int,
        faculty_name: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        mode: Mode = "firmware",
        heartbeat_interval: float = protocol.FIRMWARE_HEARTBEAT_INTERVAL_S,
        username: str | None = None,
        password: str | None = None,
        *,
        present: bool = True,
        loop: NetworkLoop | None = None,
        keepalive: int = FIRMWARE_KEEPALIVE_S,
        reconnect_max_delay: float = 30.0,
        heartbeat_phase: float | None = None,
        ntp_sync_status: str = "SYNCED",
        on_request: Callable[[DeskUnit, DeskRequest], None] | None = None,
        on_change: Callable[[DeskUnit], None] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        self.faculty_id = int(faculty_id)
        self.faculty_name = faculty_name
        self.host = host
        self.port = int(port)
        self.mode: Mode = mode
        self.heartbeat_interval = float(heartbeat_interval)
        self.username = username
        self._password = password
        self.keepalive = keepalive
        self.reconnect_max_delay = reconnect_max_delay
        self.heartbeat_phase = heartbeat_interval if heartbeat_phase is None else heartbeat_phase
        self.ntp_sync_status = ntp_sync_status
        self.on_request = on_request
        self.on_change = on_change
        self.stats = DeskStats()
        self.received_raw: deque[tuple[str, bytes]] = deque(maxlen=RAW_HISTORY)
        self.client_ids: deque[str] = deque(maxlen=RAW_HISTORY)
        self.responses: deque[str] = deque(maxlen=RAW_HISTORY)
        self.deliveries: Counter[str] = Counter()

        self._own_loop = loop is None
        self._loop = loop or NetworkLoop(name=f"desk-{self.faculty_id}")
        self._cond = threading.Condition()
        self._present = present
        self._queue: list[DeskRequest] = []
        self._offline: deque[tuple[str, str, bool]] = deque(maxlen=OFFLINE_QUEUE_SIZE)
        self._client: paho.Client | None = None
        self._sock: socket.socket | None = None
        self._connected = False
        self._started = False
        self._stopping = False
        self._auth_failed = False
        self._attempt = 0
        self._boot = time.monotonic()
        self._reconnect_timer: TimerHandle | None = None
        self._connack_timer: TimerHandle | None = None
        self._heartbeat_timer: TimerHandle | None = None

        self.messages_topic = topics.faculty_messages_topic(self.faculty_id)
        self.cancellations_topic = topics.faculty_cancellations_topic(self.faculty_id)
        self.status_topic = topics.faculty_status_topic(self.faculty_id)
        self.legacy_status_topic = topics.legacy_faculty_status_topic(self.faculty_id)
        self.responses_topic = topics.faculty_responses_topic(self.faculty_id)
        self.heartbeat_topic = topics.faculty_heartbeat_topic(self.faculty_id)

    def __repr__(self) -> str:
        return f"DeskUnit(faculty_id={self.faculty_id}, mode={self.mode!r}, connected={self._connected})"

    # ------------------------------------------------------------------ public API (any thread)

    def start(self) -> DeskUnit:
        """Boot the unit: connect (retrying with jittered backoff) and start heartbeats."""
        if self._started:
            return self
        self._started = True
        self._stopping = False
        if self._own_loop:
            self._loop.start()
        self._loop.call_soon(self._boot_in_loop)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (an improved unit first publishes its ``OFFLINE`` status) and stop."""
        if not self._started:
            return
        try:
            self._loop.run_sync(self._shutdown_in_loop, timeout)
        except Exception:
            logger.exception("desk %s: shutdown failed", self.faculty_id)
        self._started = False
        if self._own_loop:
            self._loop.stop(timeout)

    def kill_connection(self, reconnect_after: float | None = None, timeout: float = 5.0) -> None:
        """Drop the TCP connection without DISCONNECT, like a power cut (the broker fires any will).

        ``reconnect_after`` seconds later the unit connects again (a network blip);
        ``None`` leaves it dead until ``stop()``.
        """
        self._loop.run_sync(lambda: self._kill_in_loop(reconnect_after), timeout)

    def reboot(self, down_for: float = 0.5, timeout: float = 5.0) -> None:
        """Power-cycle the unit: the link dies, every request is forgotten, ``uptime`` restarts.

        It connects again ``down_for`` seconds later, like a desk that booted.
        """
        self._loop.run_sync(lambda: self._reboot_in_loop(down_for), timeout)

    def set_present(
        self, present: bool, grace_period_remaining_ms: int | None = None, timeout: float = 5.0
    ) -> None:
        """Change presence; the firmware publishes presence on every change (contract 2.1)."""
        self._loop.run_sync(
            lambda: self._set_present_in_loop(present, grace_period_remaining_ms), timeout
        )

    def acknowledge(self, cid: str | int | None = None, timeout: float = 5.0) -> DeskRequest | None:
        """Press ACKNOWLEDGE for ``cid`` (default: the oldest queued request); None if nothing matches."""
        return self._loop.run_sync(lambda: self._respond(protocol.ACKNOWLEDGE, cid), timeout)

    def busy(self, cid: str | int | None = None, timeout: float = 5.0) -> DeskRequest | None:
        """Press BUSY for ``cid`` (default: the oldest queued request); None if nothing matches."""
        return self._loop.run_sync(lambda: self._respond(protocol.BUSY, cid), timeout)

    @property
    def queue(self) -> list[DeskRequest]:
        """The queued requests, oldest first (a copy)."""
        with self._cond:
            return list(self._queue)

    @property
    def present(self) -> bool:
        """The faculty member's presence as the unit reports it."""
        return self._present

    @property
    def connected(self) -> bool:
        """True between CONNACK and the loss of the link."""
        return self._connected

    @property
    def auth_failed(self) -> bool:
        """True once the broker refused the credentials (the unit stops retrying)."""
        return self._auth_failed

    @property
    def client_id(self) -> str | None:
        """The client id of the current or last connection."""
        return self.client_ids[-1] if self.client_ids else None

    def uptime_ms(self) -> int:
        """Milliseconds since the unit booted: the firmware's ``millis()``."""
        return int((time.monotonic() - self._boot) * 1000)

    def wait_for(self, predicate: Callable[[DeskUnit], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
            return True

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait for CONNACK."""
        return self.wait_for(lambda d: d._connected, timeout)

    def wait_for_request(
        self, timeout: float = 10.0, cid: str | int | None = None
    ) -> DeskRequest | None:
        """The oldest queued request (or the one with ``cid``) once there is one; None on timeout."""
        found: list[DeskRequest] = []

        def match(desk: DeskUnit) -> bool:
            request = desk._find(cid)
            if request is not None:
                found.append(request)
            return request is not None

        return found[-1] if self.wait_for(match, timeout) else None

    # ------------------------------------------------------------------ loop thread: lifecycle

    def _capabilities(self) -> str:
        return protocol.IMPROVED_CAPABILITIES if self.mode == "improved" else ""

    def _boot_in_loop(self) -> None:
        self._loop.add_endpoint(self)
        self._heartbeat_timer = self._loop.call_later(self.heartbeat_phase, self._heartbeat_tick)
        self._connect()

    def _make_client(self) -> paho.Client:
        if self.mode == "firmware":
            # The firmware derives a new random id on every connect, with a clean session.
            client_id = f"DeskUnit_{self.faculty_id}_{secrets.token_hex(3)}"
        else:
            client_id = f"desk-{self.faculty_id}"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=self.mode == "firmware",
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
        )
        client.suppress_exceptions = True
        if self.username:
            client.username_pw_set(self.username, self._password)
        if self.mode == "improved":
            client.will_set(self.status_topic, self._offline_json(), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client_ids.append(client_id)
        return client

    def _connect(self) -> None:
        self._reconnect_timer = None
        if self._stopping or self._auth_failed or self._client is not None:
            return
        client = self._make_client()
        try:
            client.connect(self.host, self.port, self.keepalive)
        except (OSError, ValueError) as err:
            self.stats.connect_failures += 1
            logger.debug(
                "desk %s: cannot reach %s:%s: %s", self.faculty_id, self.host, self.port, err
            )
            self._schedule_reconnect()
            return
        sock = client.socket()
        if sock is None:
            self._schedule_reconnect()
            return
        self._client = client
        self._sock = sock  # type: ignore[assignment]
        self._loop.watch(self._sock, self, client.want_write())  # type: ignore[arg-type]
        self._connack_timer = self._loop.call_later(CONNACK_TIMEOUT_S, self._connack_timeout)

    def _schedule_reconnect(self) -> None:
        if self._stopping or self._auth_failed or self._reconnect_timer is not None:
            return
        self._attempt += 1
        delay = protocol.jittered_backoff(self._attempt, self.reconnect_max_delay)
        logger.debug("desk %s: reconnecting in %.2f s", self.faculty_id, delay)
        self._reconnect_timer = self._loop.call_later(delay, self._connect)

    def _connack_timeout(self) -> None:
        self._connack_timer = None
        if self._client is not None and not self._connected:
            logger.warning("desk %s: no CONNACK within %.0f s", self.faculty_id, CONNACK_TIMEOUT_S)
            self._abandon_connection()
            self._schedule_reconnect()

    def _abandon_connection(self) -> None:
        """Forget the current client and close its socket without any MQTT goodbye."""
        client, sock = self._client, self._sock
        self._client = None
        self._sock = None
        if sock is not None:
            self._loop.unwatch(sock)
            with contextlib.suppress(OSError):
                # RST instead of FIN: the broker sees a dead peer, as after a power cut.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            with contextlib.suppress(OSError):
                sock.close()
        if client is not None:
            client.on_disconnect = None
            client.on_connect = None
            client.on_message = None
        self._link_lost_state()

    def _link_lost_state(self) -> None:
        if self._connack_timer is not None:
            self._connack_timer.cancel()
            self._connack_timer = None
        was_connected = self._connected
        self._connected = False
        if was_connected:
            self.stats.link_losses += 1
        self._changed()

    def _shutdown_in_loop(self) -> None:
        self._stopping = True
        for timer in (self._reconnect_timer, self._connack_timer, self._heartbeat_timer):
            if timer is not None:
                timer.cancel()
        self._reconnect_timer = self._heartbeat_timer = None
        self._loop.remove_endpoint(self)
        client, sock = self._client, self._sock
        if client is not None and sock is not None and self._connected:
            if self.mode == "improved":
                # A clean DISCONNECT suppresses the will [MQTT-3.14.4-3]: say OFFLINE ourselves.
                client.publish(self.status_topic, self._offline_json(), qos=0, retain=True)
            client.disconnect()
            with contextlib.suppress(Exception):
                client.loop_write()
        if sock is not None:
            self._loop.unwatch(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._client = None
        self._sock = None
        self._link_lost_state()

    def _reboot_in_loop(self, down_for: float) -> None:
        self._kill_in_loop(None)
        with self._cond:
            self._queue.clear()
        self._offline.clear()
        self._stopping = False
        self._attempt = 0
        self.stats.reboots += 1

        def boot() -> None:
            self._boot = time.monotonic()
            self._boot_in_loop()

        self._reconnect_timer = self._loop.call_later(down_for, boot)

    def _kill_in_loop(self, reconnect_after: float | None) -> None:
        if reconnect_after is None:
            self._stopping = True
            if self._heartbeat_timer is not None:
                self._heartbeat_timer.cancel()
            self._loop.remove_endpoint(self)
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
            self._reconnect_timer = None
        self._abandon_connection()
        if reconnect_after is not None:
            self._reconnect_timer = self._loop.call_later(reconnect_after, self._connect)

    # ------------------------------------------------------------------ loop thread: I/O

    def handle_read(self) -> None:
        """The socket is readable (called by the loop)."""
        if self._client is not None:
            self._client.loop_read()
        self._after_io()

    def handle_write(self) -> None:
        """The socket is writable (called by the loop)."""
        if self._client is not None:
            self._client.loop_write()
        self._after_io()

    def handle_misc(self) -> None:
        """Keepalive bookkeeping, once a second (called by the loop)."""
        if self._client is not None:
            self._client.loop_misc()
        self._after_io()

    def _after_io(self) -> None:
        """Write what paho queued inside its callbacks; wait for writability only if it is stuck."""
        client = self._client
        sock = self._sock
        if client is None or sock is None:
            return
        if client.want_write():
            client.loop_write()
        # loop_write may have lost the link (on_disconnect then forgot this client).
        if self._client is client and self._sock is sock and client.socket() is not None:
            self._loop.watch(sock, self, client.want_write())

    def _publish(self, topic: str, payload: str, retain: bool = False, queue: bool = False) -> bool:
        """Publish at QoS 0 like the firmware; ``queue`` keeps it for the next connection if offline."""
        client = self._client
        if client is None or not self._connected:
            if queue:
                self._offline.append((topic, payload, retain))
            return False
        info = client.publish(topic, payload.encode("utf-8"), qos=0, retain=retain)
        self._after_io()
        return info.rc == paho.MQTT_ERR_SUCCESS

    # ------------------------------------------------------------------ paho callbacks (loop thread)

    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if client is not self._client:
            return
        if self._connack_timer is not None:
            self._connack_timer.cancel()
            self._connack_timer = None
        if reason.is_failure:
            self.stats.connect_failures += 1
            if str(reason) in _AUTH_FAILURES:
                self._auth_failed = True
                logger.error(
                    "desk %s: broker refused the credentials (%s); not retrying",
                    self.faculty_id,
                    reason,
                )
            else:
                logger.warning("desk %s: connection refused: %s", self.faculty_id, reason)
            return
        self._connected = True
        self._attempt = 0
        self.stats.connects += 1
        # Contract 2: the firmware subscribes to its two inbound topics at QoS 1.
        client.subscribe([(self.messages_topic, 1), (self.cancellations_topic, 1)])
        self._publish_presence()
        while self._offline:
            topic, payload, retain = self._offline.popleft()
            self._publish(topic, payload, retain)
        self._changed()

    def _on_disconnect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if client is not self._client:
            return
        sock = self._sock
        self._client = None
        self._sock = None
        if sock is not None:
            self._loop.unwatch(sock)
        self._link_lost_state()
        if not self._stopping:
            logger.info("desk %s: link lost (%s)", self.faculty_id, reason)
            self._schedule_reconnect()

    def _on_message(self, client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if client is not self._client:
            return
        payload = bytes(message.payload)
        self.received_raw.append((message.topic, payload))
        if message.topic == self.messages_topic:
            self._handle_request(payload)
        elif message.topic == self.cancellations_topic:
            self._handle_cancellation(payload)

    # ------------------------------------------------------------------ behaviour (loop thread)

    def _handle_request(self, payload: bytes) -> None:
        try:
            request = protocol.parse_request(payload)
        except NotARequestError:
            # The firmware silently ignores anything that is not a CID: request (contract 1.1).
            self.stats.non_requests_dropped += 1
            logger.debug("desk %s: dropped a non-CID message %r", self.faculty_id, payload[:80])
            return
        except DeskProtocolError as err:
            self.stats.malformed_dropped += 1
            logger.warning(
                "desk %s: dropped a malformed request (%s): %r", self.faculty_id, err, payload[:80]
            )
            return
        if not self._present:
            # Contract 3: the firmware ignores requests while its faculty member is away.
            self.stats.requests_dropped_away += 1
            logger.info("desk %s: request %s ignored - faculty AWAY", self.faculty_id, request.cid)
            return
        with self._cond:
            held = any(queued.cid == request.cid for queued in self._queue)
            if held and self.mode == "improved":
                self.stats.requests_duplicate += 1
                return
            if len(self._queue) >= protocol.MAX_QUEUED_REQUESTS:
                self.stats.requests_dropped_full += 1
                logger.warning(
                    "desk %s: queue full, request %s dropped", self.faculty_id, request.cid
                )
                return
            self._queue.append(request)
            self.stats.requests_received += 1
            self.deliveries[request.cid] += 1
            if held:
                # Contract 3.1: the firmware queues the copy as a second request.
                self.stats.copies_shown += 1
                logger.info("desk %s: request %s shown twice", self.faculty_id, request.cid)
        if self.on_request is not None:
            try:
                self.on_request(self, request)
            except Exception:
                logger.exception("desk %s: on_request callback failed", self.faculty_id)
        self._changed()

    def _handle_cancellation(self, payload: bytes) -> None:
        try:
            cid = protocol.parse_cancellation(payload, firmware=self.mode == "firmware")
        except DeskProtocolError as err:
            self.stats.malformed_dropped += 1
            logger.warning(
                "desk %s: dropped a cancellation (%s): %r", self.faculty_id, err, payload[:80]
            )
            return
        withdrawal = b"consultation_resend" in payload
        with self._cond:
            # Contract 3.1: the request on screen if it matches, else the first match queued.
            found = next((i for i, queued in enumerate(self._queue) if queued.cid == cid), None)
            if found is not None:
                del self._queue[found]
        if found is not None:
            if withdrawal:
                self.stats.withdrawals += 1
            else:
                self.stats.cancellations += 1
            logger.info("desk %s: request %s removed", self.faculty_id, cid)
            self._changed()

    def _respond(self, response_type: str, cid: str | int | None) -> DeskRequest | None:
        with self._cond:
            request = self._find(cid)
            if request is None:
                return None
            self._queue.remove(request)
        payload = protocol.build_response_json(
            self.faculty_id,
            self.faculty_name,
            response_type,
            request.cid,
            self.uptime_ms(),
            self._present,
        )
        self._publish(self.responses_topic, payload, queue=True)
        self.responses.append(payload)
        self.stats.responses_sent += 1
        self._changed()
        return request

    def _find(self, cid: str | int | None) -> DeskRequest | None:
        if not self._queue:
            return None
        if cid is None:
            return self._queue[0]
        wanted = str(cid)
        return next((queued for queued in self._queue if queued.cid == wanted), None)

    def _set_present_in_loop(self, present: bool, grace_period_remaining_ms: int | None) -> None:
        changed = present != self._present
        self._present = present
        if changed or grace_period_remaining_ms is not None:
            self._publish_presence(grace_period_remaining_ms)
            self._changed()

    def _presence_json(self, grace_period_remaining_ms: int | None = None) -> str:
        return protocol.build_presence_json(
            self.faculty_id,
            self.faculty_name,
            self._present,
            self.uptime_ms(),
            self.ntp_sync_status,
            grace_period_remaining_ms,
            extra=self._capabilities(),
        )

    def _offline_json(self) -> str:
        return protocol.build_presence_json(
            self.faculty_id,
            self.faculty_name,
            False,
            self.uptime_ms(),
            self.ntp_sync_status,
            status="OFFLINE",
        )

    def _publish_presence(self, grace_period_remaining_ms: int | None = None) -> None:
        """Retained presence on the new and the legacy topic (contract 2.1)."""
        payload = self._presence_json(grace_period_remaining_ms)
        # Not kept for later while offline: presence is published afresh after every connect.
        self._publish(self.status_topic, payload, retain=True)
        self._publish(self.legacy_status_topic, payload, retain=True)
        self.stats.presence_published += 1

    def _heartbeat_tick(self) -> None:
        if self._stopping:
            return
        self._heartbeat_timer = self._loop.call_later(self.heartbeat_interval, self._heartbeat_tick)
        if not self._connected:
            return  # the firmware skips heartbeats while offline
        payload = protocol.build_heartbeat_json(
            self.faculty_id,
            self.uptime_ms(),
            self._present,
            len(self._queue),
            self.ntp_sync_status,
            mqtt_retries=self._attempt,
            extra=self._capabilities(),
        )
        if self._publish(self.heartbeat_topic, payload):
            self.stats.heartbeats_sent += 1

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:
                logger.exception("desk %s: on_change callback failed", self.faculty_id)
