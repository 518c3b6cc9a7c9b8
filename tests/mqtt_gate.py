"""A loopback proxy that reads MQTT packets and can hold back chosen ones (tests only).

``TcpGate`` (tests/brokers.py) cuts whole connections; this one lets a test stop
the broker's answers at one step of a handshake, e.g. pass PUBREC but hold PUBCOMP,
to look inside the window between the two.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter

from tests.brokers import free_port

PUBACK, PUBREC, PUBREL, PUBCOMP = 4, 5, 6, 7
TO_CLIENT, TO_BROKER = "to_client", "to_broker"


def split_packets(buffer: bytearray) -> list[bytes]:
    """Remove and return every complete MQTT control packet at the start of ``buffer``."""
    packets: list[bytes] = []
    while len(buffer) >= 2:
        length, multiplier, pos = 0, 1, 1
        while True:
            if pos >= len(buffer):
                return packets  # the remaining-length field is not complete yet
            byte = buffer[pos]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            pos += 1
            if not byte & 0x80:
                break
            if pos > 4:
                raise ValueError("malformed remaining length")
        end = pos + length
        if len(buffer) < end:
            return packets
        packets.append(bytes(buffer[:end]))
        del buffer[:end]
    return packets


class PacketGate:
    """Forwards one broker's traffic and counts packet types each way.

    ``hold(t)``: from the next broker->client packet of type ``t`` on, that packet and
    everything after it towards the client are kept back (order is preserved);
    ``release()`` sends them and forwards normally again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.seen: Counter[tuple[str, int]] = Counter()
        self._hold_types: set[int] = set()
        self._held: list[tuple[socket.socket, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(16)
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def hold(self, packet_type: int) -> None:
        """Keep back broker->client packets from the next one of ``packet_type`` on."""
        with self._lock:
            self._hold_types.add(packet_type)

    def held_types(self) -> list[int]:
        """The types of the packets kept back so far."""
        with self._lock:
            return [data[0] >> 4 for _, data in self._held]

    def release(self) -> None:
        """Send everything kept back, in order, and stop holding."""
        with self._lock:
            self._hold_types.clear()
            held, self._held = self._held, []
            for sock, data in held:
                with contextlib.suppress(OSError):
                    sock.sendall(data)

    def count(self, direction: str, packet_type: int) -> int:
        """How many packets of ``packet_type`` went ``direction`` (held ones included)."""
        with self._lock:
            return self.seen[(direction, packet_type)]

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for src, dst, direction in (
                (client, upstream, TO_BROKER),
                (upstream, client, TO_CLIENT),
            ):
                threading.Thread(target=self._pump, args=(src, dst, direction), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        buffer = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buffer += data
                for packet in split_packets(buffer):
                    self._forward(dst, packet, direction)
        except (OSError, ValueError):
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _forward(self, dst: socket.socket, packet: bytes, direction: str) -> None:
        kind = packet[0] >> 4
        with self._lock:
            self.seen[(direction, kind)] += 1
            if direction == TO_CLIENT and (self._held or kind in self._hold_types):
                self._held.append((dst, packet))
                return
            dst.sendall(packet)

    def stop(self) -> None:
        """Close every connection and the listener."""
        self._stop.set()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._server.close()
        self._thread.join(2)
