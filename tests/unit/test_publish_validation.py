"""publish_async refuses bad input with a clear exception and queues nothing (no network)."""

from __future__ import annotations

import json
import math

import pytest

from central_system.config import Settings
from central_system.services.async_mqtt_service import (
    AsyncMQTTService,
    PayloadTooLargeError,
    PublishValidationError,
    ServiceStoppedError,
    encode_payload,
    validate_topic_filter,
)


@pytest.fixture
def service(tmp_path) -> AsyncMQTTService:
    # Never started: validation happens on the caller's thread before anything is queued.
    return AsyncMQTTService(Settings(data_dir=tmp_path, mqtt_max_payload_bytes=2048))


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("", "non-empty"),
        ("a/+/b", "wildcards"),
        ("a/#", "wildcards"),
        ("a/\0b", "NUL"),
        ("$SYS/x", "reserved"),
        (None, "non-empty"),
        (42, "non-empty"),
    ],
)
def test_bad_topics_are_refused_and_nothing_is_queued(service, topic, reason):
    with pytest.raises(PublishValidationError, match=reason):
        service.publish_async(topic, {"a": 1})
    assert service.get_stats()["messages_queued"] == 0
    assert service.queue_size == 0


@pytest.mark.parametrize(
    "payload",
    [{"x": {1, 2}}, {"nan": math.nan}, object(), 12.5, None, "\ud800 lone surrogate"],
)
def test_unserialisable_payloads_are_refused(service, payload):
    with pytest.raises(PublishValidationError):
        service.publish_async("consultease/x", payload)
    assert service.queue_size == 0


def test_oversized_payload_is_refused(service):
    with pytest.raises(PayloadTooLargeError, match="maximum is 2048"):
        service.publish_async("consultease/x", "x" * 2049)
    assert service.queue_size == 0
    service.publish_async("consultease/x", "x" * 2048)
    assert service.queue_size == 1


def test_bad_qos_is_refused(service):
    with pytest.raises(PublishValidationError, match="qos"):
        service.publish_async("consultease/x", "a", qos=3)


def test_payload_encoding_rules():
    assert (
        encode_payload({"a": "é", "b": [1, 2]})
        == json.dumps({"a": "é", "b": [1, 2]}, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert encode_payload("CID:1 From:A (SID:2): hi") == b"CID:1 From:A (SID:2): hi"
    assert encode_payload(b"\x00\xff") == b"\x00\xff"
    assert encode_payload([1, "x"]) == b'[1,"x"]'


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "a+/b", "x\0"])
def test_bad_subscription_filters_are_refused(bad):
    with pytest.raises(PublishValidationError):
        validate_topic_filter(bad)


def test_publish_after_stop_raises(service):
    service.stop()
    with pytest.raises(ServiceStoppedError):
        service.publish_async("consultease/x", "a")


def test_accepted_messages_count_and_queue(service):
    handles = [service.publish_async(f"consultease/t/{i}", {"i": i}) for i in range(5)]
    assert [h.seq for h in handles] == [1, 2, 3, 4, 5]
    stats = service.get_stats()
    assert stats["messages_queued"] == 5
    assert stats["queue_size"] == 5
    assert stats["connected"] is False
