"""Live updates for open pages: controller events, filtered per person, as server-sent events.

The server's ``EventHub`` serves every kiosk and administrator; a faculty page must
see only its own faculty member's requests, so the web keeps its own small
fan-out with a filter per subscriber. Like the hub it never waits for a slow
browser: a bounded queue per page, and one that falls behind is sent
``overflow`` and closed (the page reloads its data when it reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

QUEUE_SIZE: Final = 200
KEEPALIVE_S: Final = 15.0

Event = dict[str, Any]
Predicate = Callable[[Event], bool]


class _Page:
    def __init__(self, wants: Predicate) -> None:
        self.wants = wants
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)  # None: the end
        self.overflowed = False


class WebLive:
    """Listens to the active system's controllers and fans their events out to open pages."""

    def __init__(self) -> None:
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
            if page.overflowed or not page.wants(event):
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

    async def stream(self, wants: Predicate) -> AsyncIterator[str]:
        """Server-sent events for one page until it goes away or falls behind."""
        page = _Page(wants)
        self._pages.add(page)
        try:
            yield "retry: 2000\n: connected\n\n"
            while not self.closed:
                try:
                    event = await asyncio.wait_for(page.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if event is None:
                    return
                yield f"event: {event['kind']}\ndata: {json.dumps(event)}\n\n"
                if event["kind"] == "overflow":
                    return
        finally:
            self._pages.discard(page)
