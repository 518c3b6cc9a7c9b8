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
