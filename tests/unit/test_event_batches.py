"""The event stream's batches: one message for a burst, newest per id, parsed back by the client."""

from __future__ import annotations

from central_system.api.client import _parse_sse
from central_system.api.schemas import Event
from central_system.server.events import _sse_batch


def _lines(text: str) -> list[str]:
    return text.split("\n")


def test_a_burst_goes_out_as_one_batch_with_the_newest_event_per_id_and_comes_back_in_order() -> (
    None
):
    burst = [
        Event(kind="consultation", id=1, status="pending"),
        Event(kind="faculty", id=7),
        Event(kind="consultation", id=1, status="accepted"),
        Event(kind="mqtt_state", state="connected"),
    ]
    message = _sse_batch(burst)
    assert message.startswith("event: batch\ndata: [")
    assert message.count("\n\n") == 1  # one message
    parsed = list(_parse_sse(iter(_lines(message))))
    assert [(e.kind, e.id, e.status, e.state) for e in parsed] == [
        ("faculty", 7, None, None),
        ("consultation", 1, "accepted", None),
        ("mqtt_state", None, None, "connected"),
    ]


def test_a_single_event_stays_a_plain_event_and_unknown_kinds_are_skipped() -> None:
    single = _sse_batch([Event(kind="faculty", id=3)])
    assert single.startswith("event: faculty\n")
    text = single + 'event: novelty\ndata: {"kind": "novelty", "id": 9}\n\n'
    assert [(e.kind, e.id) for e in _parse_sse(iter(_lines(text)))] == [("faculty", 3)]
