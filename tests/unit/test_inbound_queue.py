"""The inbound queue's policy: newest wins per coalescible topic, the rest is never lost, bounded."""

from __future__ import annotations

import threading

import pytest

from central_system.services.async_mqtt_service import INBOUND_POLICY, MQTTMessage, sender_of
from central_system.services.inbound_queue import InboundQueue


def _msg(topic: str, text: str) -> MQTTMessage:
    return MQTTMessage(topic, text.encode())


def test_a_newer_state_report_replaces_the_waiting_one_in_place() -> None:
    q: InboundQueue[MQTTMessage] = InboundQueue(100, 10_000)
    assert q.put(_msg("d/1/status", "AWAY"), True) is False
    assert q.put(_msg("d/2/responses", "ACK 7"), False) is False
    assert q.put(_msg("d/2/status", "AVAILABLE"), True) is False
    assert q.put(_msg("d/1/status", "AVAILABLE"), True) is True
    assert q.put(_msg("d/1/status", "AWAY!"), True) is True
    out = q.take(10)
    # d/1/status kept its first place and carries the newest payload, and says it replaced two.
    assert [(w.message.topic, w.message.payload, w.superseded) for w in out] == [
        ("d/1/status", b"AWAY!", 2),
        ("d/2/responses", b"ACK 7", 0),
        ("d/2/status", b"AVAILABLE", 0),
    ]
    assert len(q) == 0 and q.bytes == 0
    # Once taken, the next report on that topic waits again (it is not folded into a handled one).
    assert q.put(_msg("d/1/status", "AVAILABLE"), True) is False
    assert len(q) == 1


def test_a_senders_messages_are_taken_in_the_order_it_sent_them() -> None:
    # A desk's heartbeat waits, then its presence report, then a newer heartbeat: folded into
    # the first, the newer heartbeat would be handled before the presence it followed (its
    # uptime then seems to go backwards at the presence: a reboot that never happened).
    q: InboundQueue[MQTTMessage] = InboundQueue(100, 10_000)
    assert q.put(_msg("d/1/heartbeat", "uptime 10000"), True) is False
    assert q.put(_msg("d/1/status", "uptime 11000"), True) is False
    assert q.put(_msg("d/2/heartbeat", "uptime 5"), True) is False
    assert q.put(_msg("d/1/heartbeat", "uptime 11500"), True) is False
    assert q.put(_msg("d/1/heartbeat", "uptime 12000"), True) is True  # nothing between: folded
    assert q.put(_msg("d/2/heartbeat", "uptime 6"), True) is True
    out = [(w.message.topic, w.message.payload, w.superseded) for w in q.take(10)]
    assert out == [
        ("d/1/heartbeat", b"uptime 10000", 0),
        ("d/1/status", b"uptime 11000", 0),
        ("d/2/heartbeat", b"uptime 6", 1),
        ("d/1/heartbeat", b"uptime 12000", 1),
    ]
    assert len(q) == 0 and q.bytes == 0
    # Taken, each topic waits afresh.
    assert q.put(_msg("d/1/heartbeat", "uptime 12500"), True) is False
    assert q.put(_msg("d/1/heartbeat", "uptime 13000"), True) is True
    assert [w.message.payload for w in q.take(10)] == [b"uptime 13000"]


def test_a_response_is_never_overtaken_by_a_later_report_of_the_same_desk() -> None:
    q: InboundQueue[MQTTMessage] = InboundQueue(100, 10_000)
    q.put(_msg("d/1/status", "AVAILABLE"), True)
    q.put(_msg("d/1/responses", "ACK 7"), False)
    q.put(_msg("d/1/status", "AWAY"), True)
    got = [w.message.payload for w in q.take(10)]
    assert got == [b"AVAILABLE", b"ACK 7", b"AWAY"]


def test_a_desks_topics_and_its_legacy_status_topic_are_one_sender() -> None:
    desk = sender_of("consultease/faculty/3/heartbeat")
    assert sender_of("consultease/faculty/3/status") == desk
    assert sender_of("faculty/3/status") == desk  # the firmware's legacy copy of its presence
    assert sender_of("consultease/faculty/4/status") != desk
    q: InboundQueue[MQTTMessage] = InboundQueue(100, 10_000, sender_of)
    q.put(_msg("consultease/faculty/3/heartbeat", "1"), True)
    q.put(_msg("faculty/3/status", "2"), True)
    q.put(_msg("consultease/faculty/3/heartbeat", "3"), True)
    assert [w.message.payload for w in q.take(10)] == [b"1", b"2", b"3"]


def test_messages_that_do_not_coalesce_are_all_kept_in_order() -> None:
    q: InboundQueue[MQTTMessage] = InboundQueue(10_000, 10_000_000)
    for i in range(5000):
        assert q.put(_msg("d/1/responses", f"ACK {i}"), False) is False
    got = [w.message.payload for w in q.take(10_000)]
    assert got == [f"ACK {i}".encode() for i in range(5000)]


def test_the_reader_pauses_at_the_bound_and_resumes_below_nine_tenths() -> None:
    q: InboundQueue[MQTTMessage] = InboundQueue(100, 1_000_000)
    for i in range(99):
        q.put(_msg(f"d/{i}/responses", "x"), False)
    assert q.full() is False
    q.put(_msg("d/99/responses", "x"), False)
    assert q.full() is True and q.paused
    q.take(5)  # 95 left: still above 90
    assert q.full() is True
    q.take(5)  # 90 left
    assert q.full() is False and not q.paused


def test_the_byte_bound_pauses_too_and_bytes_follow_replacements() -> None:
    q: InboundQueue[MQTTMessage] = InboundQueue(1000, 100)
    q.put(_msg("d/1/status", "a" * 10), True)
    q.put(_msg("d/1/status", "b" * 60), True)
    assert q.bytes == 60 and len(q) == 1
    assert q.full() is False
    q.put(_msg("d/2/status", "c" * 40), True)
    assert q.bytes == 100 and q.full() is True
    q.take(1)
    assert q.bytes == 40 and q.full() is False


def test_concurrent_put_and_take_lose_nothing() -> None:
    q: InboundQueue[MQTTMessage] = InboundQueue(1_000_000, 1 << 30)
    taken: list[MQTTMessage] = []
    done = threading.Event()

    def consumer() -> None:
        while not done.is_set() or len(q):
            taken.extend(w.message for w in q.take(64))

    thread = threading.Thread(target=consumer)
    thread.start()
    for i in range(20_000):
        q.put(_msg(f"d/{i % 7}/responses", str(i)), False)
    done.set()
    thread.join(10)
    assert sorted(int(m.payload) for m in taken) == list(range(20_000))


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        InboundQueue(0, 10)


def test_the_policy_text_names_what_is_never_dropped() -> None:
    assert "never replaced or dropped" in INBOUND_POLICY
    assert "superseded" in INBOUND_POLICY
