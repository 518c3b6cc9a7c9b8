"""PostgreSQL's pool hands out live connections, pinging only those that sat idle
(``db.ping_idle_connections``): a connection the database ended while it was idle is
replaced without an error, and one used a moment ago goes out without a round trip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from central_system import db as dbmod
from tests.conftest import _reset_pg

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_server_url: str) -> Iterator[Engine]:
    _reset_pg(pg_server_url)
    eng = dbmod.create_db_engine(pg_server_url)
    yield eng
    eng.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(url: str, pid: int) -> None:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


def test_an_idle_connection_the_database_ended_is_replaced_on_checkout(
    engine: Engine, pg_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbmod, "PING_IDLE_S", 0.0)  # every pooled connection counts as idle
    first = _backend_pid(engine)
    _terminate(pg_server_url, first)
    # The pooled connection is dead; the ping finds it and the pool connects anew.
    second = _backend_pid(engine)
    assert second != first


def test_a_connection_used_a_moment_ago_is_handed_out_without_a_ping(
    engine: Engine, pg_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbmod, "PING_IDLE_S", 3600.0)
    first = _backend_pid(engine)
    _terminate(pg_server_url, first)
    # Not pinged: the dead connection is used as it is, and that one use fails ...
    with pytest.raises(OperationalError):
        _backend_pid(engine)
    # ... after which the pool has let it go.
    assert _backend_pid(engine) != first
