"""The demo's world: broker, temporary data, the central system, demo data, desks (no Qt).

The demo needs no setup: SQLite in a fresh temporary data directory, the embedded
MQTT broker (unless ``CONSULTEASE_MQTT_HOST`` is set), the central system as the
kiosk's own ``consultease server`` child (as ``consultease run`` starts it), demo
faculty and students entered over the API, and one simulated desk unit per faculty
member (improved mode). ``scenario.py`` drives the kiosk on it; ``commands/kiosk.py``
shows the window.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEMO_DIR_PREFIX = "consultease-demo-"
# In each demo directory: the pid of the demo that owns it, and a marker for --keep-data.
DEMO_OWNER_FILE = "owner.pid"
DEMO_KEEP_FILE = "keep"
# A demo directory from before owner files existed is stale once it is this old.
UNOWNED_DEMO_DIR_MAX_AGE_S = 3600.0

# (name, department, email, present at the desk)
DEMO_FACULTY: list[tuple[str, str, str, bool]] = [
    ("Dr. Ana Reyes", "Computer Science", "ana.reyes@example.edu", True),
    ("Prof. Ben Cruz", "Computer Science", "ben.cruz@example.edu", True),
    ("Dr. Carla Santos", "Mathematics", "carla.santos@example.edu", False),
    ("Prof. Dan Lim", "Physics", "dan.lim@example.edu", True),
    ("Dr. Eva Tan", "Mathematics", "eva.tan@example.edu", True),
    ("Prof. Felix Go", "Physics", "felix.go@example.edu", False),
]
# (name, student number, department, card UID)
DEMO_STUDENTS: list[tuple[str, str, str, str]] = [
    ("Maria Garcia", "2023-0001", "Computer Science", "A1B2C3D4"),
    ("John Santos", "2023-0002", "Mathematics", "0A1B2C3D"),
    ("Liza Ramos", "2023-0003", "Physics", "DEADBEEF"),
]
# A card that is not registered, to show how the kiosk refuses it.
UNKNOWN_CARD = "FFFF0001"
DEMO_ADMIN = "admin"
# Seconds to wait for the demo's desks to connect and report presence.
DESKS_READY_TIMEOUT_S = 20.0


def demo_cards() -> list[tuple[str, str]]:
    """The cards shown on the simulated reader panel: (label, UID)."""
    cards = [(f"{name} ({number})", uid) for name, number, _dept, uid in DEMO_STUDENTS]
    cards.append(("Unregistered card", UNKNOWN_CARD))
    return cards


def _owner_alive(owner_file: Path) -> bool:
    """True while the process named in ``owner_file`` runs and is the one that wrote it."""
    import psutil

    try:
        pid = int(owner_file.read_text().strip())
        started = float(psutil.Process(pid).create_time())
    except (OSError, ValueError, psutil.Error):
        return False
    # A reused pid belongs to a process started after the file was written.
    return started <= owner_file.stat().st_mtime + 1.0


def remove_stale_demo_dirs(tmp_dir: Path | None = None) -> list[Path]:
    """Remove demo data directories left by demos that died (Qt abort, SIGKILL, power cut).

    Only this user's directories; never one kept with ``--keep-data`` or one whose demo
    still runs. Returns what was removed.
    """
    base = Path(tmp_dir or tempfile.gettempdir())
    removed = []
    for path in sorted(base.glob(f"{DEMO_DIR_PREFIX}*"))[:1000]:  # bounded: a /tmp can be huge
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
            if (path / DEMO_KEEP_FILE).exists():
                continue
            owner = path / DEMO_OWNER_FILE
            if owner.exists():
                if _owner_alive(owner):
                    continue
            elif time.time() - path.stat().st_mtime < UNOWNED_DEMO_DIR_MAX_AGE_S:
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        logger.info("removed %d stale demo directories", len(removed))
    return removed


def _seed_over_api(backend: Any, settings: Any) -> dict[str, Any]:
    """The demo's data through the server's API, as an administrator would enter it.

    The first administrator is created in the demo's own database (the API has no
    endpoint that creates one without signing in); then the kiosk's client signs in,
    adds faculty and students, and signs out again.
    """
    from ..controllers.admin_controller import AdminController
    from ..db import create_db_engine

    engine = create_db_engine(settings.effective_database_url)
    try:
        admins = AdminController(db=engine)
        password = None
        if admins.needs_first_admin():
            password = admins.generate_password()
            admins.create_first_admin(DEMO_ADMIN, password)
    finally:
        engine.dispose()
    if password is None:
        raise RuntimeError("the demo's fresh database already has an administrator")
    backend.admin_login(DEMO_ADMIN, password)
    try:
        faculty = {
            name: backend.save_faculty(None, name, dept, email, DEMO_ADMIN).id
            for name, dept, email, _present in DEMO_FACULTY
        }
        students = {
            name: backend.register_student(name, number, dept, uid, DEMO_ADMIN).id
            for name, number, dept, uid in DEMO_STUDENTS
        }
    finally:
        backend.client.sign_out()
    return {"faculty": faculty, "students": students, "admin_password": password}


@dataclass
class DemoEnvironment:
    """Broker, database, seeded data and simulated desks for the demo and for screenshots."""

    data_dir: Path | None = None
    keep_data: bool = False
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    desks: bool = True

    def __post_init__(self) -> None:
        self.broker: Any = None
        # The central system: a ``consultease server`` child on a Unix socket, spoken to
        # over the API, exactly as ``consultease run`` starts it (``ApiBackend.local_server``).
        self.backend: Any = None
        self._settings: Any = None
        self.fleet: Any = None
        self.faculty_ids: dict[str, int] = {}
        self.student_ids: dict[str, int] = {}
        self.admin_password: str | None = None
        self._own_dir = False

    @property
    def settings(self) -> Any:
        """The settings the demo runs with."""
        return self._settings

    def start(self) -> DemoEnvironment:
        """Start broker, central system, seed data and desks (before any Qt loop runs)."""
        from ..config import get_settings
        from ..kiosk.api_backend import ApiBackend
        from ..services.embedded_broker import EmbeddedBroker

        if self.data_dir is None:
            remove_stale_demo_dirs()
            self.data_dir = Path(tempfile.mkdtemp(prefix=DEMO_DIR_PREFIX))
            self._own_dir = True
            # Lets a later demo remove this directory if this one dies before stop().
            (self.data_dir / DEMO_OWNER_FILE).write_text(f"{os.getpid()}\n")
            if self.keep_data:
                (self.data_dir / DEMO_KEEP_FILE).write_text("kept with --keep-data\n")
        base = get_settings()
        update: dict[str, Any] = {
            "data_dir": self.data_dir,
            "database_url": None,
            "mqtt_client_id": f"consultease-demo-{uuid.uuid4().hex[:8]}",
        }
        if not os.environ.get("CONSULTEASE_MQTT_HOST"):
            self.broker = EmbeddedBroker().start()
            update.update(
                mqtt_host=self.broker.host,
                mqtt_port=self.broker.port,
                # amqtt speaks MQTT 3.1.1 only.
                mqtt_protocol="3.1.1" if base.mqtt_protocol == "auto" else base.mqtt_protocol,
            )
        update.update(self.settings_overrides)
        settings = base.model_copy(update=update)
        self._settings = settings
        self.backend = ApiBackend.local_server(settings).start()
        self._seed()
        if self.desks:
            self._start_desks()
        return self

    def _seed(self) -> None:
        # No default password anywhere: a random one, shown once on the console.
        seeded = _seed_over_api(self.backend, self.settings)
        self.faculty_ids = dict(seeded["faculty"])
        self.student_ids = dict(seeded["students"])
        self.admin_password = seeded["admin_password"]

    def _start_desks(self) -> None:
        from faculty_desk_unit.fleet import DeskFleet

        names = {fid: name for name, fid in self.faculty_ids.items()}
        s = self.settings
        self.fleet = DeskFleet(
            len(names),
            s.mqtt_host,
            s.mqtt_port,
            mode="improved",
            faculty_ids=list(names),
            names=names.__getitem__,
        ).start()
        self.fleet.wait_all_connected(DESKS_READY_TIMEOUT_S)
        for name, _dept, _email, present in DEMO_FACULTY:
            if not present:
                self.fleet.by_faculty[self.faculty_ids[name]].set_present(False)
        self.wait_for_presence(DESKS_READY_TIMEOUT_S)

    def wait_for_presence(self, timeout: float) -> bool:
        """Wait until the central system shows every demo desk online with its presence."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = True
            for name, _dept, _email, present in DEMO_FACULTY:
                f = self.backend.get_faculty(self.faculty_ids[name])
                expected = "available" if present else "away"
                if f is None or not f.desk_online or f.status != expected:
                    ok = False
                    break
            if ok:
                return True
            time.sleep(0.1)
        logger.warning("demo desks did not all report presence within %.0f s", timeout)
        return False

    def desk(self, faculty_name: str) -> Any:
        """The simulated desk of ``faculty_name``."""
        return self.fleet.by_faculty[self.faculty_ids[faculty_name]]

    def stop(self) -> None:
        """Stop desks, the central system and the broker; remove the temporary data."""
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self._own_dir and not self.keep_data and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
