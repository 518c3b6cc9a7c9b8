"""Live updates for open pages: controller events, filtered per person, as server-sent events.

The server's ``EventHub`` serves every kiosk and administrator; a faculty page must
see only its own faculty member's requests, so the web keeps its own small
fan-out with a filter per subscriber. Like the hub it never waits for a slow
browser: a bounded queue per page, and one that falls behind is sent
``overflow`` and closed (the page reloads its data when it reconnects).

A page's stream belongs to the browser session that opened it (its ``key``) and, like
the hub's, ends when that session stops working: at once when this server signs it out
(:meth:`WebLive.end_streams_of`), otherwise at the next keepalive, where each stream
checks its session again (``still_allowed``: one indexed read per stream every
``keepalive_s``, never per event), which catches an expired session, a deactivated
account and a sign-out on another server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, Final

QUEUE_SIZE: Final = 200
# A comment this often keeps proxies from closing an idle stream; each stream checks its
# session again as often (settings.server_keepalive_s, the API stream's setting).
KEEPALIVE_S: Final = 15.0

Event = dict[str, Any]
Predicate = Callable[[Event], bool]


class _Page:
    def __init__(self, wants: Predicate, key: Hashable, loop: asyncio.AbstractEventLoop) -> None:
        self.wants = wants
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)  # None: the end
        self.overflowed = False
        self.key = key  # whose stream it is (``end_streams_of``)
        self.loop = loop  # the loop its stream runs on (the only one to touch its queue)
        self.ended = False


class WebLive:
    """Listens to the active system's controllers and fans their events out to open pages."""

    def __init__(self, keepalive_s: float = KEEPALIVE_S) -> None:
        self.keepalive_s = keepalive_s
        self._pages: set[_Page] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attached: Any = None
        self._removers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.closed = False

    @property
    def pages(self) -> int:
        """Pages connected now."""
        return len(self._pages)

    def attach(self, backend: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Listen to ``backend``'s controllers (once per active system)."""
        with self._lock:
            self._loop = loop
            if self._attached is backend:
                return
            self.detach_locked()
            self._attached = backend
            consultations = backend._controller("consultation")
            faculty = backend._controller("faculty")
            self._removers.append(consultations.add_listener(self._on_consultation))
            self._removers.append(faculty.add_listener(self._on_faculty))

    def detach_locked(self) -> None:
        """Stop listening (the lock is held)."""
        while self._removers:
            with contextlib.suppress(Exception):
                self._removers.pop()()
        self._attached = None

    def _on_consultation(self, event: Any) -> None:
        self.post(
            {
                "kind": "consultation",
                "id": event.consultation_id,
                "faculty_id": event.faculty_id,
                "status": event.status,
            }
        )

    def _on_faculty(self, event: Any) -> None:
        self.post({"kind": "faculty", "faculty_id": event.faculty_id})

    def post(self, event: Event) -> None:
        """Deliver ``event`` to every page that wants it (any thread; never blocks)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._fan_out, event)

    def _fan_out(self, event: Event) -> None:
        for page in list(self._pages):
            if page.overflowed or page.ended or not page.wants(event):
                continue
            try:
                page.queue.put_nowait(event)
            except asyncio.QueueFull:
                page.overflowed = True
                with contextlib.suppress(asyncio.QueueEmpty):
                    page.queue.get_nowait()
                page.queue.put_nowait({"kind": "overflow"})

    def close(self) -> None:
        """End every page's stream now and any opened later (on the loop, as the server
        stops; the page's EventSource reconnects to whichever server answers next)."""
        self.closed = True
        for page in list(self._pages):
            with contextlib.suppress(asyncio.QueueEmpty):
                while page.queue.full():
                    page.queue.get_nowait()
            page.queue.put_nowait(None)

    def end_streams_of(self, key: Hashable) -> None:
        """End the open streams of one browser session now: it was signed out (any thread;
        call it after the change is committed, so the page's reconnect is refused)."""
        for page in list(self._pages):  # a copy: pages come and go on the loop meanwhile
            if page.key == key:
                with contextlib.suppress(RuntimeError):  # its loop is closing: it ends anyway
                    page.loop.call_soon_threadsafe(_end, page)

    async def stream(
        self,
        wants: Predicate,
        *,
        key: Hashable = None,
        still_allowed: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[str]:
        """Server-sent events for one page until it goes away, falls behind or its session
        stops working: ``key`` names the session (:meth:`end_streams_of`), ``still_allowed``
        is awaited every keepalive and ends the stream when it answers False."""
        page = _Page(wants, key, asyncio.get_running_loop())
        self._pages.add(page)
        try:
            yield "retry: 2000\n: connected\n\n"
            # The keepalive and the session check are due every keepalive_s, busy or idle (a
            # page that always has events would otherwise never be checked).
            due = time.monotonic() + self.keepalive_s
            while not self.closed and not page.ended:
                wait = due - time.monotonic()
                if wait <= 0:
                    if still_allowed is not None and not await still_allowed():
                        return
                    if page.ended:
                        return
                    due = time.monotonic() + self.keepalive_s
                    yield ": keepalive\n\n"
                    continue
                try:
                    event = await asyncio.wait_for(page.queue.get(), wait)
                except TimeoutError:
                    continue
                if event is None or page.ended:
                    return
                yield f"event: {event['kind']}\ndata: {json.dumps(event)}\n\n"
                if event["kind"] == "overflow":
                    return
        finally:
            self._pages.discard(page)


def _end(page: _Page) -> None:
    """End one page's stream (on its loop): drop what waits and put the end marker."""
    if page.ended:
        return
    page.ended = True
    with contextlib.suppress(asyncio.QueueEmpty):
        while not page.queue.empty():
            page.queue.get_nowait()
    page.queue.put_nowait(None)
