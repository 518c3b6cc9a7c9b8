"""`consultease doctor` against a real Mosquitto and a real database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from central_system import db as dbmod
from central_system.cli import main as cli_main
from central_system.config import Settings, reset_settings_cache
from central_system.services.async_mqtt_service import AsyncMQTTService
from tests.brokers import MosquittoBroker, free_port
from tests.server_helpers import db_engine, enroll, revoke, running_server


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, broker: MosquittoBroker, sqlite_url: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    values = {
        "CONSULTEASE_MQTT_HOST": "127.0.0.1",
        "CONSULTEASE_MQTT_PORT": str(broker.port),
        "CONSULTEASE_DATABASE_URL": sqlite_url,
        "CONSULTEASE_MQTT_CLIENT_ID": f"doctor-test-{uuid.uuid4().hex[:8]}",
        "CONSULTEASE_DATA_DIR": str(tmp_path / "data"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    dbmod.init_db(sqlite_url)
    yield values
    dbmod.dispose_db()


def _central(env: dict[str, str], client_id: str | None = None) -> AsyncMQTTService:
    settings = Settings(mqtt_client_id=client_id or env["CONSULTEASE_MQTT_CLIENT_ID"])
    service = AsyncMQTTService(settings, dbmod.get_engine())
    service.start()
    assert service.wait_connected(15)
    return service


def _doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    code = cli_main(["doctor", "--timeout", "5"])
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines():
        parts = line.split(None, 1)
        if parts and parts[0] in ("PASS", "WARN", "FAIL"):
            lines[line[6:26].strip()] = parts[0]
    return code, lines


def test_healthy_deployment_passes(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    service = _central(env)
    try:
        code, lines = _doctor(capsys)
    finally:
        service.stop(timeout=2)
    assert lines["broker"] == "PASS"
    assert lines["central connection"] == "PASS"
    assert lines["database"] == "PASS"
    assert lines["disk space"] in ("PASS", "WARN")
    assert lines["clock"] in ("PASS", "WARN")
    assert lines["settings"] == "WARN"  # anonymous MQTT in this test broker
    assert code == 0


def test_no_central_or_two_centrals_fail(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _doctor(capsys)
    assert code == 1 and lines["central connection"] == "FAIL"
    first = _central(env)
    second = _central(env, client_id=f"other-kiosk-{uuid.uuid4().hex[:6]}")
    try:
        code, lines = _doctor(capsys)
        assert code == 1 and lines["central connection"] == "FAIL"
        second.stop(timeout=2)  # a clean stop publishes "offline": back to exactly one
        code, lines = _doctor(capsys)
        assert code == 0 and lines["central connection"] == "PASS"
    finally:
        first.stop(timeout=2)
        second.stop(timeout=2)


def test_unreachable_broker_fails(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSULTEASE_MQTT_PORT", str(free_port()))
    reset_settings_cache()
    code, lines = _doctor(capsys)
    assert code == 1 and lines["broker"] == "FAIL"
    assert lines["central connection"] == "FAIL"


def test_schema_behind_head_fails(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with dbmod.get_engine().begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    code, lines = _doctor(capsys)
    assert code == 1 and lines["database"] == "FAIL"


def test_username_without_password_fails(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSULTEASE_MQTT_USERNAME", "consultease-central")
    reset_settings_cache()
    code, lines = _doctor(capsys)
    assert code == 1 and lines["settings"] == "FAIL"


def test_doctor_waits_for_retained_status_not_forever(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe is bounded: a run completes in a few seconds even with nothing retained."""
    import time

    t0 = time.monotonic()
    _doctor(capsys)
    assert time.monotonic() - t0 < 20


# --------------------------------------------------------------------------- a kiosk of a server


