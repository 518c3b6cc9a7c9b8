"""The API client's HTTP/1.1 transport: keep-alive connections from the standard library.

The kiosk's calls and its event stream run on threads that share the interpreter
lock with the kiosk's screen, so their Python work per call is the screen's lost
time. httpx spends about 0.7 ms of CPU per call in its layers (httpx, httpcore,
h11) on top of the call itself; ``http.client`` a fraction of that
(docs/performance.md, "The kiosk on the new client"). What the client needs is
small: one call at a time per connection, keep-alive, TLS with a given CA, a
Unix socket for the kiosk's own server, and errors sorted into the two kinds the
failover logic needs:

- :class:`ConnectFailed`: the request never left (refused, no such socket, TLS
  handshake or certificate refused, connect timeout); trying another server is safe.
- :class:`SendFailed`: a connection was open and the request may have been sent,
  but no complete answer came.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

# Idle keep-alive connections kept per server (the kiosk makes one call at a time).
MAX_IDLE: Final = 4
READ_CHUNK: Final = 65536
# TCP keepalive on every connection to a server: an idle kept-alive connection to a host
# that vanished (power, network: no reset ever comes) is found broken after about
# 5 + 3 x 2 = 11 s, so the next call opens a fresh one instead of sending into the void
# and waiting out its read timeout (for a POST: "may have been sent").
KEEPALIVE_IDLE_S: Final = 5
KEEPALIVE_INTERVAL_S: Final = 2
KEEPALIVE_COUNT: Final = 3


class TransportError(Exception):
    """A call got no complete answer."""


class ConnectFailed(TransportError):
    """No connection could be made: the request was never sent."""


class SendFailed(TransportError):
    """The connection broke after the request may have been sent."""


@dataclass(frozen=True)
class Response:
    """A complete answer."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as text (for error messages)."""
        return self.body.decode("utf-8", "replace")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the kiosk's own server)."""

    def __init__(self, host: str, path: str, timeout: float) -> None:
        super().__init__(host, timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _keep_alive(sock: socket.socket) -> None:
    """Turn on TCP keepalive probes (where the platform lets us set their timing)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket: the kiosk's own server, on this machine
    with contextlib.suppress(OSError):  # best effort: the read timeouts still bound a call
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _is_dead(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection that is readable was closed by the server (or broken)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class Transport:
    """Keep-alive connections to the servers' base URLs; thread-safe.

    A connection serves one call at a time; a call takes an idle one (or opens one)
    and gives it back when the answer is complete.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        uds: str | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.ssl_context = ssl_context
        self.uds = uds
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[str, list[http.client.HTTPConnection]] = {}
        self._streams: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Close every connection; a stream being read ends (its reader gets an error)."""
        with self._lock:
            self._closed = True
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
            streams = list(self._streams)
        for conn in idle:
            conn.close()
        for conn in streams:
            # close() alone does not wake a thread blocked reading the socket; shutdown does.
            with contextlib.suppress(OSError, AttributeError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()

    # ------------------------------------------------------------------ connections

    def _open(self, base: str, timeout: float) -> http.client.HTTPConnection:
        parts = urlsplit(base)
        host = parts.hostname or "localhost"
        conn: http.client.HTTPConnection
        if self.uds is not None:
            conn = _UnixConnection(host, self.uds, self.connect_timeout)
        elif parts.scheme == "https":
            context = self.ssl_context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                host, parts.port, timeout=self.connect_timeout, context=context
            )
        elif parts.scheme == "http":
            conn = http.client.HTTPConnection(host, parts.port, timeout=self.connect_timeout)
        else:
            raise ConnectFailed(f"not an http(s) URL: {base}")
        try:
            conn.connect()  # TCP (or Unix socket) and the TLS handshake
        except OSError as err:  # refused, timeout, ssl.SSLError (a refused certificate)
            conn.close()
            raise ConnectFailed(f"{base}: {err}") from err
        assert conn.sock is not None
        conn.sock.settimeout(timeout)
        _keep_alive(conn.sock)
        return conn

    def _take(self, base: str) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                if self._closed:
                    raise ConnectFailed("the client is closed")
                idle = self._idle.get(base)
                conn = idle.pop() if idle else None
            if conn is None:
                return self._open(base, self.read_timeout)
            if not _is_dead(conn):
                return conn
            conn.close()

    def _give(self, base: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(base, [])
            if not self._closed and len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    # ------------------------------------------------------------------ calls

    def request(
        self,
        method: str,
        base: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One call on ``base``; the complete answer (ConnectFailed / SendFailed otherwise)."""
        conn = self._take(base)
        sock = conn.sock
        try:
            if timeout is not None and sock is not None:
                sock.settimeout(timeout)
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise SendFailed(f"{method} {base}{path}: {err!r}") from err
        if answer.will_close:
            conn.close()
        else:
            if timeout is not None and sock is not None:
                sock.settimeout(self.read_timeout)
            self._give(base, conn)
        return Response(answer.status, data)

    @contextlib.contextmanager
    def stream(
        self, base: str, path: str, *, headers: dict[str, str], timeout: float
    ) -> Iterator[tuple[int, Iterator[bytes]]]:
        """A ``GET`` whose body is read as it comes: ``(status, chunks)``.

        On its own connection (never reused): a silent server for ``timeout`` seconds,
        a broken connection or :meth:`close` end the chunks with an OSError.
        """
        conn = self._open(base, timeout)
        with self._lock:
            if self._closed:
                conn.close()
                raise ConnectFailed("the client is closed")
            self._streams.add(conn)
        try:
            try:
                conn.request("GET", path, headers=headers)
                answer = conn.getresponse()
            except (OSError, http.client.HTTPException) as err:
                raise SendFailed(f"GET {base}{path}: {err!r}") from err
            yield answer.status, _chunks(answer)
        finally:
            with self._lock:
                self._streams.discard(conn)
            conn.close()


def _chunks(answer: http.client.HTTPResponse) -> Iterator[bytes]:
    """The body as it arrives (chunked or not), until the server ends it."""
    while True:
        try:
            data = answer.read1(READ_CHUNK)
        except http.client.HTTPException as err:  # a broken chunked body
            raise OSError(f"the event stream broke: {err!r}") from err
        if not data:
            return
        yield data
