"""Engine and sessions: ``init_db()`` once per process, ``get_db()`` for a session.

SQLite runs in WAL mode with ``synchronous=FULL`` so a committed outbox row
survives a power cut; PostgreSQL is used as configured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from .config import get_settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def create_db_engine(url: str) -> Engine:
    """An engine for ``url`` with ConsultEase's connection settings."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=8,
            max_overflow=8,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)


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
        target = url or get_settings().effective_database_url
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
def session_scope() -> Iterator[Session]:
    """A session that commits on success, rolls back on error, and always closes."""
    session = get_db()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


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
