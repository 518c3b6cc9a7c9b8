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

        # Mosquitto writes its log asynchronously: the refusal may reach the file a moment
        # after the client has read the CONNACK.
        assert wait_until(lambda: refusals() >= 1, timeout=5)
        first = refusals()
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


# --------------------------------------------------------------------------- a desk's own topics


def test_a_desk_cannot_forge_what_the_central_publishes_on_its_own_faculty(
    deployment: Deployment,
) -> None:
    """With one desk's password a thief cannot put a request on that desk's screen or dashboards."""
    observer = _central(deployment)
    desk1 = _desk(deployment, 1)
    try:
        assert desk1.accepted
        observer.subscribe("consultease/#", "faculty/+/status")
        # The desk's own screen: the firmware shows whatever arrives on /messages.
        desk1.subscribe("consultease/faculty/1/messages", "consultease/faculty/1/cancellations")
        forged = {
            "consultease/faculty/1/messages": b"CID:999 From:Forged (SID:1): forged",
            "consultease/faculty/1/requests": b'{"id": 999, "forged": true}',
            "consultease/faculty/1/cancellations": b'{"consultation_id": 1, "forged": true}',
            "consultease/faculty/1/anything": b"forged",
            "consultease/consultations/999": b'{"forged": true}',
            "consultease/ui/consultations": b'{"forged": true}',
        }
        for topic, payload in forged.items():
            desk1.publish(topic, payload, qos=1)
            desk1.publish(topic, payload, qos=0)
        # Positive controls: every topic the deployed firmware publishes still gets through.
        own = provisioning.desk_publish_topics(1)
        assert set(own) == {
            "consultease/faculty/1/status",
            "faculty/1/status",
            "consultease/faculty/1/mac_status",
            "consultease/faculty/1/responses",
            "consultease/faculty/1/heartbeat",
            "consultease/faculty/1/diagnostics",
        }
        for topic in own:
            desk1.publish(topic, b"own", qos=0)
        assert wait_until(lambda: set(own) <= set(observer.topics())), observer.topics()
        time.sleep(0.3)
        for client in (observer, desk1):
            with client.lock:
                leaked = [(t, p) for t, p in client.messages if b"orged" in p]
            assert leaked == []
    finally:
        observer.close()
        desk1.close()


def test_the_acl_grants_a_desk_exactly_the_firmwares_topics(deployment: Deployment) -> None:
    acl = (deployment.out_dir / "acl").read_text()
    block = acl.split("user desk-1\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert sorted(block) == sorted(
        [f"topic write {t}" for t in provisioning.desk_publish_topics(1)]
        + [
            "topic read consultease/faculty/1/messages",
            "topic read consultease/faculty/1/cancellations",
        ]
    )
    assert not any("#" in line or "+" in line for line in block)


# --------------------------------------------------------------------------- listeners and TLS


