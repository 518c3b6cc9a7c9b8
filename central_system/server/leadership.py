"""Which server is the active one: decided by the database itself, not a protocol of ours.

* PostgreSQL: the active server holds a session-level advisory lock on a
  dedicated connection. PostgreSQL releases it when that connection dies (the
  server was killed, the connection was terminated), and a standby polling
  ``pg_try_advisory_lock`` wins it. The active server checks its connection
  every ``server_lock_check_s``; if the check fails it can no longer know that it
  holds the lock, so it exits at once (an exit closes its MQTT socket: no second
  publisher) and its supervisor restarts it as a standby.
* SQLite: one server per database file. An exclusive ``flock`` on
  ``<database>.server.lock`` (released by the kernel when the process dies); a
  second server on the same file refuses to start.
* A kiosk's own server (``consultease run`` with no ``CONSULTEASE_SERVER_URL``) runs only
  where it is the database's one central system. On SQLite the file lock sees to it. On
  PostgreSQL it refuses to run beside a ``consultease server`` (active or standby) or
  beside another kiosk's own server, and gives way when a ``consultease server`` starts
  on its database: several kiosks share a database through a server, never directly.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

# "Consu" in ASCII: one key for every ConsultEase server of a database (advisory locks
# are per database, so deployments on one PostgreSQL cluster do not meet).
ADVISORY_LOCK_KEY: Final = 0x436F6E7375
CONNECT_TIMEOUT_S: Final = 3
# The lock connection's application_name says who holds it (pg_stat_activity shows it).
SERVER_LOCK_APP: Final = "consultease-server-lock"
KIOSK_LOCK_APP: Final = "consultease-kiosk-lock"
KIOSK_REFUSAL_HINT: Final = (
    "a kiosk's own central system must be the only one on its database. Run "
    "`consultease server` (docs/deployment.md, 10a) and set CONSULTEASE_SERVER_URL and "
    "CONSULTEASE_SERVER_TOKEN on every kiosk"
)
# libpq: a dead peer is noticed within a few seconds, not the kernel's two hours.
_KEEPALIVES: Final[dict[str, Any]] = {
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 2,
    "tcp_user_timeout": 3000,
}


class LeadershipError(RuntimeError):
    """This server cannot run: another one holds the SQLite database (its message says what to do)."""


class KioskServerRefused(LeadershipError):
    """A kiosk's own server may not run on this database (its message says what to do)."""


def is_sqlite(url: str) -> bool:
    """True for a SQLite database URL."""
    return make_url(url).get_backend_name() == "sqlite"


