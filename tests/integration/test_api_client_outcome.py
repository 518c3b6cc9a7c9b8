"""The API client never re-sends a POST whose answer was lost, and finds the active server.

A real socket plays a server that reads the request and hangs up without answering
(it died after acting, or before): a POST raises OutcomeUnknownError and is sent
once; a GET goes on to the next URL. A refused connection and a 503 standby are
skipped (nothing was done there). A server that accepts and never says a word (its
host lost power or network, a frozen VM, a stopped process) holds a kiosk call only
for the kiosk's own read timeout, and its event stream only a little longer than the
server's keepalive interval.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from central_system.api import transport
from central_system.api.client import (
    ADMIN_READ_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    EVENTS_READ_TIMEOUT_S,
    KIOSK_READ_TIMEOUT_S,
    ApiClient,
)
from central_system.api.errors import NotAuthenticatedError, OutcomeUnknownError, UnavailableError
from central_system.config import Settings
from central_system.db import SQLITE_WRITE_GATE_TIMEOUT_S
from central_system.kiosk.api_backend import ApiBackend
from central_system.server.events import KEEPALIVE_S

STANDBY = json.dumps({"error": "unavailable", "detail": "This server is standby."}).encode()
FACULTY = json.dumps([]).encode()


class FakeServer:
    """Answers every request on a loopback port with ``reply`` (None: read it, then hang up)."""

    def __init__(self, reply: tuple[int, bytes] | None) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head.split(b"\r\n")[0])
                if self.reply is None:
                    continue  # hang up without a word
                status, payload = self.reply
                conn.sendall(
                    b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n%s" % (status, len(payload), payload)
                )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    made: list[FakeServer] = []
    yield made
    for s in made:
        s.close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_post_whose_answer_is_lost_is_sent_once_and_reported_as_outcome_unknown(
    servers: list[FakeServer],
) -> None:
    silent = FakeServer(None)
    other = FakeServer((201, b"{}"))
    servers += [silent, other]
    client = ApiClient([silent.url, other.url], "cek_test", timeout=5.0)
    with pytest.raises(OutcomeUnknownError):
        client.create_consultation("04A1B2C3", 1, "A question about recursion.")
    assert len(silent.requests) == 1 and silent.requests[0].startswith(b"POST ")
    assert other.requests == []  # never sent a second time elsewhere


def test_a_get_whose_answer_is_lost_goes_on_to_the_next_server(servers: list[FakeServer]) -> None:
    silent = FakeServer(None)
    good = FakeServer((200, FACULTY))
    servers += [silent, good]
    client = ApiClient([silent.url, good.url], "cek_test", timeout=5.0)
    assert client.faculty() == []
    assert client.active_url == good.url


def test_a_refused_connection_and_a_standby_are_skipped_for_the_active_server(
    servers: list[FakeServer],
) -> None:
    standby = FakeServer((503, STANDBY))
    active = FakeServer((200, FACULTY))
    servers += [standby, active]
    client = ApiClient([_closed_port_url(), standby.url, active.url], "cek_test", timeout=5.0)
    assert client.faculty() == []
    assert client.active_url == active.url
    assert len(standby.requests) == 1


def test_no_server_answering_is_said_in_plain_words(servers: list[FakeServer]) -> None:
    standby = FakeServer((503, STANDBY))
    servers.append(standby)
    client = ApiClient([_closed_port_url(), standby.url], "cek_test", timeout=5.0)
    with pytest.raises(UnavailableError, match="No ConsultEase server answers"):
        client.create_consultation("04A1B2C3", 1, "A question about recursion.")


def test_an_error_answer_keeps_its_meaning(servers: list[FakeServer]) -> None:
    refused = FakeServer(
        (401, json.dumps({"error": "not_authenticated", "detail": "revoked"}).encode())
    )
    servers.append(refused)
    with pytest.raises(NotAuthenticatedError, match="revoked"):
        ApiClient(refused.url, "cek_test").faculty()


class SilentServer:
    """A server host that froze: the kernel completes the TCP handshake (the listen
    backlog), nobody ever accepts, reads or answers, and no reset ever comes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


