"""A ``consultease server`` child of the kiosk, on a Unix socket, for a kiosk with no server.

With ``CONSULTEASE_SERVER_URL`` unset the kiosk still needs a central system. This
starts one for it: ``consultease server --uds <data_dir>/run/kiosk-<pid>.sock`` with
a token generated here (passed in the child's environment, never stored), at a
lower CPU priority (``kiosk_backend_nice``) so the screen goes first. The kiosk
talks to it with the same API client as to a remote server: one protocol.

The child exits when the kiosk dies (it watches its parent), and the kiosk restarts
a child that died (1, 2, 5, 10, then every 30 s), reporting ``starting``,
``backend_down`` (restarting) and ``backend_failed`` (cannot start) on the way.

A kiosk's own central system must be the only one on its database: beside a
``consultease server`` (or another kiosk's own server on PostgreSQL) the child
says why in one line and exits ``REFUSED_EXIT``. That is a setting to change, not a
crash: the kiosk reports ``backend_refused`` and does not start it again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ..api.transport import Transport, TransportError

logger = logging.getLogger(__name__)

START_TIMEOUT_S: Final = 60.0
MAX_SOCKET_PATH: Final = 100
RESTART_DELAY_S: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
STARTING_STATE: Final = "starting"
BACKEND_DOWN_STATE: Final = "backend_down"
BACKEND_FAILED_STATE: Final = "backend_failed"
BACKEND_REFUSED_STATE: Final = "backend_refused"
# The child's exit status when it may not run on this database (server/central.py,
# KIOSK_SERVER_REFUSED_EXIT): another central system uses it; CONSULTEASE_SERVER_URL is the fix.
REFUSED_EXIT: Final = 78
REFUSED_MESSAGE: Final = (
    "another ConsultEase server uses this kiosk's database, so the kiosk does not start its "
    "own central system: run `consultease server` and set CONSULTEASE_SERVER_URL and "
    "CONSULTEASE_SERVER_TOKEN on this kiosk (docs/deployment.md, 10a)"
)
# A child ended by one of these was asked to stop; the kiosk is probably closing too and
# gets this long to say so before the exit counts as unexpected (and is restarted).
STOP_SIGNALS: Final = frozenset({-signal.SIGTERM, -signal.SIGINT})
STOP_GRACE_S: Final = 3.0
# What the child (``consultease server``) reads from its environment.
PARENT_ENV: Final = "CONSULTEASE_SERVER_PARENT_PID"
TOKEN_ENV: Final = "CONSULTEASE_SERVER_LOCAL_TOKEN"  # noqa: S105 (a variable name)
NICE_ENV: Final = "CONSULTEASE_SERVER_NICE"


def settings_env(settings: Any) -> dict[str, str]:
    """``CONSULTEASE_*`` variables that rebuild ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        env[f"CONSULTEASE_{name.upper()}"] = str(value)
    # The child serves this kiosk only: never a remote URL of its own.
    env.pop("CONSULTEASE_SERVER_URL", None)
    env.pop("CONSULTEASE_SERVER_TOKEN", None)
    return env


