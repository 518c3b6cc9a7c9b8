"""The live event stream: controller and MQTT events fanned out to every subscriber.

Events come from the controllers' and the MQTT service's threads; they hop onto
the server's event loop (``call_soon_threadsafe``) and are put on each
subscriber's queue without waiting. A subscriber whose queue stays full (or grows far
past its bound in a burst) has fallen behind: it is sent one ``overflow`` event and
disconnected (it reconnects and reloads), never waited for (Home Assistant's websocket
API does the same).

A stream belongs to the kiosk or administrator session that opened it (its ``key``). It
ends when that caller loses access: at once when the server itself revokes the kiosk or
signs the session out (:meth:`EventHub.end_streams_of`), and otherwise at the next
keepalive, where each stream checks its token again (``still_allowed``: one indexed read
per stream every :data:`KEEPALIVE_S`, never per event), which catches a ``consultease
kiosk revoke`` run in another process and a session that expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Final

from ..api.schemas import Event

logger = logging.getLogger(__name__)

SUBSCRIBER_QUEUE: Final = 1000
# A burst can put more than SUBSCRIBER_QUEUE events on a queue before its stream has had a
# turn of the event loop (the MQTT service hands over a whole read of messages at once):
# that subscriber is not behind. It is when its queue stays at the bound this long, or
# grows to BURST_FACTOR times the bound.
STALL_S: Final = 2.0
BURST_FACTOR: Final = 20
# An SSE comment this often keeps proxies from closing an idle stream and lets a
# client notice a dead server within its read timeout; each stream checks its caller's
# token again as often (settings.server_keepalive_s).
KEEPALIVE_S: Final = 15.0
# Events already waiting when one is sent gather this long and go out as one ``batch``
# message: a burst costs a client one parse, not one per event (the kiosk's reader shares
# the interpreter lock with its screen).
BATCH_S: Final = 0.003
MAX_BATCH: Final = 500


class Subscriber:
    """One connected client's queue; ``None`` on it ends the stream (the server stops, or
    the caller lost access)."""

    def __init__(self, maxsize: int, key: Hashable = None) -> None:
        # Unbounded: the hub bounds it (``EventHub._fan_out``), by size and by time.
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.limit = maxsize
        self.key = key  # whose stream it is (``end_streams_of``)
        self.ended = False
        # When the queue last reached ``limit`` without its stream taking it below again.
        self.behind_since: float | None = None
        self.overflowed = False


class EventHub:
    """Fans events out to subscribers; thread-safe ``post`` from any thread."""

    def __init__(
        self, queue_size: int = SUBSCRIBER_QUEUE, keepalive_s: float = KEEPALIVE_S
    ) -> None:
        self.queue_size = queue_size
        self.keepalive_s = keepalive_s
        self._subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.posted = 0
        self.dropped_subscribers = 0
        self.closed = False
        # Events posted from other threads that the loop has not taken yet; one hand-over
        # is scheduled per burst, not one per event (each wakes the loop: issue 9).
        self._inbox: list[Event] = []
        self._inbox_lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop subscribers live on (the server's)."""
        with self._inbox_lock:
            self._inbox = []
        self._loop = loop

    @property
    def subscribers(self) -> int:
        """Connected subscribers now."""
        return len(self._subscribers)

    def post(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber (any thread; never blocks), in post order."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._inbox_lock:
            self._inbox.append(event)
            if len(self._inbox) > 1:
                return  # a hand-over is already scheduled and will take this one too
        try:
            loop.call_soon_threadsafe(self._take_inbox)
        except RuntimeError:  # the loop is closing: nothing will take them
            with self._inbox_lock:
                self._inbox = []

    def _take_inbox(self) -> None:
        with self._inbox_lock:
            events, self._inbox = self._inbox, []
        for event in events:
            self._fan_out(event)

    def _fan_out(self, event: Event) -> None:
        self.posted += 1
        now: float | None = None
        for sub in list(self._subscribers):
            if sub.overflowed or sub.ended:
                continue
            queue = sub.queue
            size = queue.qsize()
            if size >= sub.limit:
                now = now if now is not None else time.monotonic()
                if sub.behind_since is None:
                    sub.behind_since = now
                if size >= sub.limit * BURST_FACTOR or now - sub.behind_since > STALL_S:
                    sub.overflowed = True
                    self.dropped_subscribers += 1
                    # Its reader gets "overflow" next and ends the stream; what waited is moot
                    # (the client reloads what it shows).
                    with contextlib.suppress(asyncio.QueueEmpty):
                        while not queue.empty():
                            queue.get_nowait()
                    queue.put_nowait(Event(kind="overflow"))
                    continue
            queue.put_nowait(event)

    def close(self) -> None:
        """End every stream now and any opened later (on the loop, as the server stops).

        An open stream never ends by itself: without this uvicorn waits out its
        graceful-shutdown bound and cancels the streams with an error in the log.
        """
        self.closed = True
        for sub in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueEmpty):
                while sub.queue.full():  # room for the end marker; the stream is ending
                    sub.queue.get_nowait()
            sub.queue.put_nowait(None)

    def end_streams_of(self, key: Hashable) -> None:
        """End the open streams of one caller now: a revoked kiosk, a signed-out session
        (any thread; call it after the change is committed, so a reconnect is refused)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: the streams end anyway
            loop.call_soon_threadsafe(self._end, key)

    def _end(self, key: Hashable) -> None:
        for sub in list(self._subscribers):
            if sub.key == key and not sub.ended:
                sub.ended = True
                _end_queue(sub.queue)

    # ------------------------------------------------------------------ bridge interface
    # The facade's connect_events() calls these on the service threads.

    def on_consultation(
        self, consultation_id: int, status: str, faculty_id: int | None = None
    ) -> None:
        """A consultation changed status."""
        self.post(
            Event(kind="consultation", id=consultation_id, status=status, faculty_id=faculty_id)
        )

    def on_faculty(self, faculty_id: int) -> None:
        """A faculty member's status or desk liveness changed."""
        self.post(Event(kind="faculty", id=faculty_id))

    def on_mqtt_state(self, state: str) -> None:
        """The central MQTT connection's state changed."""
        self.post(Event(kind="mqtt_state", state=state))

    # ------------------------------------------------------------------ streams

    async def stream(
        self,
        first: list[Event] | None = None,
        *,
        key: Hashable = None,
        still_allowed: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[str]:
        """Server-sent events for one subscriber until it disconnects, falls behind or loses
        access: ``key`` names its caller (:meth:`end_streams_of`), ``still_allowed`` is
        awaited every keepalive and ends the stream when it answers False."""
        sub = Subscriber(self.queue_size, key)
        self._subscribers.add(sub)
        try:
            yield ": connected\n\n"
            for event in first or []:
                yield _sse(event)
            # The keepalive and the access check are due every keepalive_s, busy or idle (a
            # stream that always has events would otherwise never be checked).
            due = time.monotonic() + self.keepalive_s
            while not self.closed and not sub.ended:
                wait = due - time.monotonic()
                if wait <= 0:
                    if still_allowed is not None and not await still_allowed():
                        return
                    if sub.ended:
                        return
                    due = time.monotonic() + self.keepalive_s
                    yield ": keepalive\n\n"
                    continue
                try:
                    got = await asyncio.wait_for(sub.queue.get(), wait)
                except TimeoutError:
                    continue
                if got is None:
                    return
                batch = [got]
                if not sub.queue.empty():
                    # A burst: let it gather briefly, then send it as one message, the
                    # newest event per consultation or faculty member winning.
                    await asyncio.sleep(BATCH_S)
                    while not sub.queue.empty() and len(batch) < MAX_BATCH:
                        item = sub.queue.get_nowait()
                        if item is None:
                            break
                        batch.append(item)
                if sub.ended:  # the caller lost access while the burst gathered
                    return
                if sub.queue.qsize() < sub.limit:
                    sub.behind_since = None
                yield _sse_batch(batch)
                if self.closed or sub.ended or any(e.kind == "overflow" for e in batch):
                    return
        finally:
            self._subscribers.discard(sub)


def _end_queue(queue: asyncio.Queue[Event | None]) -> None:
    """Drop what waits on ``queue`` and put the end marker (``None``) on it."""
    with contextlib.suppress(asyncio.QueueEmpty):
        while not queue.empty():
            queue.get_nowait()
    queue.put_nowait(None)


def _sse(event: Event) -> str:
    return f"event: {event.kind}\ndata: {event.model_dump_json(exclude_none=True)}\n\n"


def _key(event: Event) -> tuple[str, int | None]:
    return (event.kind, event.id)


def _sse_batch(batch: list[Event]) -> str:
    """One event as itself; several as ``event: batch`` with a JSON array, newest per id."""
    if len(batch) == 1:
        return _sse(batch[0])
    newest: dict[tuple[str, int | None], Event] = {}
    for event in batch:
        newest.pop(_key(event), None)  # re-insert: the newest goes last, in order
        newest[_key(event)] = event
    items = ",".join(e.model_dump_json(exclude_none=True) for e in newest.values())
    return f"event: batch\ndata: [{items}]\n\n"
