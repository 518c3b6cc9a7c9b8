"""An open event stream ends when its caller loses access (issue 9: a revoked kiosk kept its
stream, authenticated once at connect): at once through ``EventHub.end_streams_of``, and
at the next keepalive through its ``still_allowed`` check, busy or idle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from central_system.api.schemas import Event
from central_system.server.events import EventHub


async def _drain(stream: AsyncIterator[str]) -> list[str]:
    return [chunk async for chunk in stream]


def test_ending_one_callers_streams_leaves_everyone_elses_open() -> None:
    async def scenario() -> tuple[list[str], int]:
        hub = EventHub()
        hub.bind(asyncio.get_running_loop())
        revoked = asyncio.create_task(_drain(hub.stream(key=("kiosk", 1))))
        other = asyncio.create_task(_drain(hub.stream(key=("kiosk", 2))))
        while hub.subscribers < 2:
            await asyncio.sleep(0)
        hub.on_faculty(7)
        await asyncio.sleep(0.01)
        hub.end_streams_of(("kiosk", 1))  # as a revoke on this server calls it
        chunks = await asyncio.wait_for(revoked, 2)
        assert not other.done() and hub.subscribers == 1
        hub.on_faculty(8)  # the other stream still gets events; the ended one does not
        await asyncio.sleep(0.01)
        hub.close()
        other_chunks = await asyncio.wait_for(other, 2)
        return chunks, sum("event: faculty" in c for c in other_chunks)

    chunks, other_events = asyncio.run(scenario())
    assert chunks[0] == ": connected\n\n" and sum("event: faculty" in c for c in chunks) == 1
    assert other_events == 2


def test_a_stream_whose_token_stops_working_ends_at_its_next_keepalive_even_when_busy() -> None:
    async def scenario(busy: bool) -> tuple[list[str], int, float]:
        hub = EventHub(keepalive_s=0.1)
        hub.bind(asyncio.get_running_loop())
        checks = 0
        allowed = True

        async def still_allowed() -> bool:
            nonlocal checks
            checks += 1
            return allowed

        stream = asyncio.create_task(_drain(hub.stream(key="k", still_allowed=still_allowed)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < 0.35:  # about three keepalives, all allowed
            if busy:
                hub.post(Event(kind="faculty", id=1))
            await asyncio.sleep(0.01)
        assert not stream.done()
        allowed = False
        revoked_at = loop.time()
        while not stream.done():
            if busy:
                hub.post(Event(kind="faculty", id=1))
            await asyncio.sleep(0.01)
        took = loop.time() - revoked_at
        return await stream, checks, took

    for busy in (False, True):
        chunks, checks, took = asyncio.run(scenario(busy))
        assert 3 <= checks <= 5, (busy, checks)
        assert took < 0.5, (busy, took)
        assert chunks.count(": keepalive\n\n") == checks - 1
        assert busy == any("event: faculty" in c for c in chunks)


def test_a_stream_ended_while_a_burst_gathers_sends_none_of_it() -> None:
    async def scenario() -> list[str]:
        hub = EventHub()
        hub.bind(asyncio.get_running_loop())
        stream = hub.stream(key="k")
        chunks = [await stream.__anext__()]
        for i in range(5):  # a burst: the stream takes the first and gathers the rest
            hub._fan_out(Event(kind="faculty", id=i))
        reader = asyncio.create_task(_drain(stream))
        (sub,) = hub._subscribers
        while sub.queue.qsize() == 5:  # the reader takes the first event, then gathers
            await asyncio.sleep(0)
        hub._end("k")
        return chunks + await asyncio.wait_for(reader, 2)

    assert asyncio.run(scenario()) == [": connected\n\n"]