class SQLiteLeadership:
    """One server per SQLite file: an exclusive, non-blocking ``flock`` beside the database."""

    def __init__(self, url: str) -> None:
        database = make_url(url).database or ""
        if not database or database == ":memory:":
            raise LeadershipError("the server needs a SQLite database file, not :memory:")
        self.lock_path = Path(database).with_name(Path(database).name + ".server.lock")
        self._fd: int | None = None
        self.holder = ""  # the pid in the lock file, when another server holds it
        self.db_ok = True

    def acquire(self) -> None:
        """Take the lock or raise :class:`LeadershipError` naming the holder's pid."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            self.holder = holder
            raise LeadershipError(
                f"another ConsultEase server (pid {holder}) already runs on this SQLite database "
                f"({self.lock_path.with_suffix('').with_suffix('')}); only one may. Stop it, or "
                "use PostgreSQL to run an active and a standby server."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (the kernel does it anyway when the process ends)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class PostgresLeadership:
    """Polls for the advisory lock; once held, watches the connection that holds it."""

    def __init__(
        self,
        url: str,
        on_elected: Callable[[], None],
        on_lost: Callable[[str], None],
        *,
        poll_s: float = 1.0,
        check_s: float = 0.5,
        key: int = ADVISORY_LOCK_KEY,
        kiosk_tag: str | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        """``kiosk_tag`` (names the kiosk) makes this a kiosk's own server: alone or not at all."""
        self._conninfo = (
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._on_elected = on_elected
        self._on_lost = on_lost
        self.poll_s = poll_s
        self.check_s = check_s
        self.key = key
        self.kiosk_tag = kiosk_tag
        self._on_refused = on_refused
        self.application_name = (
            SERVER_LOCK_APP if kiosk_tag is None else f"{KIOSK_LOCK_APP} {kiosk_tag[-40:]}"
        )
        self.db_ok = False
        self.holding = False
        self.backend_pid: int | None = None  # the lock connection's PostgreSQL pid
        self._stop = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name="server-leadership", daemon=True)

    def start(self) -> None:
        """Start trying for the lock in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop trying or watching, and close the lock connection (releasing the lock)."""
        self._stop.set()
        self._thread.join(5)
        self._close()

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=self.application_name,
            **_KEEPALIVES,
        )
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("closing the lock connection failed", exc_info=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    self.backend_pid = int(self._conn.info.backend_pid)
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                refusal = self._kiosk_refusal(bool(row and row[0])) if self.kiosk_tag else None
                self.db_ok = True
            except Exception as err:
                self.db_ok = False
                logger.warning("standby: the database does not answer (%s); retrying", err)
                self._close()
                self._stop.wait(self.poll_s)
                continue
            if refusal is not None:
                self._close()  # gives the lock back if this attempt took it
                self._refuse(refusal)
                return
            if row and row[0]:
                break
            self._stop.wait(self.poll_s)
        else:
            return
        self.holding = True
        logger.info(
            "this server holds the active lock (PostgreSQL backend pid %s)", self.backend_pid
        )
        try:
            self._on_elected()
        except Exception:
            logger.exception("becoming the active server failed")
            self._on_lost("becoming active failed")
            return
        self._watch()

    def _watch(self) -> None:
        while not self._stop.wait(self.check_s):
            try:
                row = self._conn.execute("SELECT 1").fetchone()
                if not row:
                    raise RuntimeError("no answer")
                self.db_ok = True
                # A kiosk's own server looks for a `consultease server` at every check: one
                # that starts beside it (both started at boot, say) waits at most this long.
                if self.kiosk_tag and self._servers_present():
                    self._refuse(
                        "a `consultease server` started on this PostgreSQL database, so "
                        f"this kiosk's own central system gives way: {KIOSK_REFUSAL_HINT}"
                    )
                    return
            except Exception as err:
                self.db_ok = False
                self.holding = False
                if not self._stop.is_set():
                    self._on_lost(f"the connection holding the active lock failed: {err}")
                return

    # ------------------------------------------------------------------ a kiosk's own server

    def _refuse(self, reason: str) -> None:
        if self._on_refused is not None:
            self._on_refused(reason)  # it says why (one line) and exits
        else:
            logger.error("%s", reason)

    def _servers_present(self) -> bool:
        """A ``consultease server`` (active or standby) holds a lock connection on this database."""
        row = self._conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s",
            (SERVER_LOCK_APP,),
        ).fetchone()
        return bool(row and row[0])

    def _kiosk_refusal(self, took_lock: bool) -> str | None:
        """Why a kiosk's own server may not run here, or None (it may, or may wait its turn).

        Refused beside a ``consultease server`` and beside another kiosk's own server that
        holds the lock. It waits for a lock held by this kiosk's previous server (one that
        just died, whose connection PostgreSQL has not closed yet) or by someone unknown.
        """
        if self._servers_present():
            return (
                "a `consultease server` runs on this PostgreSQL database, so this kiosk does "
                f"not start its own central system: {KIOSK_REFUSAL_HINT}"
            )
        if took_lock:
            return None
        holder = self._conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (self.key >> 32, self.key & 0xFFFFFFFF),
        ).fetchone()
        name = str(holder[0] or "") if holder else ""
        if name.startswith(KIOSK_LOCK_APP) and name != self.application_name:
            return (
                "another kiosk's own central system runs on this PostgreSQL database, so this "
                f"kiosk does not start one: {KIOSK_REFUSAL_HINT}"
            )
        return None