def _as_kiosk_of(
    monkeypatch: pytest.MonkeyPatch, urls: str, token: str, ca_file: Path | None = None
) -> None:
    monkeypatch.setenv("CONSULTEASE_SERVER_URL", urls)
    monkeypatch.setenv("CONSULTEASE_SERVER_TOKEN", token)
    if ca_file is None:
        monkeypatch.delenv("CONSULTEASE_SERVER_CA_FILE", raising=False)
    else:
        monkeypatch.setenv("CONSULTEASE_SERVER_CA_FILE", str(ca_file))
    reset_settings_cache()


def _report(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str], str]:
    """The exit status, each check's status by name, and the whole report."""
    code = cli_main(["doctor", "--timeout", "5"])
    out = capsys.readouterr().out
    lines = {
        line[6:26].strip(): line.split(None, 1)[0]
        for line in out.splitlines()
        if line.split(None, 1)[:1] in (["PASS"], ["WARN"], ["FAIL"])
    }
    return code, lines, out


def test_a_kiosk_of_a_server_checks_the_servers_and_its_token_instead_of_broker_and_database(
    sqlite_url: str,
    broker: MosquittoBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No broker or database settings on this kiosk, and none needed: every line passes."""
    with (
        running_server(sqlite_url, broker.port, tmp_path) as server,
        db_engine(sqlite_url) as engine,
    ):
        token = enroll(engine, "lobby-1")
        _as_kiosk_of(monkeypatch, server.url, token)
        code, lines, out = _report(capsys)
        assert set(lines) == {"settings", "servers", "kiosk token", "clock", "disk space"}, out
        assert lines["settings"] == "PASS" and lines["servers"] == "PASS", out
        assert lines["kiosk token"] == "PASS", out
        assert f"{server.url} active" in out
        assert code == 0
        assert token not in out

        # A second URL nobody answers: the kiosk works, but could not fail over.
        closed = f"http://127.0.0.1:{free_port()}"
        _as_kiosk_of(monkeypatch, f"{server.url},{closed}", token)
        code, lines, out = _report(capsys)
        assert lines["servers"] == "WARN" and f"{closed} unreachable" in out, out
        assert lines["kiosk token"] == "PASS" and code == 0

        # https:// to a server that speaks plain HTTP: a TLS failure, said as such.
        _as_kiosk_of(monkeypatch, server.url.replace("http://", "https://"), token)
        code, lines, out = _report(capsys)
        assert code == 1 and lines["servers"] == "FAIL" and "TLS handshake failed" in out, out

        # The token is revoked: one clear line says so.
        revoke(engine, "lobby-1")
        _as_kiosk_of(monkeypatch, server.url, token)
        code, lines, out = _report(capsys)
        assert code == 1 and lines["kiosk token"] == "FAIL", out
        assert "token revoked or wrong" in out
        assert lines["servers"] == "PASS"  # /healthz needs no token
        assert token not in out


def test_a_kiosk_whose_ca_file_did_not_sign_the_servers_certificate_fails_clearly(
    sqlite_url: str,
    broker: MosquittoBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    ca_file, other_ca_file = tmp_path / "ca.pem", tmp_path / "other-ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    trustme.CA().cert_pem.write_to_path(str(other_ca_file))
    with (
        running_server(sqlite_url, broker.port, tmp_path, tls=(cert_file, key_file)) as server,
        db_engine(sqlite_url) as engine,
    ):
        token = enroll(engine, "lobby-2")
        _as_kiosk_of(monkeypatch, server.url, token, other_ca_file)
        code, lines, out = _report(capsys)
        assert code == 1 and lines["servers"] == "FAIL", out
        assert f"not trusted by the CA in {other_ca_file}" in out
        assert lines["kiosk token"] == "FAIL" and "certificate is not signed" in out

        _as_kiosk_of(monkeypatch, server.url, token, ca_file)
        code, lines, out = _report(capsys)
        assert code == 0 and lines["servers"] == "PASS" and lines["kiosk token"] == "PASS", out

        _as_kiosk_of(monkeypatch, server.url, token, tmp_path / "missing-ca.pem")
        code, lines, out = _report(capsys)
        assert code == 1 and lines["settings"] == "FAIL" and "missing-ca.pem" in out, out
