"""Proof against a real Mosquitto running the configuration `consultease broker-config` generates.

Desk 1's credentials can neither publish on desk 2's topics nor read desk 2's
messages; anonymous clients are refused; the central service works with its
credentials and stops reconnecting, with a clear error, when its password is wrong.
"""

from __future__ import annotations

import grp
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from central_system import db as dbmod
from central_system.config import Settings
from central_system.models import Faculty
from central_system.services import provisioning
from central_system.services.async_mqtt_service import AsyncMQTTService, probe_broker
from central_system.services.doctor import Status, run_checks
from tests.brokers import MosquittoBroker, free_port
from tests.integration.service_helpers import wait_until


class GeneratedBroker(MosquittoBroker):
    """Mosquitto started on exactly the mosquitto.conf that broker-config wrote."""

    def __init__(self, conf_path: Path, port: int, log_path: Path) -> None:
        super().__init__(port=port)
        self.generated = conf_path
        self.log_path = log_path

    def write_config(self) -> None:
        shutil.copyfile(self.generated, self.config_path)

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads the password file and the ACL."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)


@dataclass
class Deployment:
    broker: GeneratedBroker
    out_dir: Path
    central_user: str
    central_password: str
    desks: dict[int, provisioning.DeskCredentials]
    db_url: str


@pytest.fixture
def deployment(tmp_path: Path, sqlite_url: str) -> Iterator[Deployment]:
    engine = dbmod.init_db(sqlite_url)
    desks: dict[int, provisioning.DeskCredentials] = {}
    with dbmod.session_scope() as s:
        for fid in (1, 2):
            s.add(Faculty(id=fid, name=f"Dr. Test {fid}"))
        s.flush()
        for fid in (1, 2):
            desks[fid] = provisioning.provision_desk(s, fid)
    port = free_port()
    # Mosquitto drops root privileges before reading its password file and ACL: the
    # files must be readable by its group, in a directory it can traverse (as deployed).
    base = Path(tempfile.mkdtemp(prefix="consultease-gen-"))
    base.chmod(0o755)
    out_dir = base / "broker"
    log_path = base / "mosquitto.log"
    log_path.touch(mode=0o666)
    log_path.chmod(0o666)
    group = "mosquitto" if os.geteuid() == 0 and _group_exists("mosquitto") else None
    with dbmod.session_scope() as s:
        result = provisioning.write_broker_config(
            s,
            out_dir,
            port=port,
            listen_address="127.0.0.1",
            group=group,
            extra_conf_lines=[
                f"log_dest file {log_path}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
            ],
        )
    env = provisioning.read_env_file(result.central_env_path)
    broker = GeneratedBroker(result.conf_path, port, log_path).start()
    yield Deployment(
        broker,
        out_dir,
        env["CONSULTEASE_MQTT_USERNAME"],
        env["CONSULTEASE_MQTT_PASSWORD"],
        desks,
        sqlite_url,
    )
    broker.cleanup()
    engine.dispose()
    shutil.rmtree(base, ignore_errors=True)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


