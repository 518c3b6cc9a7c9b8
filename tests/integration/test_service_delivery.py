"""The async MQTT service against a real Mosquitto: delivery, handlers, durability states."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import func, select

from central_system import db as dbmod
from central_system.models import OutboxMessage
from central_system.services.async_mqtt_service import AsyncMQTTService, MQTTMessage
from tests.brokers import MosquittoBroker
from tests.integration.service_helpers import running_service, wait_until
from tests.mqtt_probe import Probe, publish_raw


def outbox_count() -> int:
    with dbmod.get_engine().connect() as conn:
        return int(conn.execute(select(func.count()).select_from(OutboxMessage)).scalar_one())


def test_messages_arrive_in_order_and_outbox_empties(broker, make_settings, db_url, topic_prefix):
    probe = Probe(broker.port, [f"{topic_prefix}/#"])
    try:
        with running_service(make_settings(), db_url) as svc:
            handles = [svc.publish_async(f"{topic_prefix}/seq", {"n": i}) for i in range(500)]
            assert handles[-1].wait_acknowledged(20)
            assert all(h.wait_persisted(1) for h in handles)
            assert probe.wait_for(lambda m: len(m) >= 500, 20)
            got = [json.loads(p)["n"] for p in probe.payloads()]
            assert got == list(range(500))  # in order per topic, no duplicates on a healthy broker
            assert wait_until(lambda: outbox_count() == 0, 10)
            stats = svc.get_stats()
            assert stats["messages_queued"] == 500
            assert stats["messages_published"] >= 500
            assert stats["queue_size"] == 0
    finally:
        probe.close()


def test_text_bytes_and_qos2_payloads_arrive_unchanged(
    broker, make_settings, sqlite_url, topic_prefix
):
    probe = Probe(broker.port, [f"{topic_prefix}/#"], qos=2)
    try:
        with running_service(make_settings(), sqlite_url) as svc:
            svc.publish_async(f"{topic_prefix}/text", "CID:1 From:Añа (SID:2): héllo", qos=2)
            svc.publish_async(f"{topic_prefix}/bytes", b"\x00\x01\xff", qos=1)
            svc.publish_async(f"{topic_prefix}/q0", {"a": 1}, qos=0)
            assert probe.wait_for(lambda m: len(m) >= 3, 10)
            by_topic = {m.topic.rsplit("/", 1)[1]: m.payload for m in probe.messages}
            assert by_topic["text"] == "CID:1 From:Añа (SID:2): héllo".encode()
            assert by_topic["bytes"] == b"\x00\x01\xff"
            assert by_topic["q0"] == b'{"a":1}'
    finally:
        probe.close()


def test_handlers_several_per_filter_wildcards_isolation_and_unsubscribe(
    broker, make_settings, sqlite_url, topic_prefix
):
    calls: dict[str, list[str]] = {"a": [], "b": [], "plus": [], "hash": [], "bad": []}
    lock = threading.Lock()

    def recorder(name):
        def handler(msg: MQTTMessage) -> None:
            with lock:
                calls[name].append(msg.topic)

        return handler

    def raising(msg: MQTTMessage) -> None:
        calls["bad"].append(msg.topic)
        raise RuntimeError("handler bug")

    with running_service(make_settings(), sqlite_url) as svc:
        exact = f"{topic_prefix}/faculty/1/status"
        svc.subscribe(exact, raising)
        unsub_a = svc.subscribe(exact, recorder("a"))
        svc.subscribe(exact, recorder("b"))
        svc.subscribe(f"{topic_prefix}/faculty/+/status", recorder("plus"))
        svc.subscribe(f"{topic_prefix}/#", recorder("hash"))
        time.sleep(0.5)  # SUBACK
        publish_raw(broker.port, exact, b"{}")
        publish_raw(broker.port, f"{topic_prefix}/faculty/2/status", b"{}")
        publish_raw(broker.port, f"{topic_prefix}/other", b"x")
        assert wait_until(lambda: len(calls["hash"]) == 3, 10)
        assert calls["a"] == [exact] and calls["b"] == [
            exact
        ]  # the raising handler did not stop them
        assert calls["bad"] == [exact]
        assert sorted(calls["plus"]) == sorted([exact, f"{topic_prefix}/faculty/2/status"])
        assert svc.get_stats()["handler_errors"] == 1

        unsub_a()
        unsub_a()  # idempotent: removes exactly one handler, once
        publish_raw(broker.port, exact, b"{}")
        assert wait_until(lambda: len(calls["b"]) == 2, 10)
        assert calls["a"] == [exact]  # removed
        assert len(calls["bad"]) == 2  # others on the same filter stay


def test_slow_handler_does_not_stall_the_connection(
    broker, make_settings, sqlite_url, topic_prefix
):
    release = threading.Event()
    with running_service(make_settings(mqtt_keepalive=5), sqlite_url) as svc:
        svc.subscribe(f"{topic_prefix}/slow", lambda m: release.wait(8))
        time.sleep(0.3)
        publish_raw(broker.port, f"{topic_prefix}/slow", b"x")
        time.sleep(0.3)
        # The handler is blocked, yet publishing is acknowledged: handlers run off the network thread.
        handle = svc.publish_async(f"{topic_prefix}/other", "y")
        assert handle.wait_acknowledged(5)
        release.set()


def test_broker_down_at_start_then_everything_arrives(make_settings, sqlite_url, topic_prefix):
    broker = MosquittoBroker(persistence=True)
    # Give the probe a persistent session first, so the broker keeps its messages while it connects.
    broker.start()
    probe = Probe(broker.port, [f"{topic_prefix}/#"], client_id="probe-down-at-start", clean=False)
    probe.close()
    broker.stop()  # clean shutdown writes the persistent session
    try:
        settings = make_settings(mqtt_port=broker.port)
        with running_service(settings, sqlite_url, connect=False) as svc:
            t0 = time.perf_counter()
            handles = [svc.publish_async(f"{topic_prefix}/m", {"n": i}) for i in range(300)]
            elapsed = time.perf_counter() - t0
            assert elapsed < 1.0  # never blocks on a dead broker (generous bound)
            assert all(h.wait_persisted(10) for h in handles)
            assert not svc.is_connected
            assert svc.get_stats()["queue_size"] == 300
            time.sleep(1.0)
            broker.start()
            assert svc.wait_connected(20)
            assert handles[-1].wait_acknowledged(20)
            probe = Probe(
                broker.port, [f"{topic_prefix}/#"], client_id="probe-down-at-start", clean=False
            )
            assert probe.wait_for(lambda m: len({json.loads(x.payload)["n"] for x in m}) == 300, 20)
            probe.close()
    finally:
        broker.cleanup()


def test_retained_messages_coalesce_while_waiting(make_settings, sqlite_url, topic_prefix):
    broker = MosquittoBroker()
    try:
        with running_service(
            make_settings(mqtt_port=broker.port), sqlite_url, connect=False
        ) as svc:
            handles = [
                svc.publish_async(f"{topic_prefix}/state", {"v": i}, retain=True) for i in range(50)
            ]
            assert handles[-1].wait_persisted(10)
            assert wait_until(lambda: svc.get_stats()["coalesced_messages"] == 49, 5)
            assert svc.queue_size == 1
            assert handles[0].dropped and not handles[-1].dropped
            broker.start()
            assert handles[-1].wait_acknowledged(20)
            probe = Probe(broker.port, [f"{topic_prefix}/state"])
            assert probe.wait_for(lambda m: len(m) == 1, 10)
            assert json.loads(probe.messages[0].payload) == {"v": 49}
            probe.close()
            assert wait_until(lambda: outbox_count() == 0, 10)
    finally:
        broker.cleanup()


def test_backlog_bound_drops_oldest_counted_and_logged(
    make_settings, sqlite_url, topic_prefix, caplog
):
    # No broker at all on that port: the backlog can only grow.
    with running_service(
        make_settings(mqtt_port=1, mqtt_max_backlog=100), sqlite_url, connect=False
    ) as svc:
        handles = [svc.publish_async(f"{topic_prefix}/m", {"n": i}) for i in range(150)]
        assert wait_until(lambda: svc.get_stats()["dropped_messages"] == 50, 10)
        assert svc.queue_size == 100
        assert handles[0].dropped and not handles[-1].dropped
        assert not handles[0].wait_acknowledged(0.1)
        assert wait_until(lambda: outbox_count() == 100, 10)
    assert any("dropped" in r.getMessage() for r in caplog.records)


def test_mqtt_311_protocol_setting_and_no_local_echo_suppression(
    broker, make_settings, sqlite_url, topic_prefix
):
    seen_all: list[bytes] = []
    seen_remote: list[bytes] = []
    with running_service(make_settings(mqtt_protocol="3.1.1"), sqlite_url) as svc:
        assert svc.protocol == "3.1.1"
        topic = f"{topic_prefix}/faculty/3/status"
        svc.subscribe(topic, lambda m: seen_all.append(m.payload))
        svc.subscribe(topic, lambda m: seen_remote.append(m.payload), no_local=True)
        time.sleep(0.3)
        svc.publish_async(topic, {"source": "central"}).wait_acknowledged(5)
        publish_raw(broker.port, topic, b'{"from":"desk"}')
        assert wait_until(lambda: len(seen_all) == 2, 10)
        time.sleep(0.2)
        assert seen_remote == [b'{"from":"desk"}']


def test_mqtt5_no_local(broker, make_settings, sqlite_url, topic_prefix):
    seen_remote: list[bytes] = []
    with running_service(make_settings(mqtt_protocol="5"), sqlite_url) as svc:
        assert svc.protocol == "5"
        topic = f"{topic_prefix}/faculty/4/status"
        svc.subscribe(topic, lambda m: seen_remote.append(m.payload), no_local=True)
        time.sleep(0.3)
        svc.publish_async(topic, {"source": "central"}).wait_acknowledged(5)
        publish_raw(broker.port, topic, b'{"from":"desk"}')
        assert wait_until(lambda: len(seen_remote) == 1, 10)
        time.sleep(0.3)
        assert seen_remote == [b'{"from":"desk"}']


def test_last_will_and_online_status(broker, make_settings, sqlite_url):
    settings = make_settings()
    status_topic = f"consultease/system/central/{settings.mqtt_client_id}/status"
    probe = Probe(broker.port, [status_topic])
    try:
        svc = AsyncMQTTService(settings, dbmod.init_db(sqlite_url))
        svc.start()
        assert svc.wait_connected(10)
        assert probe.wait_for(lambda m: m and m[-1].payload == b"online", 10)
        broker_side_kill = (
            svc._client.socket()
        )  # simulate a crash: the socket dies without DISCONNECT
        broker_side_kill.close()
        assert probe.wait_for(lambda m: any(x.payload == b"offline" for x in m), 10)
        assert svc.wait_connected(15)  # and it comes back
        assert probe.wait_for(lambda m: m[-1].payload == b"online", 10)
        assert svc.get_stats()["reconnects"] >= 1
        svc.stop()
        assert probe.wait_for(lambda m: m[-1].payload == b"offline", 10)
    finally:
        probe.close()


@pytest.mark.parametrize("protocol", ["auto"])
def test_embedded_amqtt_broker_works_with_auto_protocol(
    protocol, sqlite_url, tmp_path, topic_prefix
):
    from central_system.config import Settings
    from central_system.services.embedded_broker import EmbeddedBroker

    embedded = EmbeddedBroker().start()
    try:
        settings = Settings(
            data_dir=tmp_path,
            mqtt_port=embedded.port,
            mqtt_protocol=protocol,
            mqtt_client_id="amqtt-t",
        )
        got: list[bytes] = []
        with running_service(settings, sqlite_url, connect=False) as svc:
            svc.subscribe(f"{topic_prefix}/#", lambda m: got.append(m.payload))
            assert svc.wait_connected(30)
            assert svc.protocol == "3.1.1"  # amqtt speaks 3.1.1 only: auto fell back
            svc.publish_async(f"{topic_prefix}/x", "hello").wait_acknowledged(10)
            assert wait_until(lambda: got == [b"hello"], 10)
    finally:
        embedded.stop()


def test_staged_messages_are_sent_only_when_the_change_commits(
    broker, make_settings, db_url, topic_prefix
):
    """Transactional outbox: the announcement and the change commit together or not at all."""
    from central_system.models import Faculty

    probe = Probe(broker.port, [f"{topic_prefix}/#"])
    try:
        with running_service(make_settings(), db_url) as svc:
            session = dbmod.get_db()
            session.add(Faculty(name="Dr. Rolled Back"))
            lost = svc.stage(session, f"{topic_prefix}/announce", {"v": "rolled back"})
            session.rollback()
            session.close()
            assert not lost.wait_persisted(2) and lost.dropped

            session = dbmod.get_db()
            session.add(Faculty(name="Dr. Committed"))
            kept = svc.stage(session, f"{topic_prefix}/announce", {"v": "committed"})
            plain = svc.stage(session, f"{topic_prefix}/q0", "fire and forget", qos=0)
            session.commit()
            session.close()
            assert kept.persisted  # durable at commit, with the change
            assert kept.wait_acknowledged(10) and plain.wait_acknowledged(10)
            assert probe.wait_for(lambda m: len(m) >= 2, 10)
            time.sleep(0.3)
            assert sorted(m.payload for m in probe.messages) == sorted(
                [b'{"v":"committed"}', b"fire and forget"]
            )
            with dbmod.get_engine().connect() as conn:
                names = set(conn.execute(select(Faculty.name)).scalars())
            assert names == {"Dr. Committed"}
            assert wait_until(lambda: outbox_count() == 0, 10)
    finally:
        probe.close()
