"""`consultease doctor` against a real Mosquitto and a real database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from central_system import db as dbmod
from central_system.cli import main as cli_main
from central_system.config import Settings, reset_settings_cache
from central_system.services.async_mqtt_service import AsyncMQTTService
from tests.brokers import MosquittoBroker, free_port
from tests.integration.test_server_failover import _two_servers
from tests.integration.test_server_failover import pg_url as pg_url
from tests.server_helpers import ServerProcess, db_engine, enroll, revoke, running_server


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


@pytest.mark.postgres
def test_a_kiosk_of_an_active_and_a_standby_server_passes_and_warns_of_a_standby_without_database(
    pg_url: str,
    broker: MosquittoBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two servers on one PostgreSQL database: the standby is said as such, not a failure,
    in whichever order the URLs come; a standby that cannot reach the database could not
    take over (a warning); once the active one dies, the other is the active one."""
    a, b = _two_servers(pg_url, broker, tmp_path)
    missing_db = pg_url.rsplit("/", 1)[0] + f"/consultease_missing_{uuid.uuid4().hex[:8]}"
    c = ServerProcess(missing_db, broker.port, tmp_path, client_id="central-C", name="c")
    try:
        with db_engine(pg_url) as engine:
            token = enroll(engine, "lobby-3")
        for urls in (f"{a.url},{b.url}", f"{b.url},{a.url}"):
            _as_kiosk_of(monkeypatch, urls, token)
            code, lines, out = _report(capsys)
            assert lines["servers"] == "PASS", out
            assert f"{a.url} active (mqtt connected, database ok)" in out, out
            assert f"{b.url} standby (mqtt none, database ok)" in out, out
            assert lines["kiosk token"] == "PASS" and f"accepted by {a.url}" in out, out
            assert code == 0, out

        # A third server whose database URL names no database: a standby that never could
        # take over. The kiosk still works (a warning, exit 0), and the line says why.
        c.start().wait_role("standby")
        _as_kiosk_of(monkeypatch, f"{a.url},{b.url},{c.url}", token)
        code, lines, out = _report(capsys)
        assert lines["servers"] == "WARN", out
        assert f"{c.url} standby (mqtt none, database error)" in out, out
        assert f"{c.url} cannot reach its database, so it could not take over" in out, out
        assert f"{b.url} cannot reach" not in out, out
        assert lines["kiosk token"] == "PASS" and code == 0, out

        # The active server dies: the standby takes over, doctor follows it.
        a.kill()
        b.wait_role("active", timeout=60)
        _as_kiosk_of(monkeypatch, f"{a.url},{b.url}", token)
        code, lines, out = _report(capsys)
        assert lines["servers"] == "WARN" and f"{a.url} unreachable" in out, out
        assert f"{b.url} active" in out and "no failover to an unreachable server" in out, out
        assert lines["kiosk token"] == "PASS" and f"accepted by {b.url}" in out, out
        assert code == 0, out
    finally:
        for server in (a, b, c):
            server.stop()


def test_a_kiosk_whose_active_server_cannot_reach_its_database_fails(
    sqlite_url: str,
    broker: MosquittoBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The active server answers but its database does not (the SQLite file is gone)."""
    database = Path(make_url(sqlite_url).database or "")
    moved = database.with_name("moved-away.db")
    with (
        running_server(sqlite_url, broker.port, tmp_path) as server,
        db_engine(sqlite_url) as engine,
    ):
        token = enroll(engine, "lobby-4")
        _as_kiosk_of(monkeypatch, server.url, token)
        database.rename(moved)
        database.mkdir()
        try:
            code, lines, out = _report(capsys)
        finally:
            database.rmdir()
            moved.rename(database)
        assert code == 1 and lines["servers"] == "FAIL", out
        assert "the active server cannot reach its database" in out, out
        assert f"{server.url} active (mqtt connected, database error)" in out, out
