"""The plan's unit-level migration checks (plan: "tests/test_mqtt_migration.py"), on a real broker."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from central_system import topics
from central_system.services import async_mqtt_service as svcmod
from central_system.services.async_mqtt_service import get_async_mqtt_service
from central_system.services.mqtt_service import MQTTService
from central_system.utils.mqtt_utils import (
    get_mqtt_service,
    publish_mqtt_message,
    subscribe_to_topic,
)
from tests.integration.controller_helpers import (
    bring_desk_online,
    consultation_controller,
    running_app,
    seed,
    wait_until,
)
from tests.mqtt_probe import Probe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env_for(monkeypatch, broker, tmp_path):
    """Point the process settings (what get_async_mqtt_service() reads) at the test broker."""
    from central_system.config import reset_settings_cache

    monkeypatch.setenv("CONSULTEASE_MQTT_PORT", str(broker.port))
    monkeypatch.setenv("CONSULTEASE_MQTT_CLIENT_ID", f"migration-{tmp_path.name[-12:]}")
    monkeypatch.setenv("CONSULTEASE_DATABASE_URL", f"sqlite:///{tmp_path / 'plan.db'}")
    reset_settings_cache()
    return broker


def test_async_mqtt_publishing(env_for, topic_prefix):
    """Plan: publishing through the one service queues the message (and it really arrives)."""
    probe = Probe(env_for.port, [f"{topic_prefix}/#"])
    try:
        service = get_async_mqtt_service()
        service.start()
        handle = service.publish_async(f"{topic_prefix}/topic", {"test": "data"})
        assert service.get_stats()["messages_queued"] > 0
        assert handle.wait_acknowledged(15)
        assert probe.wait_for(
            lambda m: any(json.loads(x.payload) == {"test": "data"} for x in m), 10
        )
    finally:
        probe.close()


def test_mqtt_utils_use_the_one_service(env_for, topic_prefix):
    assert get_mqtt_service() is get_async_mqtt_service()
    got: list[bytes] = []
    unsubscribe = subscribe_to_topic(f"{topic_prefix}/in", lambda m: got.append(m.payload))
    get_mqtt_service().start()
    assert get_mqtt_service().wait_connected(10)
    handle = publish_mqtt_message(f"{topic_prefix}/in", "plain text", qos=1)
    assert handle.wait_acknowledged(10)
    assert wait_until(lambda: got == [b"plain text"], 10)
    unsubscribe()


def test_consultation_publishing(broker, make_settings, sqlite_url, topic_prefix):
    """Plan: ``_publish_consultation`` publishes to the three topics and returns True."""
    with running_app(make_settings(database_url=sqlite_url)) as app:
        data = seed(app, faculty_count=1)
        fid = data["faculty"][0].id
        bring_desk_online(broker.port, fid, app.controllers["faculty"])
        controller = consultation_controller(app)
        consultation = controller.create_consultation(
            data["students"][0].id, fid, "Please review my thesis outline", "CS 101"
        )
        probe = Probe(
            broker.port,
            [topics.consultation_topic(consultation.id), f"consultease/faculty/{fid}/+"],
            qos=2,
        )
        try:
            assert controller._publish_consultation(consultation) is True
            assert probe.wait_for(
                lambda m: (
                    {x.topic for x in m}
                    >= {
                        topics.consultation_topic(consultation.id),
                        topics.faculty_requests_topic(fid),
                        topics.faculty_messages_topic(fid),
                    }
                ),
                10,
            )
            text = next(x.payload for x in probe.messages if x.topic.endswith("/messages")).decode()
            assert re.fullmatch(
                # The course code leads the text (a firmware desk shows 125 bytes of it).
                rf"CID:{consultation.id} From:Maria Santos \(SID:\d+\): "
                r"\[CS 101\] Please review my thesis outline",
                text,
            )
            body = json.loads(
                next(x.payload for x in probe.messages if x.topic.endswith("/requests"))
            )
            assert {
                "id",
                "student_name",
                "student_id",
                "message",
                "timestamp",
                "status",
            } <= body.keys()
        finally:
            probe.close()


def test_old_service_is_deprecated_and_delegates(env_for):
    with pytest.warns(DeprecationWarning, match="MQTTService is deprecated"):
        old = MQTTService()
    assert old._service is get_async_mqtt_service()


def test_deprecation_warning_points_at_the_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MQTTService()
    assert caught and Path(caught[0].filename).name == Path(__file__).name  # stacklevel=2
    svcmod.reset_async_mqtt_service()


def test_main_starts_only_the_async_service():
    source = (ROOT / "central_system" / "main.py").read_text()
    assert "MQTTService(" not in source.replace("AsyncMQTTService", "")
    assert "services.mqtt_service import" not in source
