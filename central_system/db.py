"""Engine and sessions: ``init_db()`` once per process, ``get_db()`` for a session.

SQLite runs in WAL mode with ``synchronous=FULL`` so a committed outbox row
survives a power cut; PostgreSQL is used as configured.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from .config import ConfigurationError, get_settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# How long a writer waits for the process's SQLite write gate before it goes ahead anyway
# (SQLite's own busy handler then arbitrates, exactly as without the gate).
SQLITE_WRITE_GATE_TIMEOUT_S = 10.0
_WRITE_PREFIXES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


class SQLiteWriteGate:
    """Serialises SQLite write transactions of this process, so they queue instead of polling.

    SQLite allows one writer. A second connection that wants to write waits in
    SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between
    retries: a lock held for 20 ms costs the loser 33-53 ms. Here a connection
    takes the gate just before its transaction's first write and gives it back
    right after COMMIT/ROLLBACK; the next writer is woken at once.

    Deadlock-free by construction: the wait is bounded (``timeout``); after it the
    writer proceeds without the gate and SQLite's busy handler decides, as before.
    The gate is re-entrant per thread (across connections), so a nested session in
    the same thread behaves as it did without the gate (it meets SQLite's lock).
    Any thread may release a connection's hold (a pool reset can run elsewhere).
    """

    def __init__(self, timeout: float = SQLITE_WRITE_GATE_TIMEOUT_S) -> None:
        self.timeout = timeout
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None  # thread id
        self._holders: set[int] = set()  # id() of connections holding the gate
        self.acquisitions = 0
        self.waits = 0
        self.timeouts = 0

    def acquire(self, conn: object) -> bool:
        """Hold the gate for ``conn``; False when ``timeout`` passed (the caller goes ahead anyway)."""
        me = threading.get_ident()
        key = id(conn)
        with self._cond:
            if key in self._holders:
                return True
            if self._owner is not None and self._owner != me:
                self.waits += 1
                deadline = time.monotonic() + self.timeout
                while self._owner is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.timeouts += 1
                        logger.warning(
                            "SQLite write gate busy for %.0f s; writing without it", self.timeout
                        )
                        return False
                    self._cond.wait(remaining)
            self._owner = me
            self._holders.add(key)
            self.acquisitions += 1
            return True

    def release(self, conn: object) -> None:
        """Give back ``conn``'s hold (no-op when it holds none)."""
        with self._cond:
            self._holders.discard(id(conn))
            if not self._holders and self._owner is not None:
                self._owner = None
                self._cond.notify()

    def holds(self, conn: object) -> bool:
        """True while ``conn`` holds the gate."""
        with self._cond:
            return id(conn) in self._holders


sqlite_write_gate = SQLiteWriteGate()


def _is_write(sql: object) -> bool:
    return isinstance(sql, str) and sql.lstrip()[:7].upper().startswith(_WRITE_PREFIXES)


class _GatedCursor(sqlite3.Cursor):
    """Takes the write gate before a statement that writes (the first of its transaction)."""

    def execute(self, sql: str, parameters: Any = (), /) -> _GatedCursor:
        conn = self.connection
        if isinstance(conn, _GatedConnection) and not conn._gated and _is_write(sql):
            conn._take_gate()
        super().execute(sql, parameters)
        return self

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _GatedCursor:
        conn = self.connection
        if isinstance(conn, _GatedConnection) and not conn._gated and _is_write(sql):
            conn._take_gate()
        super().executemany(sql, seq_of_parameters)
        return self


class _GatedConnection(sqlite3.Connection):
    """A sqlite3 connection that holds :data:`sqlite_write_gate` from its first write to COMMIT/ROLLBACK."""

    _gated = False

    def _take_gate(self) -> None:
        # A timed-out wait leaves _gated False: the next write statement tries again.
        self._gated = sqlite_write_gate.acquire(self)

    def _drop_gate(self) -> None:
        if self._gated:
            self._gated = False
            sqlite_write_gate.release(self)

    def cursor(self, factory: Any = _GatedCursor) -> Any:
        """Cursors that take the write gate."""
        return super().cursor(factory)

    def commit(self) -> None:
        """COMMIT, then release the gate (kept if the transaction is still open)."""
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self._drop_gate()

    def rollback(self) -> None:
        """ROLLBACK, then release the gate."""
        try:
            super().rollback()
        finally:
            self._drop_gate()

    def close(self) -> None:
        """Close, then release the gate."""
        try:
            super().close()
        finally:
            self._drop_gate()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class DatabaseLocationError(ConfigurationError):
    """The SQLite database file cannot be created or written where the URL puts it."""


def _os_reason(err: OSError, target: Path) -> str:
    reason = f"{target}: {err.strerror or err}"
    if err.errno == errno.ENOENT and target.parent.is_dir():
        # The directory exists, yet creating in it says "no such file": /proc, /sys and the like.
        reason += f" ({target.parent} is on a file system that does not allow new files)"
    return reason


def sqlite_file_problem(path: Path, *, create: bool) -> str | None:
    """Why SQLite cannot create or write the database file ``path``; None when it can.

    With ``create`` the missing directories and the (empty) file are made, as SQLite
    would make the file on its first connection anyway. Without it only a probe is
    created in the nearest existing directory and removed at once (``doctor`` looks,
    it does not create). A probe is the only honest test: ``os.access`` says yes to
    root on file systems such as /proc that refuse every new file.
    """
    if path.exists():
        if path.is_dir():
            return f"{path} is a directory"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{path} is not readable and writable by this user"
        if not os.access(path.parent, os.W_OK | os.X_OK):
            # WAL mode keeps its -wal and -shm files beside the database.
            return f"the directory {path.parent} is not writable (SQLite writes its journal there)"
        return None
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o666))
        elif existing == path.parent:
            fd, probe = tempfile.mkstemp(prefix=".consultease-probe-", dir=existing)
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".consultease-probe-", dir=existing))
    except OSError as err:
        # Name what would be created (the first missing directory, or the file), not the probe.
        first_missing = path if existing == path.parent else path.relative_to(existing).parts[0]
        wanted = existing / first_missing if not create else Path(err.filename or path)
        return f"cannot create {_os_reason(err, wanted)}"
    return None


