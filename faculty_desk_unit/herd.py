"""Thousands of desks as bare MQTT connections: the reconnect herd, for storm tests and benchmarks.

A :class:`DeskUnit` runs a paho client per desk; 10,000 of them cost a core on
their own. A herd desk is one TCP connection that sends, in one write, what the
deployed firmware sends after it connects: an MQTT 3.1.1 CONNECT (random client
id, clean session, like the firmware) followed by QoS 0 PUBLISH packets (its
retained presence on both status topics, a response…). A client may send packets
right after CONNECT, before the CONNACK (MQTT 3.1.1 section 3.1.4, non-normative
comment). The herd connects every desk at
once, as after a broker restart: no jitter, the worst case the central system must
survive. One thread, non-blocking sockets, every wait bounded.
"""

from __future__ import annotations

import contextlib
import secrets
import selectors
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from central_system import topics

from .protocol import ACKNOWLEDGE, build_presence_json, build_response_json


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, keepalive: int = 0) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session and no will (the firmware's)."""
    body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _utf8(client_id)
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, retain: bool = False) -> bytes:
    """A QoS 0 PUBLISH (the firmware publishes everything at QoS 0)."""
    body = _utf8(topic) + payload
    return bytes([0x30 | (1 if retain else 0)]) + _varint(len(body)) + body


def presence_packets(faculty_id: int, present: bool, uptime_ms: int = 60_000) -> bytes:
    """The firmware's retained presence on ``consultease/faculty/{fid}/status`` and the legacy topic."""
    payload = build_presence_json(faculty_id, f"Faculty {faculty_id}", present, uptime_ms).encode()
    return publish_packet(topics.faculty_status_topic(faculty_id), payload, True) + publish_packet(
        topics.legacy_faculty_status_topic(faculty_id), payload, True
    )


def response_packet(
    faculty_id: int, consultation_id: int, response_type: str = ACKNOWLEDGE
) -> bytes:
    """One button press (contract 2.2), sent once at QoS 0 like the firmware."""
    payload = build_response_json(
        faculty_id, f"Faculty {faculty_id}", response_type, str(consultation_id), 61_000, True
    ).encode()
    return publish_packet(topics.faculty_responses_topic(faculty_id), payload)


@dataclass
class _Conn:
    faculty_id: int
    sock: socket.socket
    out: bytes
    connected: bool = False


@dataclass
class HerdResult:
    """What one :meth:`DeskHerd.send` did."""

    desks: int
    connected: int
    bytes_sent: int
    seconds: float
    failed: list[int] = field(default_factory=list)


class DeskHerd:
    """Raw desk connections to ``127.0.0.1:port`` (loopback only)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the desk herd only targets loopback brokers")
        self.host, self.port = host, port
        self._conns: dict[int, _Conn] = {}

    def send(
        self, packets: dict[int, bytes], timeout: float = 60.0, reconnect: bool = True
    ) -> HerdResult:
        """Send each desk's packets; with ``reconnect`` (re)open its connection first, CONNECT included.

        Desks that have an open connection and ``reconnect=False`` write on it.
        Returns once every write finished or ``timeout`` passed.
        """
        started = time.monotonic()
        deadline = started + timeout
        sel = selectors.DefaultSelector()
        waiting: dict[int, _Conn] = {}
        for fid, data in packets.items():
            conn = self._conns.get(fid)
            if reconnect or conn is None:
                if conn is not None:
                    with contextlib.suppress(OSError):
                        conn.sock.close()
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect_ex((self.host, self.port))
                conn = _Conn(fid, sock, connect_packet(f"herd-{secrets.token_hex(6)}") + data)
                self._conns[fid] = conn
            else:
                conn.out += data
            waiting[fid] = conn
            sel.register(conn.sock, selectors.EVENT_WRITE, conn)
        sent = 0
        failed: list[int] = []
        try:
            while waiting and time.monotonic() < deadline:
                for key, _events in sel.select(min(1.0, max(0.0, deadline - time.monotonic()))):
                    conn = key.data
                    try:
                        n = conn.sock.send(conn.out)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        failed.append(conn.faculty_id)
                        sel.unregister(conn.sock)
                        del waiting[conn.faculty_id]
                        continue
                    conn.connected = True
                    sent += n
                    conn.out = conn.out[n:]
                    if not conn.out:
                        sel.unregister(conn.sock)
                        del waiting[conn.faculty_id]
        finally:
            sel.close()
        failed += list(waiting)
        return HerdResult(
            len(packets),
            sum(1 for c in self._conns.values() if c.connected),
            sent,
            time.monotonic() - started,
            failed,
        )

    def close(self, faculty_ids: Iterable[int] | None = None) -> None:
        """Close the connections (all by default) without DISCONNECT, like a desk losing power."""
        ids: Sequence[int] = list(self._conns) if faculty_ids is None else list(faculty_ids)
        for fid in ids:
            conn = self._conns.pop(fid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sock.close()

    def __len__(self) -> int:
        return len(self._conns)

    def __enter__(self) -> DeskHerd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
