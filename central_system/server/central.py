"""The server's life: standby or active, and the central system it runs while active.

While active it owns what ``consultease run`` used to own in its child process:
the database, the one MQTT connection, the controllers, liveness and the outbox
relay. While standby (or starting) it owns nothing but its lock connection and
answers ``/healthz``; every API call gets 503.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import uuid
from typing import Any, Final, Literal

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..controllers.kiosk_facade import KioskBackend
from ..db import ensure_sqlite_file, normalize_database_url, sqlite_file_answers
from .auth import Authenticator
from .events import EventHub
from .frequent import FrequentCalls
from .leadership import (
    KioskServerRefused,
    LeadershipError,
    PostgresLeadership,
    SQLiteLeadership,
    is_sqlite,
)

logger = logging.getLogger(__name__)

Role = Literal["starting", "standby", "active", "stopping"]
# Exit status of a server that lost its hold on the active role (its supervisor restarts it).
LOST_LEADERSHIP_EXIT: Final = 75
# Exit status of a kiosk's own server that may not run on its database (EX_CONFIG): the
# kiosk shows why and does not restart it (kiosk/local_server.py REFUSED_EXIT).
KIOSK_SERVER_REFUSED_EXIT: Final = 78


class CentralServer:
    """Holds the role, the running system (when active), the event hub and the authenticator."""

    def __init__(
        self,
        settings: Settings,
        *,
        local_kiosk_token: str | None = None,
        backend_factory: Any = KioskBackend,
    ) -> None:
        self.settings = settings
        self.server_id = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.role: Role = "starting"
        self.hub = EventHub(keepalive_s=settings.server_keepalive_s)
        self.system: Any = None
        self.backend: KioskBackend | None = None
        self.auth: Authenticator | None = None
        self.frequent: FrequentCalls | None = None
        self.local_kiosk_token = local_kiosk_token
        # A kiosk's own server (``consultease run`` starts it with a token): its kiosk's host,
        # pid and token (a hash of it; the token lives as long as the kiosk's LocalServer) name
        # it on the database, so a restarted one knows its predecessor's lock connection.
        self.kiosk_tag = (
            f"{os.uname().nodename}:{os.getppid()}:"
            f"{hashlib.sha256(local_kiosk_token.encode()).hexdigest()[:8]}"
            if local_kiosk_token
            else None
        )
        self.backend_factory = backend_factory
        self._sqlite: SQLiteLeadership | None = None
        self._pg: PostgresLeadership | None = None
        self._lock = threading.Lock()
        self.start_error: str | None = None

    @property
    def url(self) -> str:
        """The database URL."""
        return self.settings.effective_database_url

    # ------------------------------------------------------------------ lifecycle

    def claim(self) -> None:
        """Before serving: on SQLite take the file lock (raises LeadershipError if held).

        A database URL that cannot work raises what ``consultease`` reports in one line
        (DatabaseLocationError, ArgumentError): a standby would otherwise wait for it forever.
        """
        url = make_url(normalize_database_url(self.url))
        backend = url.get_dialect().name  # NoSuchModuleError (an ArgumentError): unknown scheme
        if backend not in ("sqlite", "postgresql"):
            raise ArgumentError(f"a ConsultEase server runs on SQLite or PostgreSQL, not {backend}")
        if is_sqlite(self.url):
            ensure_sqlite_file(url.database)
            self._sqlite = SQLiteLeadership(self.url)
            try:
                self._sqlite.acquire()
            except LeadershipError as err:
                if self.kiosk_tag is None or not self._sqlite.holder:
                    raise
                raise KioskServerRefused(
                    f"another ConsultEase server (pid {self._sqlite.holder}) runs on this SQLite "
                    "database, so this kiosk does not start its own central system; if it is "
                    "this machine's `consultease server`, set CONSULTEASE_SERVER_URL and "
                    "CONSULTEASE_SERVER_TOKEN on this kiosk to use it (docs/deployment.md, 10a)"
                ) from err

    def start(self) -> None:
        """Become active now (SQLite) or start trying for the role (PostgreSQL). Non-blocking."""
        if is_sqlite(self.url):
            if self._sqlite is None:
                self.claim()
            threading.Thread(target=self._activate_or_die, name="server-start", daemon=True).start()
        else:
            self.role = "standby"
            self._pg = PostgresLeadership(
                self.url,
                self._activate,
                self._lost,
                poll_s=self.settings.server_standby_poll_s,
                check_s=self.settings.server_lock_check_s,
                kiosk_tag=self.kiosk_tag,
                on_refused=self._refused,
            )
            self._pg.start()

    def _activate_or_die(self) -> None:
        try:
            self._activate()
        except Exception as err:
            self.start_error = f"{err.__class__.__name__}: {err}"
            logger.exception("the central system could not start")
            self._lost(f"start failed: {self.start_error}")

    def _activate(self) -> None:
        """Build and start the central system (database migrations, MQTT, controllers)."""
        from ..bootstrap import build_system

        if self._pg is not None and self.settings.server_takeover_grace_s:
            # A deposed active server exits within one lock check: let it go first.
            threading.Event().wait(self.settings.server_takeover_grace_s)
        with self._lock:
            if self.role == "stopping":
                return
            system = build_system(self.settings)
            system.start()
            backend = self.backend_factory(system)
            backend.connect_events(self.hub)
            self.auth = Authenticator(
                sessionmaker(bind=system.engine, expire_on_commit=False),
                self.local_kiosk_token,
                unknown_cards_per_window=self.settings.server_unknown_cards_per_minute,
            )
            self.frequent = FrequentCalls(system.engine, self.auth, backend)
            backend.connect_events(self.frequent)  # changes invalidate its shared answers
            self.system = system
            self.backend = backend
            self.role = "active"
        logger.info("this server is active (%s)", self.server_id)

    def _lost(self, reason: str) -> None:
        """The active role is lost or cannot be held: stop publishing at once by exiting."""
        logger.critical(
            "giving up the active role: %s; exiting so no second server publishes", reason
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        # os._exit: no clean MQTT stop (it would publish and wait for acknowledgements);
        # the kernel closes the MQTT socket now and the broker sends our last will.
        os._exit(LOST_LEADERSHIP_EXIT)

    def _refused(self, reason: str) -> None:
        """A kiosk's own server may not run here: one line, and an exit its kiosk recognises."""
        print(f"consultease server: {reason}", file=sys.stderr, flush=True)
        for handler in logging.getLogger().handlers:
            handler.flush()
        # As in _lost: no clean MQTT stop while it may be active (a real server takes over).
        os._exit(KIOSK_SERVER_REFUSED_EXIT)

    def stop(self) -> None:
        """Stop serving: the central system flushes and says offline; the lock is released."""
        with self._lock:
            self.role = "stopping"
            backend, system, frequent = self.backend, self.system, self.frequent
            self.backend = None
            self.frequent = None
            self.system = None
        if self._pg is not None:
            # Before the system stops: a lock check failing during shutdown is not "lost".
            self._pg.stop()
        if frequent is not None:
            frequent.close()
        if backend is not None:
            backend.disconnect_events()
        if system is not None:
            system.stop()
        if self._sqlite is not None:
            self._sqlite.release()

    # ------------------------------------------------------------------ health

    @property
    def mqtt_state(self) -> str:
        """The MQTT service's state, or ``none`` while this server holds no connection."""
        system = self.system
        return str(system.mqtt.state) if system is not None else "none"

    def database_ok(self) -> bool:
        """One cheap round trip to the database (the active one's pool, or the lock connection).

        On SQLite also a fresh connection to the file: a pooled one answers ``SELECT 1``
        from a database file that was removed or replaced by something else.
        """
        system = self.system
        if system is not None:
            try:
                with system.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except Exception:
                return False
            database = system.engine.url.database
            return not is_sqlite(self.url) or sqlite_file_answers(database or "")
        if self._pg is not None:
            return self._pg.db_ok
        return self._sqlite is not None

    def session_factory(self) -> sessionmaker[Session] | None:
        """Sessions on the active system's database (None while not active)."""
        system = self.system
        return sessionmaker(bind=system.engine) if system is not None else None
