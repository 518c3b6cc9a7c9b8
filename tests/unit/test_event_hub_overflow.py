"""The event hub's rule for a subscriber that falls behind (central_system/server/events.py).

A burst bigger than a subscriber's queue bound, handed over in one turn of the event loop
(the MQTT service passes a whole read of messages at once), is not falling behind: every
event arrives. A subscriber whose queue grows far past the bound, or stays at it, gets
one ``overflow`` event and its stream ends. (Found by benchmarks/ui_responsiveness.py:
3,205 of 10,000 events arrived before the rule.)
"""

from __future__ import annotations

import asyncio
import json

import pytest

from central_system.api.schemas import Event
from central_system.server import events as events_mod
from central_system.server.events import BURST_FACTOR, EventHub


def _kinds_and_ids(messages: list[str]) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for message in messages:
        if message.startswith(":"):
            continue
        _head, data = message.strip().split("\n", 1)
        payload = json.loads(data.removeprefix("data: "))
        for item in payload if isinstance(payload, list) else [payload]:
            out.append((item["kind"], item.get("id")))
    return out


async def _collect(hub: EventHub, burst: int) -> list[str]:
    hub.bind(asyncio.get_running_loop())
    stream = hub.stream()
    messages = [await stream.__anext__()]  # ": connected": the subscriber is registered
    for i in range(burst):  # one turn of the loop: the stream gets no chance to read
        hub._fan_out(Event(kind="faculty", id=i))
    got = 0
    while got < burst:
        message = await asyncio.wait_for(stream.__anext__(), 5)
        messages.append(message)
        got = len(_kinds_and_ids(messages))
        if "overflow" in message:
            break
    await stream.aclose()
    return messages


def test_a_burst_past_the_queue_bound_in_one_turn_is_delivered_whole() -> None:
    hub = EventHub(queue_size=10)
    burst = 10 * (BURST_FACTOR - 1)  # 190 events on a queue bounded at 10
    messages = asyncio.run(_collect(hub, burst))
    assert _kinds_and_ids(messages) == [("faculty", i) for i in range(burst)]
    assert hub.dropped_subscribers == 0


def test_a_queue_far_past_its_bound_ends_the_stream_with_overflow() -> None:
    hub = EventHub(queue_size=10)
    messages = asyncio.run(_collect(hub, 10 * BURST_FACTOR + 5))
    assert _kinds_and_ids(messages)[-1] == ("overflow", None)
    assert hub.dropped_subscribers == 1


def test_a_queue_that_stays_at_its_bound_ends_the_stream_with_overflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events_mod, "STALL_S", 0.05)

    async def scenario() -> list[str]:
        hub = EventHub(queue_size=10)
        hub.bind(asyncio.get_running_loop())
        stream = hub.stream()
        messages = [await stream.__anext__()]
        for i in range(11):  # the 11th finds the queue at its bound: noted, not dropped
            hub._fan_out(Event(kind="faculty", id=i))
        assert hub.dropped_subscribers == 0
        await asyncio.sleep(0.1)  # the reader takes nothing for longer than STALL_S
        hub._fan_out(Event(kind="faculty", id=11))
        assert hub.dropped_subscribers == 1
        messages.append(await asyncio.wait_for(stream.__anext__(), 5))
        await stream.aclose()
        return messages

    assert _kinds_and_ids(asyncio.run(scenario())) == [("overflow", None)]


def test_events_posted_from_another_thread_wake_the_loop_once_per_burst_and_keep_their_order() -> (
    None
):
    """Each wake of the server's loop costs it a turn: a burst posted while the loop is
    busy is handed over with one ``call_soon_threadsafe``, not one per event (issue 9)."""
    import threading

    async def run() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        wakes = {"n": 0}
        original = loop.call_soon_threadsafe

        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            wakes["n"] += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        hub = EventHub()
        hub.bind(loop)
        stream = hub.stream()
        messages = [await stream.__anext__()]
        # The loop is busy (blocked here) while another thread posts 500 events.
        poster = threading.Thread(target=lambda: [hub.on_faculty(i) for i in range(500)])
        poster.start()
        poster.join()
        while len(_kinds_and_ids(messages)) < 500:
            messages.append(await asyncio.wait_for(stream.__anext__(), 5))
        await stream.aclose()
        return messages, wakes["n"]

    messages, wakes = asyncio.run(run())
    assert _kinds_and_ids(messages) == [("faculty", i) for i in range(500)]
    assert wakes == 1
