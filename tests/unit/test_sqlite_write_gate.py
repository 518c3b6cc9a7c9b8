"""The process's SQLite write gate (central_system/db.py): writers queue, never poll, never deadlock."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from central_system import db as dbmod

THREADS = 6
TXNS_PER_THREAD = 25
HOLD_S = 0.004  # each transaction keeps SQLite's write lock this long


def _no_busy_wait(dbapi_conn: Any, _record: Any) -> None:
    # Runs after ConsultEase's pragmas: any writer that meets SQLite's lock fails at once
    # ("database is locked") instead of sleeping in the busy handler.
    dbapi_conn.execute("PRAGMA busy_timeout=0")


def _engine(tmp_path: Path, *, gated: bool) -> Engine:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    if gated:
        engine = dbmod.create_db_engine(url)
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", dbmod._sqlite_pragmas)
    event.listen(engine, "connect", _no_busy_wait)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, who TEXT)"))
    return engine


def _hammer(engine: Engine, *, orm: bool) -> tuple[int, list[BaseException]]:
    """THREADS threads, each TXNS_PER_THREAD write transactions; returns (rows, errors)."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        try:
            start.wait(10)
            for i in range(TXNS_PER_THREAD):
                if orm:
                    with Session(engine) as session:
                        session.execute(text("INSERT INTO t (who) VALUES (:w)"), {"w": f"{n}-{i}"})
                        time.sleep(HOLD_S)
                        session.commit()
                else:
                    with engine.connect() as conn:
                        conn.exec_driver_sql("INSERT INTO t (who) VALUES (?)", (f"{n}-{i}",))
                        time.sleep(HOLD_S)
                        conn.exec_driver_sql("UPDATE t SET who = who WHERE id = 1")
                        conn.commit()
        except BaseException as err:  # collected and asserted on below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a writer thread is stuck"
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM t")).scalar_one()
    return int(rows), errors


def test_without_the_gate_concurrent_writers_meet_sqlites_lock(tmp_path: Path) -> None:
    """Control: the scenario really contends (so the gated test below can fail)."""
    engine = _engine(tmp_path, gated=False)
    try:
        _rows, errors = _hammer(engine, orm=False)
    finally:
        engine.dispose()
    assert any("locked" in str(e) for e in errors), "no contention: the test proves nothing"


@pytest.mark.parametrize("orm", [False, True], ids=["core", "orm-session"])
def test_concurrent_writers_all_complete_without_the_busy_handler(
    tmp_path: Path, orm: bool
) -> None:
    """Six threads writing at once all commit, and none ever waits in SQLite's busy handler."""
    engine = _engine(tmp_path, gated=True)
    waits_before = dbmod.sqlite_write_gate.waits
    try:
        rows, errors = _hammer(engine, orm=orm)
    finally:
        engine.dispose()
    assert errors == []
    assert rows == THREADS * TXNS_PER_THREAD
    assert dbmod.sqlite_write_gate.waits > waits_before  # they did queue on the gate
    assert not dbmod.sqlite_write_gate.holds(object())


def test_gate_wait_is_bounded() -> None:
    """A holder that never lets go delays another writer by ``timeout`` at most."""
    gate = dbmod.SQLiteWriteGate(timeout=0.2)
    holder, other = object(), object()
    assert gate.acquire(holder)
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(gate.acquire(other)))
    t0 = time.monotonic()
    thread.start()
    thread.join(5)
    assert result == [False]
    assert 0.15 <= time.monotonic() - t0 < 3.0
    assert gate.timeouts == 1
    gate.release(holder)
    assert gate.acquire(other)  # free again
    gate.release(other)


def test_gate_is_reentrant_in_one_thread_and_released_from_any_thread() -> None:
    """Nested sessions in one thread do not wait on themselves; a pool reset elsewhere releases."""
    gate = dbmod.SQLiteWriteGate(timeout=0.2)
    outer, inner = object(), object()
    assert gate.acquire(outer)
    t0 = time.monotonic()
    assert gate.acquire(inner)  # same thread: no wait
    assert time.monotonic() - t0 < 0.1
    gate.release(inner)
    released = threading.Thread(target=gate.release, args=(outer,))
    released.start()
    released.join(5)
    assert gate.waits == 0
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(gate.acquire(object())))
    thread.start()
    thread.join(5)
    assert other == [True] and gate.timeouts == 0


def test_a_writer_waiting_on_another_thread_cannot_deadlock(tmp_path: Path) -> None:
    """A holds the write lock and waits for B; B needs to write. B gives up after the bounded wait."""
    engine = _engine(tmp_path, gated=True)
    gate = dbmod.sqlite_write_gate
    old_timeout, gate.timeout = gate.timeout, 0.3
    b_done = threading.Event()
    b_error: list[BaseException] = []

    def b() -> None:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("INSERT INTO t (who) VALUES ('b')")
                conn.commit()
        except OperationalError as err:
            b_error.append(err)
        finally:
            b_done.set()

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("INSERT INTO t (who) VALUES ('a')")
            thread = threading.Thread(target=b)
            thread.start()
            assert b_done.wait(10), "B is stuck behind A: deadlock"
            conn.commit()
        thread.join(5)
    finally:
        gate.timeout = old_timeout
        engine.dispose()
    # B went ahead after the gate's bounded wait and met SQLite's lock (busy_timeout 0 here).
    assert b_error and "locked" in str(b_error[0])


def test_gated_connection_releases_on_rollback_and_close(tmp_path: Path) -> None:
    """The gate is held from the first write to ROLLBACK, and a closed connection holds nothing."""
    conn = sqlite3.connect(tmp_path / "x.db", factory=dbmod._GatedConnection)
    try:
        conn.execute("CREATE TABLE u (x)")  # Connection.execute: no gated cursor, no hold
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert not dbmod.sqlite_write_gate.holds(conn)
        cur.execute("INSERT INTO u VALUES (1)")
        assert dbmod.sqlite_write_gate.holds(conn)
        conn.rollback()
        assert not dbmod.sqlite_write_gate.holds(conn)
        cur = conn.cursor()
        cur.execute("INSERT INTO u VALUES (2)")
        assert dbmod.sqlite_write_gate.holds(conn)
    finally:
        conn.close()
    assert not dbmod.sqlite_write_gate.holds(conn)
