"""The server's event streams end when the server stops (issue 9): the kiosks' (EventHub)
and the web pages' (WebLive), open ones and any opened afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from central_system.api.schemas import Event
from central_system.server.events import EventHub
from central_system.server.web.live import WebLive


async def _drain(stream: AsyncIterator[str]) -> list[str]:
    return [chunk async for chunk in stream]


def test_closing_the_hub_ends_open_streams_after_what_was_queued_and_later_ones_at_once() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        hub = EventHub()
        hub.bind(asyncio.get_running_loop())
        open_stream = asyncio.create_task(_drain(hub.stream()))
        while hub.subscribers < 1:
            await asyncio.sleep(0)
        hub.on_faculty(7)
        await asyncio.sleep(0.01)
        hub.close()
        first = await asyncio.wait_for(open_stream, 5)
        later = await asyncio.wait_for(_drain(hub.stream([Event(kind="mqtt_state")])), 5)
        assert hub.subscribers == 0
        return first, later

    first, later = asyncio.run(scenario())
    assert first[0] == ": connected\n\n"
    assert any("event: faculty" in chunk for chunk in first)
    assert later[0] == ": connected\n\n" and "mqtt_state" in later[1] and len(later) == 2


def test_closing_web_live_ends_every_page_stream() -> None:
    async def scenario() -> list[str]:
        live = WebLive()
        pages = [asyncio.create_task(_drain(live.stream(lambda _e: True))) for _ in range(3)]
        while live.pages < 3:
            await asyncio.sleep(0)
        live.close()
        done = await asyncio.wait_for(asyncio.gather(*pages), 5)
        later = await asyncio.wait_for(_drain(live.stream(lambda _e: True)), 5)
        assert live.pages == 0
        return [chunk for page in done for chunk in page] + later

    chunks = asyncio.run(scenario())
    assert chunks == ["retry: 2000\n: connected\n\n"] * 4
