"""A desk whose faculty is not in the database is reported once per desk per interval, without payloads.

The central system runs headless on a real Mosquitto and a real database (SQLite and
PostgreSQL); the desks are the deployed firmware's messages from a raw MQTT client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central_system import topics
from central_system.controllers import schemas
from central_system.controllers.schemas import UnknownDeskLog, inbound_stats
from tests.brokers import MosquittoBroker
from tests.integration.controller_helpers import (
    heartbeat_payload,
    presence_payload,
    running_app,
    wait_until,
)

LOGGER = "central_system.controllers.schemas"


def _unknown_reports(caplog: pytest.LogCaptureFixture, fid: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and f"reports as faculty {fid}," in r.getMessage()
    ]


def _firmware(port: int) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    return client


def _send_like_a_desk(client: paho.Client, fid: int, rounds: int) -> int:
    """Presence on both topics and a heartbeat, ``rounds`` times (QoS 0, as the firmware). Returns the count."""
    sent = 0
    for n in range(rounds):
        # Each one different (its millisecond timestamp, its uptime), as a real desk's are.
        presence = {**json.loads(presence_payload(fid)), "timestamp": 1000 + n}
        heartbeat = {**json.loads(heartbeat_payload(fid)), "uptime": 1000 + n}
        for topic, payload in (
            (topics.faculty_status_topic(fid), presence),
            (topics.legacy_faculty_status_topic(fid), presence),
            (topics.faculty_heartbeat_topic(fid), heartbeat),
        ):
            client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
            sent += 1
    return sent


def test_unknown_desks_are_logged_once_per_desk_per_interval(
    broker: MosquittoBroker,
    make_settings: Callable[..., Any],
    db_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schemas, "UNKNOWN_DESK_LOG_INTERVAL_S", 3600.0)
    schemas.unknown_desk_log.reset()
    inbound_stats.reset()
    caplog.set_level(logging.INFO)
    with running_app(make_settings(database_url=db_url)) as app:
        service = app.async_mqtt_service

        def handled() -> int:
            # A burst of presences on one topic coalesces: the newest wins, the others are
            # counted as superseded and never reach a handler (the service's inbound policy).
            superseded = int(service.get_stats()["inbound_superseded"])
            return inbound_stats.dropped.get("unknown_faculty", 0) + superseded - baseline

        baseline = 0
        desk = _firmware(broker.port)
        try:
            # Wait until the central's subscriptions are active (one warm-up desk), then count.
            assert wait_until(
                lambda: (
                    _send_like_a_desk(desk, 900, 1) > 0
                    and inbound_stats.dropped.get("unknown_faculty", 0) > 0
                ),
                timeout=20,
                interval=0.2,
            )
            wait_until(lambda: False, timeout=0.5)  # the warm-up's stragglers arrive
            inbound_stats.reset()
            baseline = int(service.get_stats()["inbound_superseded"])
            schemas.unknown_desk_log.reset()
            caplog.clear()
            sent = _send_like_a_desk(desk, 901, 10) + _send_like_a_desk(desk, 902, 3)
            assert wait_until(lambda: handled() >= sent, timeout=20), inbound_stats.snapshot()
            dropped = inbound_stats.dropped["unknown_faculty"]
        finally:
            desk.loop_stop()
            desk.disconnect()
    # Every message handled was counted as dropped; one line per desk, however many it sent.
    assert dropped > 6  # many messages per desk reached the handlers, not just the first
    assert inbound_stats.dropped["unknown_faculty"] == dropped
    first, second = _unknown_reports(caplog, 901), _unknown_reports(caplog, 902)
    assert len(first) == 1 and len(second) == 1, (first, second)
    assert "scripts/consultease faculty add" in first[0]
    # No payload in the log: nothing of the presence JSON appears.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER)
    assert "faculty_name" not in logged and "Dr. Cruz" not in logged and "free_heap" not in logged


def test_the_next_report_says_how_many_were_dropped_since() -> None:
    now = [1000.0]
    log = UnknownDeskLog(interval_s=60.0, clock=lambda: now[0])
    assert log.report(7, "consultease/faculty/7/status")
    for _ in range(4):
        assert not log.report(7, "faculty/7/status")
    assert log.report(8, "consultease/faculty/8/status")  # another desk has its own interval
    now[0] += 59.0
    assert not log.report(7, "consultease/faculty/7/heartbeat")
    now[0] += 1.0
    logger = logging.getLogger(LOGGER)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        assert log.report(7, "consultease/faculty/7/status")
    finally:
        logger.removeHandler(handler)
    (record,) = records
    text = record.getMessage()
    assert "5 more dropped since the last report" in text
    assert "consultease/faculty/7/heartbeat" in text and "faculty/7/status" in text


def test_a_flood_of_made_up_faculty_ids_is_not_one_warning_each() -> None:
    """Anyone may publish as any desk in the anonymous transition mode: ever-new ids stay rare."""
    now = [1000.0]
    log = UnknownDeskLog(interval_s=60.0, clock=lambda: now[0])
    logged = [fid for fid in range(1, 5001) if log.report(fid, f"faculty/{fid}/status")]
    assert logged == list(range(1, schemas.UNKNOWN_DESK_MAX_NEW_PER_INTERVAL + 1))
    # The first unreported desk is reported in the next interval, with what it dropped.
    unreported = schemas.UNKNOWN_DESK_MAX_NEW_PER_INTERVAL + 1
    now[0] += 60.0
    assert log.report(unreported, f"faculty/{unreported}/heartbeat")
    assert log.report(9_000_001, "faculty/9000001/status")  # a new interval: new desks again
