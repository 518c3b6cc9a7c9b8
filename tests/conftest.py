"""Shared fixtures: a real Mosquitto per test, databases on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from central_system import db as dbmod
from central_system.config import Settings, reset_settings_cache
from central_system.services import async_mqtt_service as svcmod
from tests.brokers import MosquittoBroker

PG_ADMIN_URL = os.environ.get(
    "CONSULTEASE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    """A fresh Mosquitto on a free loopback port, killed after the test."""
    b = MosquittoBroker().start()
    yield b
    b.cleanup()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix unique to this test."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    return f"test/{name}/{uuid.uuid4().hex[:8]}"


def _pg_available() -> bool:
    try:
        eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session."""
    if not _pg_available():
        if os.environ.get("CONSULTEASE_REQUIRE_PG"):
            pytest.fail(f"PostgreSQL required but not reachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL not reachable")
    name = f"consultease_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_pg(url: str) -> None:
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: SQLite file and PostgreSQL (every test runs on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'consultease.db'}"
    url: str = request.getfixturevalue("pg_server_url")
    _reset_pg(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database URL, for tests that are about MQTT, not the database."""
    return f"sqlite:///{tmp_path / 'consultease.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The process database initialised (migrated) on ``db_url``."""
    eng = dbmod.init_db(db_url)
    yield eng
    dbmod.dispose_db()


@pytest.fixture
def make_settings(tmp_path: Path, broker: MosquittoBroker):
    """Build ``Settings`` pointing at the test broker, with a unique client id."""

    def factory(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path,
            "mqtt_host": "127.0.0.1",
            "mqtt_port": broker.port,
            "mqtt_client_id": f"test-central-{uuid.uuid4().hex[:8]}",
            "mqtt_reconnect_max_delay": 2.0,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return factory


@pytest.fixture(autouse=True)
def _isolate_process_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees another's settings, singleton service or engine."""
    for key in list(os.environ):
        if (
            key.startswith("CONSULTEASE_")
            and not key.startswith("CONSULTEASE_TEST_")
            and key != "CONSULTEASE_REQUIRE_PG"
        ):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CONSULTEASE_DATA_DIR", str(tmp_path / "data"))
    reset_settings_cache()
    yield
    svcmod.reset_async_mqtt_service()
    dbmod.dispose_db()
    reset_settings_cache()
