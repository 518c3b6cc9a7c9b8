"""A burst of events reaches the kiosk's screens in batches, not one at a time (issue 9).

The kiosk's event reader and its Qt thread share one interpreter lock; a burst of
10,000 events cost the reader a model per event and the Qt thread four Python slot
calls per event. Now a read of the stream goes to the bridge in a few ``on_changes``
calls and the bridge hands the screens one ``consultations_changed`` dict per slice.
These tests fail if either goes back to one call per event.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from central_system.api.client import SseParser
from central_system.kiosk.api_backend import YIELD_EVERY, ApiBackend


class RecordingBridge:
    """Stands in for the kiosk's bridge: records every call the reader makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[int, str]], list[int]]] = []
        self.states: list[str] = []

    def on_changes(self, consultations: Any, faculty: Any) -> None:
        self.calls.append((list(consultations), list(faculty)))

    def on_mqtt_state(self, state: str) -> None:
        self.states.append(state)


def _stream_read(events: list[dict[str, Any]]) -> bytes:
    return f"event: batch\ndata: {json.dumps(events)}\n\n".encode()


def test_a_read_of_the_stream_goes_to_the_bridge_in_a_few_calls_with_every_event_in_order() -> None:
    burst: list[dict[str, Any]] = [
        {"kind": "consultation", "id": i, "status": "pending"} for i in range(250)
    ]
    burst[10] = {"kind": "faculty", "id": 7}
    burst[20] = {"kind": "mqtt_state", "state": "connected"}
    burst[30] = {"kind": "novelty", "id": 1}  # a newer server's kind: skipped
    raw = SseParser().feed_raw(_stream_read(burst))
    assert all(isinstance(item, dict) for item in raw)  # no model per event
    assert len(raw) == 249

    backend = ApiBackend(client=None)  # type: ignore[arg-type]  # no calls are made
    bridge = RecordingBridge()
    backend._bridge = bridge
    backend._deliver(raw)

    assert len(bridge.calls) == -(-len(raw) // YIELD_EVERY)  # one per slice, not per event
    consultations = [c for cs, _ in bridge.calls for c in cs]
    expected = [i for i in range(250) if i not in (10, 20, 30)]
    assert consultations == [(i, "pending") for i in expected]
    assert [f for _, fs in bridge.calls for f in fs] == [7]
    assert bridge.states == ["connected"]


def test_the_bridge_hands_a_burst_to_the_screens_as_a_few_dicts_newest_status_winning(
    qtbot: Any,
) -> None:
    from central_system.views.bridge import MqttBridge

    bridge = MqttBridge()
    signals: list[dict[int, str]] = []
    faculty: list[int] = []
    bridge.consultations_changed.connect(lambda changes: signals.append(dict(changes)))
    bridge.faculty_changed.connect(faculty.append)
    posted = threading.Event()

    def reader() -> None:
        for start in range(0, 5000, 100):
            bridge.on_changes([(i, "pending") for i in range(start, start + 100)], [start])
        bridge.on_changes([(7, "accepted")], [])
        posted.set()

    threading.Thread(target=reader).start()
    qtbot.waitUntil(
        lambda: posted.is_set() and bridge.backlog == 0 and sum(map(len, signals)) >= 5000,
        timeout=20_000,
    )
    qtbot.wait(50)
    delivered: dict[int, str] = {}
    for changes in signals:
        delivered.update(changes)
    assert set(delivered) == set(range(5000))  # nothing lost
    assert delivered[7] == "accepted"  # the newest status wins
    assert sorted(faculty) == list(range(0, 5000, 100))
    # Batched: before, this was 5,000 signals of one change each.
    assert len(signals) < 500
    assert bridge.delivered == sum(map(len, signals)) + len(faculty)
