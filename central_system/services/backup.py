"""Database backup and restore.

SQLite: sqlite3's online backup API (a consistent copy while the kiosk runs).
PostgreSQL: ``pg_dump -Fc`` / ``pg_restore --clean --if-exists``, called with
argument lists (never a shell); the password travels in ``PGPASSWORD``, never
on the command line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from sqlalchemy.engine import URL, make_url

logger = logging.getLogger(__name__)

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_PG_DUMP_MAGIC: Final = b"PGDMP"
_PG_TIMEOUT_S: Final = 600


class BackupError(ValueError):
    """A backup or restore could not be made; the message says why."""


def _url(url: str | None) -> URL:
    if url is None:
        from ..config import get_settings

        url = get_settings().effective_database_url
    return make_url(url)


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("An in-memory SQLite database cannot be backed up.")
    return Path(url.database)


def _file_magic(path: Path, size: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


def backup_database(dest_path: str | os.PathLike[str], url: str | None = None) -> Path:
    """Write a consistent backup of the database to ``dest_path``; returns the path."""
    dest = Path(dest_path).absolute()
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory; give a file name for the backup.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    parsed = _url(url)
    backend = parsed.get_backend_name()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if backend == "sqlite":
            _sqlite_backup(_sqlite_path(parsed), tmp)
        elif backend == "postgresql":
            _run_pg(["pg_dump", "--format=custom", "--no-owner", "--file", str(tmp)], parsed)
        else:
            raise BackupError(f"Backups of {backend} databases are not supported.")
        os.chmod(tmp, 0o600)  # a backup holds password hashes: owner-only
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    logger.info("database backed up to %s (%d bytes)", dest, dest.stat().st_size)
    return dest


def restore_database(src_path: str | os.PathLike[str], url: str | None = None) -> None:
    """Replace the database's contents with the backup at ``src_path``. Stop the kiosk first."""
    src = Path(src_path).absolute()
    if not src.is_file():
        raise BackupError(f"There is no backup file at {src}.")
    parsed = _url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if _file_magic(src, len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise BackupError(f"{src} is not a SQLite backup (was it made from PostgreSQL?).")
        _sqlite_restore(src, _sqlite_path(parsed))
    elif backend == "postgresql":
        if _file_magic(src, len(_PG_DUMP_MAGIC)) != _PG_DUMP_MAGIC:
            raise BackupError(f"{src} is not a pg_dump custom-format backup.")
        _run_pg(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                "--exit-on-error",
                str(src),
            ],
            parsed,
            dbname_flag=True,
        )
    else:
        raise BackupError(f"Restoring {backend} databases is not supported.")
    logger.info("database restored from %s", src)


# --------------------------------------------------------------------------- SQLite


def _sqlite_backup(source: Path, dest: Path) -> None:
    if not source.exists():
        raise BackupError(f"The database file {source} does not exist.")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            # A single self-contained file: no -wal companion needed to read it.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def _sqlite_restore(backup: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{backup}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target, timeout=30)
        try:
            # The backup API replaces every page of the target under its lock, so
            # readers never see half a restore.
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


# --------------------------------------------------------------------------- PostgreSQL


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} is not installed (apt-get install postgresql-client).")
    return found


def _run_pg(args: list[str], url: URL, *, dbname_flag: bool = False) -> None:
    """Run a PostgreSQL client tool with connection details in arguments and the password in env."""
    if not url.database:
        raise BackupError("The PostgreSQL URL names no database.")
    argv = [_pg_tool(args[0]), *args[1:]]
    if url.host:
        argv += ["--host", url.host]
    if url.port:
        argv += ["--port", str(url.port)]
    if url.username:
        argv += ["--username", url.username]
    argv += ["--no-password"]  # never prompt: a cron job would hang
    argv += ["--dbname", url.database] if dbname_flag else [url.database]
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    try:
        result = subprocess.run(  # noqa: S603 - fixed tool, argument list, no shell
            argv, env=env, capture_output=True, text=True, timeout=_PG_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise BackupError(f"{args[0]} did not finish within {_PG_TIMEOUT_S} s.") from err
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-800:]
        raise BackupError(f"{args[0]} failed (exit {result.returncode}): {detail}")