class Client:
    """A plain paho client with credentials (plays a desk unit or an observer)."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.connack: paho.ReasonCode | None = None
        self.connected = threading.Event()
        self.suback = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{uuid.uuid4().hex[:10]}",
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.suback.set()
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        self.connected.wait(10)

    def _on_connect(self, _c, _u, _f, rc, _p) -> None:
        self.connack = rc
        self.connected.set()

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, *filters: str) -> None:
        self.suback.clear()
        self.client.subscribe([(f, 1) for f in filters])
        assert self.suback.wait(10)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        if qos:
            info.wait_for_publish(5)

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _central(d: Deployment) -> Client:
    c = Client(d.broker.port, d.central_user, d.central_password)
    assert c.accepted, c.connack
    return c


def _desk(d: Deployment, fid: int, password: str | None = None) -> Client:
    creds = d.desks[fid]
    return Client(d.broker.port, creds.username, password or creds.password)


def test_generated_files_are_private_and_secret_free(deployment: Deployment) -> None:
    out = deployment.out_dir
    assert stat.S_IMODE(os.stat(out / "central.env").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "passwd").st_mode) & 0o007 == 0
    passwd = (out / "passwd").read_text()
    for secret in [deployment.central_password, *(c.password for c in deployment.desks.values())]:
        assert secret not in passwd
        assert secret not in (out / "mosquitto.conf").read_text()
        assert secret not in (out / "acl").read_text()
    assert "allow_anonymous false" in (out / "mosquitto.conf").read_text()


def test_anonymous_client_is_refused(deployment: Deployment) -> None:
    anon = Client(deployment.broker.port, None, None)
    try:
        assert anon.connack is not None and anon.connack.is_failure, anon.connack
    finally:
        anon.close()


def test_desk_cannot_publish_on_another_desks_topics(deployment: Deployment) -> None:
    observer = _central(deployment)
    desk1 = _desk(deployment, 1)
    desk2 = _desk(deployment, 2)
    try:
        assert desk1.accepted and desk2.accepted
        observer.subscribe("consultease/faculty/#", "faculty/+/status")
        forged = [
            "consultease/faculty/2/responses",
            "consultease/faculty/2/status",
            "faculty/2/status",
            "consultease/faculty/2/heartbeat",
            "consultease/consultations/7",
            "consultease/system/central/x/status",
        ]
        for topic in forged:
            desk1.publish(topic, b'{"forged": true}', qos=1)
            desk1.publish(topic, b'{"forged": true}', qos=0)
        # Positive controls: each desk may write its own topics, so the observer does see these.
        desk1.publish("consultease/faculty/1/responses", b"own-1", qos=0)
        desk2.publish("consultease/faculty/2/responses", b"own-2", qos=1)
        assert wait_until(
            lambda: (
                {"consultease/faculty/1/responses", "consultease/faculty/2/responses"}
                <= set(observer.topics())
            )
        ), observer.topics()
        time.sleep(0.3)
        with observer.lock:
            leaked = [(t, p) for t, p in observer.messages if b"forged" in p]
        assert leaked == []
    finally:
        for c in (observer, desk1, desk2):
            c.close()


def test_desk_cannot_read_another_desks_messages(deployment: Deployment) -> None:
    central = _central(deployment)
    desk1 = _desk(deployment, 1)
    try:
        desk1.subscribe(
            "consultease/faculty/1/messages",
            "consultease/faculty/1/cancellations",
            "consultease/faculty/2/messages",
            "consultease/faculty/+/messages",
            "consultease/#",
            "#",
        )
        central.publish("consultease/faculty/2/messages", b"CID:9 From:X (SID:1): for desk 2")
        central.publish("consultease/faculty/2/cancellations", b'{"consultation_id": 9}')
        central.publish("consultease/faculty/2/requests", b'{"id": 9}')
        central.publish("consultease/faculty/1/cancellations", b'{"consultation_id": 8}')
        central.publish("consultease/faculty/1/messages", b"CID:8 From:Y (SID:2): for desk 1")
        assert wait_until(lambda: "consultease/faculty/1/messages" in desk1.topics())
        time.sleep(0.3)
        assert set(desk1.topics()) == {
            "consultease/faculty/1/messages",
            "consultease/faculty/1/cancellations",
        }, desk1.topics()
    finally:
        central.close()
        desk1.close()


def test_revoked_and_rotated_credentials_stop_working(deployment: Deployment) -> None:
    old1 = deployment.desks[1].password
    with dbmod.session_scope() as s:
        rotated = provisioning.rotate_desk(s, 1)
        provisioning.revoke_desk(s, 2)
    with dbmod.session_scope() as s:
        provisioning.refresh_broker_files(s, deployment.out_dir)  # keeps the files' group
    deployment.broker.reload()
    old = _desk(deployment, 1, old1)
    new = _desk(deployment, 1, rotated.password)
    revoked = _desk(deployment, 2)
    try:
        assert not old.accepted
        assert new.accepted
        assert not revoked.accepted
        assert _central(deployment).accepted  # the central user survives the refresh
    finally:
        for c in (old, new, revoked):
            c.close()


def _settings(d: Deployment, password: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=d.db_url,
        mqtt_host="127.0.0.1",
        mqtt_port=d.broker.port,
        mqtt_username=d.central_user,
        mqtt_password=SecretStr(password),
        mqtt_client_id=f"test-central-{uuid.uuid4().hex[:8]}",
        mqtt_reconnect_max_delay=0.5,
    )


def test_central_service_works_with_its_credentials(deployment: Deployment, tmp_path: Path) -> None:
    settings = _settings(deployment, deployment.central_password, tmp_path)
    service = AsyncMQTTService(settings, dbmod.get_engine())
    received: list[bytes] = []
    service.subscribe("consultease/faculty/+/responses", lambda m: received.append(m.payload))
    service.start()
    desk1 = _desk(deployment, 1)
    try:
        assert service.wait_connected(15), service.get_stats()["last_error"]
        watcher = _desk(deployment, 1)
        watcher.subscribe("consultease/faculty/1/messages")
        handle = service.publish_async("consultease/faculty/1/messages", "CID:1 From:A (SID:1): hi")
        assert handle.wait_acknowledged(10)
        assert wait_until(lambda: "consultease/faculty/1/messages" in watcher.topics())
        watcher.close()
        time.sleep(0.3)  # let the SUBSCRIBE reach the broker before the desk answers
        desk1.publish("consultease/faculty/1/responses", b'{"response_type": "ACKNOWLEDGE"}', 0)
        assert wait_until(lambda: received == [b'{"response_type": "ACKNOWLEDGE"}'])
        probe = probe_broker(settings, "consultease/system/central/+/status")
        assert probe.authenticated, probe.error
        assert probe.retained.get(service.status_topic) == b"online"
    finally:
        desk1.close()
        service.stop(timeout=2)


def test_wrong_central_password_stops_reconnecting_with_clear_error(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings = _settings(deployment, "definitely-not-the-password", tmp_path)
    service = AsyncMQTTService(settings, dbmod.get_engine())
    states: list[str] = []
    service.add_state_listener(states.append)
    service.start()
    try:
        assert wait_until(lambda: service.state == "auth_failed", timeout=15), service.state
        stats = service.get_stats()
        assert stats["state"] == "auth_failed"
        assert "refused" in (stats["last_error"] or "")
        assert "definitely-not-the-password" not in (stats["last_error"] or "")

        def refusals() -> int:
            return deployment.broker.read_log().count("not authorised")

        first = refusals()
        assert first >= 1
        time.sleep(3.0)  # with a 0.5 s backoff cap, a retrying client would try ~6 more times
        assert refusals() == first
        assert service.state == "auth_failed" and not service.is_connected
        probe = probe_broker(settings)
        assert probe.auth_failed and not probe.authenticated
    finally:
        service.stop(timeout=2)
    assert "definitely-not-the-password" not in deployment.broker.read_log()


def test_doctor_reports_broker_credentials(deployment: Deployment, tmp_path: Path) -> None:
    good = _settings(deployment, deployment.central_password, tmp_path)
    bad = _settings(deployment, "definitely-not-the-password", tmp_path)
    service = AsyncMQTTService(good, dbmod.get_engine())
    service.start()
    try:
        assert service.wait_connected(15)
        by_name = {r.name: r for r in run_checks(good)}
        assert by_name["settings"].status == Status.PASS
        assert by_name["broker"].status == Status.PASS
        assert by_name["central connection"].status == Status.PASS
        refused = {r.name: r for r in run_checks(bad)}
        assert refused["broker credentials"].status == Status.FAIL
        assert all("definitely-not-the-password" not in r.detail for r in refused.values())
    finally:
        service.stop(timeout=2)
