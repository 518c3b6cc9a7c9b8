"""One thread and one selector drive any number of paho clients (paho's external-loop API).

``loop_start()`` costs a thread per client; 200 simulated desks would be 200
threads. Here a single thread waits on every desk's socket with a selector and
calls ``loop_read``/``loop_write``/``loop_misc`` only for the sockets that are
ready. Timers (heartbeats, reconnects) live in a heap on the same thread, so
every desk's state is touched by exactly one thread and needs no locks of its own.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How often every endpoint gets ``handle_misc`` (paho's keepalive bookkeeping).
MISC_INTERVAL_S = 1.0
# Endpoints given ``handle_misc`` per loop iteration: a fleet of 10,000 desks is swept in
# slices between socket events, not in one 100+ ms block that holds every desk's traffic up.
MISC_SLICE = 200
# Upper bound of one selector wait, so ``stop()`` is noticed promptly even if the wake fails.
MAX_WAIT_S = 1.0


class Endpoint(Protocol):
    """What the loop calls for a watched socket."""

    def handle_read(self) -> None: ...

    def handle_write(self) -> None: ...

    def handle_misc(self) -> None: ...


class TimerHandle:
    """A scheduled call; ``cancel()`` makes it a no-op."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run this call."""
        self.cancelled = True


class NetworkLoop:
    """A selector loop on one daemon thread, shared by many desk units."""

    def __init__(self, name: str = "desk-loop") -> None:
        self.name = name
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._endpoints: dict[int, Endpoint] = {}
        self._sweep: list[int] = []  # endpoints (ids) still due for handle_misc in this sweep
        self._watched: dict[int, tuple[socket.socket, Endpoint, bool]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.iterations = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> NetworkLoop:
        """Start the loop thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the selector."""
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None
        with contextlib.suppress(Exception):
            self._selector.close()
        for sock in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()

    @property
    def running(self) -> bool:
        """True while the loop thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread."""
        return self._thread is threading.current_thread()

    # ------------------------------------------------------------------ scheduling (any thread)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop thread."""
        self._calls.append((callback, args))
        self._wake()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` on the loop thread after ``delay`` seconds."""
        handle = TimerHandle(time.monotonic() + max(0.0, delay), callback, args)
        if self.in_loop_thread():
            heapq.heappush(self._timers, (handle.when, next(self._seq), handle))
        else:
            self.call_soon(self._push_timer, handle)
        return handle

    def run_sync(self, callback: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``callback`` on the loop thread and return its result (directly if already there)."""
        if self.in_loop_thread() or not self.running:
            return callback()
        future: Future[T] = Future()

        def call() -> None:
            try:
                future.set_result(callback())
            except BaseException as err:  # handed to the caller, not swallowed
                future.set_exception(err)

        self.call_soon(call)
        return future.result(timeout)

    # ------------------------------------------------------------------ sockets (loop thread only)

    def add_endpoint(self, endpoint: Endpoint) -> None:
        """Give ``endpoint`` a ``handle_misc`` call every second."""
        self._endpoints[id(endpoint)] = endpoint

    def remove_endpoint(self, endpoint: Endpoint) -> None:
        """Stop the periodic ``handle_misc`` calls."""
        self._endpoints.pop(id(endpoint), None)

    def watch(self, sock: socket.socket, endpoint: Endpoint, want_write: bool = False) -> None:
        """Call ``endpoint`` when ``sock`` is readable (and writable while ``want_write``)."""
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
        key = id(sock)
        current = self._watched.get(key)
        if current is not None:
            if current[2] == want_write:
                return
            self._selector.modify(sock, events, endpoint)
        else:
            try:
                self._selector.register(sock, events, endpoint)
            except KeyError:
                # A socket closed without unwatch() left its fd behind; the new socket reuses it.
                self._prune_closed()
                self._selector.register(sock, events, endpoint)
        self._watched[key] = (sock, endpoint, want_write)

    def unwatch(self, sock: socket.socket) -> None:
        """Forget ``sock`` (safe after it was closed)."""
        if self._watched.pop(id(sock), None) is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(sock)

    @property
    def watched_count(self) -> int:
        """Number of sockets the loop waits on."""
        return len(self._watched)

    # ------------------------------------------------------------------ internals

    def _push_timer(self, handle: TimerHandle) -> None:
        heapq.heappush(self._timers, (handle.when, next(self._seq), handle))

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full wake pipe already means "wake up"
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _timeout(self, now: float, next_misc: float) -> float:
        if self._calls or self._sweep:
            return 0.0
        deadline = next_misc
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if self._timers:
            deadline = min(deadline, self._timers[0][0])
        return max(0.0, min(MAX_WAIT_S, deadline - now))

    def _run(self) -> None:
        next_misc = time.monotonic() + MISC_INTERVAL_S
        while not self._stopping.is_set():
            self.iterations += 1
            try:
                events = self._selector.select(self._timeout(time.monotonic(), next_misc))
            except (OSError, ValueError):
                logger.exception("selector failed; pruning closed sockets")
                self._prune_closed()
                events = []
            for key, mask in events:
                if key.data is None:
                    self._drain_wake()
                    continue
                self._guarded(key.data, mask)
            # Only the calls queued so far: a call that queues another cannot starve the sockets.
            for _ in range(len(self._calls)):
                callback, args = self._calls.popleft()
                self._invoke(callback, args)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _when, _seq, handle = heapq.heappop(self._timers)
                if not handle.cancelled:
                    self._invoke(handle.callback, handle.args)
            if now >= next_misc and not self._sweep:
                next_misc = now + MISC_INTERVAL_S
                self._sweep = list(self._endpoints)
            for _ in range(min(MISC_SLICE, len(self._sweep))):
                endpoint = self._endpoints.get(self._sweep.pop())
                if endpoint is not None:  # not removed meanwhile
                    self._invoke(endpoint.handle_misc, ())

    def _guarded(self, endpoint: Endpoint, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ:
                endpoint.handle_read()
            if mask & selectors.EVENT_WRITE:
                endpoint.handle_write()
        except Exception:
            logger.exception("desk endpoint failed while handling I/O")

    @staticmethod
    def _invoke(callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception:
            logger.exception("loop callback %r failed", callback)

    def _prune_closed(self) -> None:
        for key, (sock, _endpoint, _w) in list(self._watched.items()):
            if sock.fileno() < 0:
                self._watched.pop(key, None)
                with contextlib.suppress(Exception):
                    self._selector.unregister(sock)
        live = {id(sock) for sock, _e, _w in self._watched.values()}
        for selector_key in list(self._selector.get_map().values()):
            fileobj = selector_key.fileobj
            if fileobj is not self._wake_r and id(fileobj) not in live:
                with contextlib.suppress(Exception):
                    self._selector.unregister(fileobj)