class ChildExitedError(RuntimeError):
    """The child exited before it answered as active; ``code`` is its exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(
            REFUSED_MESSAGE
            if code == REFUSED_EXIT
            else f"the central system exited at start (status {code})"
        )
        self.code = code


class LocalServer:
    """Starts, watches and restarts the kiosk's own server process."""

    def __init__(
        self,
        settings: Any,
        *,
        on_state: Callable[[str], None] | None = None,
        start_timeout: float = START_TIMEOUT_S,
        restart: bool = True,
        log_level: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.extra_env = dict(extra_env or {})
        self.token = "cek_" + secrets.token_urlsafe(32)
        self.socket_path = Path(settings.data_dir) / "run" / f"kiosk-{os.getpid()}.sock"
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            # AF_UNIX paths are limited to 108 bytes: a private directory in /tmp instead.
            self.socket_path = Path(tempfile.mkdtemp(prefix="consultease-kiosk-")) / "server.sock"
        self.on_state = on_state
        self.start_timeout = start_timeout
        self.restart = restart
        self.log_level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self.state = STARTING_STATE
        self.restarts = 0
        self.start_failures = 0
        self.last_start_error = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The current (or last) child's pid."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        """The child runs."""
        return self._proc is not None and self._proc.poll() is None

    def _set_state(self, state: str) -> None:
        self.state = state
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                logger.exception("state listener failed")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalServer:
        """Start the child and wait (bounded) until it answers as active; RuntimeError if not."""
        self._spawn()
        threading.Thread(target=self._watch, name="kiosk-server-watch", daemon=True).start()
        return self

    def start_in_background(self) -> LocalServer:
        """Start without waiting, retrying with a growing delay until it is up."""
        threading.Thread(
            target=self._restart_loop, args=(True,), name="kiosk-server-start", daemon=True
        ).start()
        return self

    def _spawn(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CONSULTEASE_")},
            **settings_env(self.settings),
            TOKEN_ENV: self.token,
            PARENT_ENV: str(os.getpid()),
            NICE_ENV: str(int(getattr(self.settings, "kiosk_backend_nice", 0))),
            **self.extra_env,
        }
        cmd = [
            sys.executable,
            "-m",
            "central_system.cli",
            "--log-level",
            self.log_level,
            "server",
            "--uds",
            str(self.socket_path),
        ]
        # Our own interpreter and module, an argument list: no shell, no user input.
        proc = subprocess.Popen(cmd, env=env)  # noqa: S603
        try:
            self._wait_active(proc)
        except BaseException:
            _kill(proc)
            raise
        with self._lock:
            self._proc = proc
        # From here the event stream reports the child's MQTT state.
        self.state = "running"

    def _wait_active(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        http = Transport(
            ssl_context=None, uds=str(self.socket_path), connect_timeout=2.0, read_timeout=2.0
        )
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise ChildExitedError(proc.returncode)
                if self._closing.is_set():
                    raise RuntimeError("closing")
                try:
                    health = http.request("GET", "http://kiosk", "/healthz").json()
                    if health.get("role") == "active":
                        return
                except (TransportError, ValueError):
                    pass
                time.sleep(0.1)
        finally:
            http.close()
        raise RuntimeError(f"the central system did not start within {self.start_timeout:.0f} s")

    def _watch(self) -> None:
        proc = self._proc
        if proc is None:
            return
        code = proc.wait()
        if code in STOP_SIGNALS:
            # Stopped, not crashed: Ctrl+C or systemd signals the whole process group, and
            # the child may finish before the kiosk's own handler starts closing it.
            self._closing.wait(STOP_GRACE_S)
        if self._closing.is_set():
            return
        if code == REFUSED_EXIT:
            self._refused()  # it gave way to a `consultease server` that started
            return
        logger.error("the kiosk's central system exited unexpectedly (status %s)", code)
        self._set_state(BACKEND_DOWN_STATE)
        if self.restart:
            self._restart_loop()

    def _refused(self) -> None:
        """The child may not run on this database: say so once and start no other."""
        self.last_start_error = REFUSED_MESSAGE
        logger.error("%s; not restarting it", REFUSED_MESSAGE)
        self._set_state(BACKEND_REFUSED_STATE)

    def _restart_loop(self, first_start: bool = False) -> None:
        for attempt in itertools.count():
            if attempt or not first_start:
                delay = RESTART_DELAY_S[min(attempt, len(RESTART_DELAY_S) - 1)]
                if self._closing.wait(delay):
                    return
            try:
                self._spawn()
            except Exception as err:
                if isinstance(err, ChildExitedError) and err.code in STOP_SIGNALS:
                    self._closing.wait(STOP_GRACE_S)  # stopped with the kiosk, see _watch
                if self._closing.is_set():
                    return
                if isinstance(err, ChildExitedError) and err.code == REFUSED_EXIT:
                    self.start_failures += 1
                    self._refused()
                    return
                self.start_failures += 1
                self.last_start_error = str(err)
                logger.error(
                    "starting the central system failed (attempt %d): %s", attempt + 1, err
                )
                self._set_state(BACKEND_FAILED_STATE)
                continue
            if not first_start:
                self.restarts += 1
                logger.warning("the kiosk's central system was restarted (pid %s)", self.pid)
            threading.Thread(target=self._watch, name="kiosk-server-watch", daemon=True).start()
            return

    def close(self, timeout: float = 15.0) -> None:
        """Stop the child (SIGTERM: it flushes MQTT and says offline), SIGKILL if it hangs."""
        self._closing.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.error("the central system did not stop within %.0f s: killing it", timeout)
                _kill(proc)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