class HushedStream:
    """A server that opens the event stream (200 and ": connected") and then goes silent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)  # never closed while the test runs: no FIN, no RST
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            body = b": connected\n\n"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(body), body)
            )

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def _kiosk_client(urls: list[str], tmp_path: Path) -> ApiClient:
    """The client exactly as a kiosk of remote servers builds it (its real timeouts)."""
    settings = Settings(
        server_url=",".join(urls), server_token=SecretStr("cek_test"), data_dir=tmp_path
    )
    return ApiBackend.from_settings(settings).client


def test_the_kiosk_waits_a_little_longer_than_the_servers_slowest_answer_and_no_more() -> None:
    # A live server's slowest kiosk answer: a write that waits out the SQLite write gate.
    assert SQLITE_WRITE_GATE_TIMEOUT_S < KIOSK_READ_TIMEOUT_S <= 15.0
    # A live stream says something (at least a keepalive) every KEEPALIVE_S.
    assert KEEPALIVE_S < EVENTS_READ_TIMEOUT_S <= KEEPALIVE_S + 10
    assert ADMIN_READ_TIMEOUT_S >= 300.0  # a backup or an export of a large database


def test_a_get_to_a_silent_server_goes_on_to_the_next_url_within_the_kiosks_timeout(
    servers: list[FakeServer], tmp_path: Path
) -> None:
    silent = SilentServer()
    good = FakeServer((200, FACULTY))
    servers.append(good)
    try:
        client = _kiosk_client([silent.url, good.url], tmp_path)
        t0 = time.monotonic()
        assert client.faculty() == []
        elapsed = time.monotonic() - t0
        assert client.active_url == good.url
        assert KIOSK_READ_TIMEOUT_S - 0.5 <= elapsed <= KIOSK_READ_TIMEOUT_S + 3.0
        # The next call goes straight to the server that answered.
        t0 = time.monotonic()
        assert client.faculty() == []
        assert time.monotonic() - t0 < 1.0
        client.close()
    finally:
        silent.close()


def test_a_post_to_a_silent_server_reports_outcome_unknown_and_is_not_sent_elsewhere(
    servers: list[FakeServer], tmp_path: Path
) -> None:
    silent = SilentServer()
    other = FakeServer((201, b"{}"))
    servers.append(other)
    try:
        client = _kiosk_client([silent.url, other.url], tmp_path)
        t0 = time.monotonic()
        with pytest.raises(OutcomeUnknownError, match="may or may not"):
            client.create_consultation("04A1B2C3", 1, "A question about recursion.")
        assert time.monotonic() - t0 <= KIOSK_READ_TIMEOUT_S + 3.0
        assert other.requests == []  # never sent a second time elsewhere
        client.close()
    finally:
        silent.close()


def test_a_silent_event_stream_is_noticed_and_the_next_attempt_starts_at_the_next_url(
    servers: list[FakeServer], tmp_path: Path
) -> None:
    hushed = HushedStream()
    good = FakeServer((200, b""))  # an event stream that ends at once
    servers.append(good)
    try:
        client = _kiosk_client([hushed.url, good.url], tmp_path)
        t0 = time.monotonic()
        with pytest.raises(UnavailableError, match="silent"):
            for _ in client.event_batches():
                pass
        elapsed = time.monotonic() - t0
        assert EVENTS_READ_TIMEOUT_S - 0.5 <= elapsed <= EVENTS_READ_TIMEOUT_S + 3.0
        assert client.active_url == good.url
        assert list(client.event_batches()) == []
        assert good.requests == [b"GET /api/v1/events HTTP/1.1"]
        client.close()
    finally:
        hushed.close()


def test_an_event_stream_that_never_opens_goes_on_to_the_next_url(
    servers: list[FakeServer], tmp_path: Path
) -> None:
    silent = SilentServer()
    good = FakeServer((200, b""))
    servers.append(good)
    try:
        client = _kiosk_client([silent.url, good.url], tmp_path)
        t0 = time.monotonic()
        assert list(client.event_batches()) == []
        assert time.monotonic() - t0 <= EVENTS_READ_TIMEOUT_S + CONNECT_TIMEOUT_S
        assert good.requests == [b"GET /api/v1/events HTTP/1.1"]
        assert client.active_url == good.url
        client.close()
    finally:
        silent.close()


def test_connections_to_a_server_probe_a_vanished_host_with_tcp_keepalives(
    servers: list[FakeServer],
) -> None:
    good = FakeServer((200, FACULTY))
    servers.append(good)
    http = transport.Transport(ssl_context=None, uds=None, connect_timeout=3.0, read_timeout=5.0)
    conn = http._open(good.url, 5.0)
    try:
        assert conn.sock is not None
        assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            idle = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
            assert idle == transport.KEEPALIVE_IDLE_S
    finally:
        conn.close()
        http.close()