def ensure_sqlite_file(database: str | None) -> None:
    """Create the SQLite file ``database`` (and its directories) or raise DatabaseLocationError."""
    if database and database != ":memory:":
        problem = sqlite_file_problem(Path(database), create=True)
        if problem is not None:
            raise DatabaseLocationError(
                f"the database {database} cannot be created or written: {problem}"
                "; set CONSULTEASE_DATABASE_URL or CONSULTEASE_DATA_DIR to a writable place"
            )


def normalize_database_url(url: str) -> str:
    """``url`` with the driver we ship: ``postgresql://`` (as administrators type it, and as the
    original ConsultEase wrote it) means psycopg 3 here, not SQLAlchemy's default psycopg2;
    ``postgres://`` is accepted too; a bare file path is a SQLite file."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    try:
        parsed = make_url(url)
    except ValueError as err:  # a port that is not a number; the message does not quote the URL
        raise ArgumentError(f"the URL cannot be read: {err}") from err
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def sqlite_file_answers(path: str, timeout_s: float = 2.0) -> bool:
    """The SQLite database at ``path`` opens on a fresh connection and has a schema.

    A pooled connection keeps answering from a file that was removed or replaced (it
    holds the old inode and its pages): only a new connection sees what the path holds
    now. ``mode=rw`` creates nothing, and an empty file (no tables) is not our database.
    """
    try:
        conn = sqlite3.connect(
            f"{Path(path).resolve().as_uri()}?mode=rw", uri=True, timeout=timeout_s
        )
    except sqlite3.Error:
        return False
    try:
        row = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return bool(row and row[0])
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def create_db_engine(url: str) -> Engine:
    """An engine for ``url`` with ConsultEase's connection settings.

    Raises :class:`DatabaseLocationError` when a SQLite file cannot be created or written.
    """
    url = normalize_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_file(parsed.database)
        engine = create_engine(
            url,
            # _GatedConnection: writers of this process queue on a gate, not in the busy handler.
            connect_args={"check_same_thread": False, "timeout": 10, "factory": _GatedConnection},
            pool_size=8,
            max_overflow=8,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        engine = create_engine(url, pool_size=8, max_overflow=8)
    except ImportError as err:  # a dialect whose driver we do not ship (mysql://)
        raise ArgumentError(f"its driver is not installed: {err}") from err
    ping_idle_connections(engine)
    return engine


# A pooled PostgreSQL connection idle this long is pinged before it is handed out.
PING_IDLE_S = 10.0


def ping_idle_connections(engine: Engine) -> None:
    """Hand out only live connections, pinging just those that sat idle in the pool.

    ``pool_pre_ping`` pings every checkout: a round trip more for each transaction (a
    kiosk's request is five round trips without it). A connection checked in less than
    :data:`PING_IDLE_S` ago was just working, so it goes out as it is; an older one (the
    database restarted, a firewall dropped an idle connection between two machines, an
    ``idle_session_timeout``) is pinged, and a dead one is replaced (the pool retries the
    checkout on :class:`~sqlalchemy.exc.DisconnectionError`). A connection that dies while
    in use fails that one transaction, as it would with pre-ping.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("checked_in")
        if checked_in is None or time.monotonic() - checked_in < PING_IDLE_S:
            return  # new, or just used
        try:
            cursor = dbapi.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except Exception as err:
            raise DisconnectionError("an idle pooled connection no longer answers") from err


def alembic_config(url: str) -> Any:
    """An Alembic ``Config`` pointing at the packaged migrations and ``url``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def init_db(url: str | None = None, *, migrate: bool = True) -> Engine:
    """Create the process's engine (idempotent) and bring the schema up to date."""
    global _engine, _sessionmaker
    with _lock:
        target = normalize_database_url(url or get_settings().effective_database_url)
        if _engine is not None:
            if _engine.url.render_as_string(hide_password=False) == make_url(
                target
            ).render_as_string(hide_password=False):
                return _engine
            _engine.dispose()
        engine = create_db_engine(target)
        if migrate:
            upgrade_schema(engine)
        _engine = engine
        _sessionmaker = sessionmaker(bind=engine, expire_on_commit=False)
        logger.info("database ready: %s", engine.url.render_as_string(hide_password=True))
        return engine


def get_engine() -> Engine:
    """The process's engine; ``init_db()`` first."""
    if _engine is None:
        return init_db()
    return _engine


def get_db() -> Session:
    """A new session on the process's database. The caller closes it."""
    if _sessionmaker is None:
        init_db()
    assert _sessionmaker is not None
    return _sessionmaker()


@contextmanager
def unit_of_work(session: Session, *, close: bool = True) -> Iterator[Session]:
    """``session`` as one unit of work: committed on success, rolled back on error, and
    closed afterwards unless ``close`` is False (a session its caller owns)."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        if close:
            session.close()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success, rolls back on error, and always closes."""
    with unit_of_work(get_db()) as session:
        yield session


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return MigrationContext.configure(conn).get_current_revision()


def dispose_db() -> None:
    """Close every pooled connection and forget the engine (tests, shutdown)."""
    global _engine, _sessionmaker
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _sessionmaker = None
