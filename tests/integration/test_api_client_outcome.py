"""The API client never re-sends a POST whose answer was lost, and finds the active server.

A real socket plays a server that reads the request and hangs up without answering
(it died after acting, or before): a POST raises OutcomeUnknownError and is sent
once; a GET goes on to the next URL. A refused connection and a 503 standby are
skipped (nothing was done there).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from central_system.api.client import ApiClient
from central_system.api.errors import NotAuthenticatedError, OutcomeUnknownError, UnavailableError

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