def _write_tls_files(base: Path, ip: str) -> tuple[provisioning.TLSOptions, bytes]:
    """A CA and a server certificate for ``ip`` (trustme), readable by the broker's group."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert(ip)
    tls_dir = base / "tls"
    tls_dir.mkdir()
    tls_dir.chmod(0o755)
    cert = tls_dir / "server.crt"
    key = tls_dir / "server.key"
    cafile = tls_dir / "ca.crt"
    cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    key.write_bytes(server.private_key_pem.bytes())
    cafile.write_bytes(ca.cert_pem.bytes())
    for path in (cert, cafile):
        path.chmod(0o644)
    key.chmod(0o640)
    if os.geteuid() == 0 and _group_exists("mosquitto"):
        os.chown(key, -1, grp.getgrnam("mosquitto").gr_gid)
    return provisioning.TLSOptions(cert, key, cafile, free_port(), ip), ca.cert_pem.bytes()


def _generate(
    base: Path, sqlite_url: str, port: int, **kwargs: object
) -> tuple[provisioning.BrokerConfig, Path]:
    dbmod.init_db(sqlite_url)
    with dbmod.session_scope() as s:
        if s.get(Faculty, 1) is None:
            s.add(Faculty(id=1, name="Dr. Test 1"))
            s.flush()
            provisioning.provision_desk(s, 1)
    log_path = base / "mosquitto.log"
    log_path.touch(mode=0o666)
    log_path.chmod(0o666)
    group = "mosquitto" if os.geteuid() == 0 and _group_exists("mosquitto") else None
    with dbmod.session_scope() as s:
        result = provisioning.write_broker_config(
            s,
            base / "broker",
            port=port,
            group=group,
            extra_conf_lines=[f"log_dest file {log_path}", "log_type all"],
            **kwargs,  # type: ignore[arg-type]
        )
    return result, log_path


@pytest.fixture
def base_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="consultease-gen-"))
    base.chmod(0o755)  # the broker (user mosquitto) traverses it
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _refused(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


def test_plain_and_tls_listeners_have_their_own_addresses(base_dir: Path, sqlite_url: str) -> None:
    """Plain on 127.0.0.1 (the central only), TLS on another address (the desks): both reachable."""
    import ssl

    tls, ca_pem = _write_tls_files(base_dir, "127.0.0.2")
    port = free_port()
    result, log_path = _generate(base_dir, sqlite_url, port, listen_address="127.0.0.1", tls=tls)
    conf = result.conf_path.read_text()
    assert f"listener {port} 127.0.0.1\n" in conf
    assert f"listener {tls.port} 127.0.0.2\n" in conf
    broker = GeneratedBroker(result.conf_path, port, log_path).start()
    try:
        deadline = time.monotonic() + 10
        while _refused("127.0.0.2", tls.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _refused("127.0.0.2", tls.port), broker.read_log()
        assert _refused("127.0.0.1", tls.port)  # TLS is not on the plain listener's address
        assert _refused("127.0.0.2", port)  # and plain is not on the TLS address

        env = provisioning.read_env_file(result.central_env_path)
        assert env["CONSULTEASE_MQTT_HOST"] == "127.0.0.1"
        with dbmod.session_scope() as s:
            creds = provisioning.rotate_desk(s, 1)
        with dbmod.session_scope() as s:
            provisioning.refresh_broker_files(s, result.out_dir)
        broker.reload()
        # A desk over TLS, verifying the server's certificate against the CA.
        connected = threading.Event()
        codes: list[object] = []
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="tls-desk", protocol=paho.MQTTv311
        )
        client.username_pw_set(creds.username, creds.password)
        context = ssl.create_default_context(cadata=ca_pem.decode())
        client.tls_set_context(context)
        client.on_connect = lambda _c, _u, _f, rc, _p: (codes.append(rc), connected.set())
        client.connect("127.0.0.2", tls.port, 30)
        client.loop_start()
        try:
            assert connected.wait(10), broker.read_log()
            assert not codes[0].is_failure, codes  # type: ignore[attr-defined]
        finally:
            client.disconnect()
            client.loop_stop()
    finally:
        broker.cleanup()


def test_central_env_follows_the_plain_listener(
    base_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    port = free_port()
    result, log_path = _generate(base_dir, sqlite_url, port, listen_address="127.0.0.3")
    env = provisioning.read_env_file(result.central_env_path)
    assert env["CONSULTEASE_MQTT_HOST"] == "127.0.0.3"
    assert env["CONSULTEASE_MQTT_PORT"] == str(port)
    broker = GeneratedBroker(result.conf_path, port, log_path)
    broker.host = "127.0.0.3"
    broker.start()
    try:
        settings = Settings(
            data_dir=tmp_path,
            database_url=sqlite_url,
            mqtt_host=env["CONSULTEASE_MQTT_HOST"],
            mqtt_port=int(env["CONSULTEASE_MQTT_PORT"]),
            mqtt_username=env["CONSULTEASE_MQTT_USERNAME"],
            mqtt_password=SecretStr(env["CONSULTEASE_MQTT_PASSWORD"]),
            mqtt_client_id=f"test-central-{uuid.uuid4().hex[:8]}",
        )
        service = AsyncMQTTService(settings, dbmod.get_engine())
        service.start()
        try:
            assert service.wait_connected(15), service.get_stats()["last_error"]
        finally:
            service.stop(timeout=2)
    finally:
        broker.cleanup()
    # Moved to another address and port: the kept password, the new place.
    new_port = free_port()
    again, _ = _generate(base_dir, sqlite_url, new_port, listen_address="127.0.0.4")
    assert not again.central_created
    env2 = provisioning.read_env_file(again.central_env_path)
    assert env2["CONSULTEASE_MQTT_HOST"] == "127.0.0.4"
    assert env2["CONSULTEASE_MQTT_PORT"] == str(new_port)
    assert env2["CONSULTEASE_MQTT_PASSWORD"] == env["CONSULTEASE_MQTT_PASSWORD"]
    # Every interface: the central connects over loopback.
    wildcard, _ = _generate(base_dir, sqlite_url, new_port, listen_address="0.0.0.0")  # noqa: S104
    assert (
        provisioning.read_env_file(wildcard.central_env_path)["CONSULTEASE_MQTT_HOST"]
        == "127.0.0.1"
    )


def test_bad_tls_files_are_refused_when_the_config_is_written(
    base_dir: Path, sqlite_url: str
) -> None:
    (base_dir / "a").mkdir()
    (base_dir / "b").mkdir()
    tls, _ca = _write_tls_files(base_dir / "a", "127.0.0.1")
    other, _ = _write_tls_files(base_dir / "b", "127.0.0.1")
    garbage = base_dir / "garbage.pem"
    garbage.write_text("not a certificate\n")
    garbage.chmod(0o644)
    cases = {
        "does not exist": provisioning.TLSOptions(
            Path("/nonexistent/server.crt"), tls.keyfile, tls.cafile
        ),
        "the key does not belong to the certificate": provisioning.TLSOptions(
            tls.certfile, other.keyfile, tls.cafile
        ),
        r"CA .* is not a PEM certificate": provisioning.TLSOptions(
            tls.certfile, tls.keyfile, garbage
        ),
    }
    dbmod.init_db(sqlite_url)
    for expected, bad in cases.items():
        out = base_dir / "out"
        with (
            dbmod.session_scope() as s,
            pytest.raises(provisioning.ProvisioningError, match=expected),
        ):
            provisioning.write_broker_config(s, out, tls=bad)
        assert not out.exists()  # refused before anything was written
    provisioning.validate_tls_files(tls)  # the good set passes
    provisioning.validate_tls_files(other)
    if _group_exists("mosquitto"):
        # Mosquitto reads the key after dropping root: a key only root can read is refused.
        private = base_dir / "private.key"
        private.write_bytes(tls.keyfile.read_bytes())
        private.chmod(0o600)
        unreadable = provisioning.TLSOptions(tls.certfile, private, tls.cafile)
        with pytest.raises(provisioning.ProvisioningError, match=r"group mosquitto.* cannot read"):
            provisioning.validate_tls_files(unreadable, "mosquitto")


def test_broker_config_command_refuses_a_missing_certificate(
    base_dir: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from central_system.cli import main as cli_main
    from central_system.config import reset_settings_cache

    tls, _ca = _write_tls_files(base_dir, "127.0.0.1")
    monkeypatch.setenv("CONSULTEASE_DATABASE_URL", sqlite_url)
    reset_settings_cache()
    out = base_dir / "broker"
    code = cli_main(
        [
            "broker-config",
            "--out",
            str(out),
            "--tls-cert",
            "/nonexistent",
            "--tls-key",
            str(tls.keyfile),
            "--ca",
            str(tls.cafile),
            "--group",
            "",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "/nonexistent does not exist" in err
    assert not out.exists()
