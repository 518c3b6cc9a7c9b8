"""``GET /healthz`` when the database does not answer: still a JSON 200, no token, and
``"database": "error"``; what the role becomes (issue 9).

Real processes: ``consultease server`` on SQLite or PostgreSQL, and a Mosquitto.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from central_system.server.central import LOST_LEADERSHIP_EXIT
from tests.brokers import MosquittoBroker
from tests.conftest import PG_ADMIN_URL, _pg_available
from tests.integration.service_helpers import wait_until
from tests.integration.test_server_failover import (
    _central_connections_never_overlap,
    _two_servers,
)
from tests.server_helpers import ServerProcess, running_server


def _healthz(server: ServerProcess) -> dict[str, Any]:
    """``/healthz`` as a load balancer asks it: no token; it must answer 200 with JSON."""
    r = httpx.get(server.url + "/healthz", timeout=10.0)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    return body


def test_sqlite_healthz_says_database_error_while_the_file_is_gone_and_ok_once_it_is_back(
    sqlite_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A pooled SQLite connection answers ``SELECT 1`` from a removed file's old inode: the
    check must look at the path. The role stays active and MQTT connected: on SQLite no
    second server can run (the file lock), so there is no one to hand over to."""
    database = Path(make_url(sqlite_url).database or "")
    moved = database.with_name("moved-away.db")
    with running_server(sqlite_url, broker.port, tmp_path) as server:
        assert _healthz(server)["database"] == "ok"
        database.rename(moved)
        database.mkdir()  # something else at the path: nothing can recreate an empty file there
        try:
            health = _healthz(server)
            assert health["database"] == "error", health
            assert health["role"] == "active" and health["mqtt"] == "connected", health
        finally:
            database.rmdir()
            moved.rename(database)
        health = _healthz(server)
        assert health["database"] == "ok" and health["role"] == "active", health
        assert server.proc is not None and server.proc.poll() is None


@pytest.fixture
def own_pg_database() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database of this test alone (its connections are refused in the test):
    its name and URL; dropped afterwards."""
    if not _pg_available():
        pytest.skip("PostgreSQL not reachable")
    name = f"consultease_health_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield name, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _refuse_connections(name: str, allow: bool) -> int:
    """Allow or refuse new connections to database ``name``; when refusing, end the open
    ones too (the servers' pools and lock connections). How many were ended."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(
                text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')
            )
            if allow:
                return 0
            ended = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            ).all()
            return len(ended)
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_postgresql_database_unreachable_the_active_exits_the_standby_says_database_error(
    own_pg_database: tuple[str, str], broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The database refuses every connection: the active server gives up its role and its
    MQTT connection (exit 75, docs/deployment.md 10b); the standby keeps answering
    ``/healthz`` with ``"database": "error"`` and does not become active until the database
    is back, then takes over."""
    name, url = own_pg_database
    a, b = _two_servers(url, broker, tmp_path)
    try:
        assert _healthz(a)["database"] == "ok" and _healthz(b)["database"] == "ok"
        assert _refuse_connections(name, allow=False) >= 2  # at least both lock connections
        assert a.proc is not None
        assert a.proc.wait(30) == LOST_LEADERSHIP_EXIT, a.log()
        assert "giving up the active role" in a.log()

        def sequence() -> list[str]:
            return _central_connections_never_overlap(broker.log_path.read_text())

        # Its MQTT connection is gone (the broker logs the closed socket):
        assert wait_until(lambda: sequence()[-1:] == ["-central-A"], timeout=15), sequence()

        assert wait_until(lambda: _healthz(b)["database"] == "error", timeout=30, interval=0.2)
        for _ in range(5):  # it stays so: standby, no MQTT, while the database refuses
            health = _healthz(b)
            assert health["role"] == "standby", health
            assert health["mqtt"] == "none" and health["database"] == "error", health
            time.sleep(0.5)
        r = httpx.get(b.url + "/api/v1/faculty", headers={"Authorization": "Bearer cek_x"})
        assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text

        _refuse_connections(name, allow=True)
        health = b.wait_role("active", timeout=60)
        assert health["database"] == "ok", health
        assert sequence()[-2:] == ["-central-A", "+central-B"], sequence()
    finally:
        a.stop()
        b.stop()
