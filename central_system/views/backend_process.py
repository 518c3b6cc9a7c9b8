"""The kiosk's backend in a process of its own.

The central system (database, the one MQTT service, controllers, liveness) runs
in a child process; the kiosk process keeps the Qt thread, the task worker and
one thread that reads events. Why: CPython runs one thread at a time per process.
With the service's writer, network and dispatch threads beside the Qt thread, a
burst of MQTT work made the 60 Hz frame wait for the interpreter lock (issue 4,
docs/performance.md "Kiosk responsiveness"); in another process that work can no
longer delay a touch.

Two socket pairs join the processes, each carrying pickled messages
(:mod:`multiprocessing.connection`). They are created by the kiosk and inherited by
the child only: nothing else can connect to them, so unpickling is as safe as an
in-process call.

* *calls*: the kiosk's worker sends ``(id, method, args, kwargs)`` for a method of
  :class:`~central_system.views.backend.KioskBackend`; the child answers
  ``(id, True, result)`` or ``(id, False, (kiosk_error, class_name, message))``.
  Calls are served one at a time, in order, as the in-process worker did.
* *events*: the child forwards controller and MQTT-state events in batches,
  newest-wins per consultation / faculty member (as :class:`MqttBridge` does), to
  a reader thread that hands them to the bridge.

The child exits when the kiosk closes the call socket (or dies: the socket reads
EOF). If the child dies, calls fail with a :class:`KioskError` the screens show,
the header shows the central system as unavailable, and the child is restarted
with a growing delay.

Run the child by hand only through this module (``python -m
central_system.views.backend_process --calls-fd N --events-fd M``); it reads its
settings from the first message on the call socket.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .backend import KioskError, OutcomeUnknownError

# Not __name__: the child runs this module as __main__.
logger = logging.getLogger("central_system.views.backend_process")

DEFAULT_FACTORY = "central_system.views.backend:KioskBackend"
# How long the child may take to build the system, migrate and connect its service.
START_TIMEOUT_S = 60.0
# A call that gets no answer this long is given up (a backup of a large database is the
# slowest call the kiosk makes).
CALL_TIMEOUT_S = 300.0
# Events gather this long in the child before a batch is sent (one message, not one per event).
EVENT_BATCH_S = 0.003
RESTART_DELAY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# How long close() waits for a running call before it kills a stuck child.
CLOSE_LOCK_WAIT_S = 5.0
# States the bridge shows (beside the MQTT service's own): the child is starting for the
# first time, it died and is being restarted, or starting it failed and is being retried.
STARTING_STATE = "starting"
BACKEND_DOWN_STATE = "backend_down"
BACKEND_FAILED_STATE = "backend_failed"

UNAVAILABLE = "The kiosk lost its connection to the central system. Please try again in a moment."
STARTING = "The kiosk is still starting. Please try again in a moment."
OUTCOME_UNKNOWN = (
    "The kiosk lost its connection to the central system before it answered; "
    "what you did may or may not have been saved."
)


class RemoteCallError(Exception):
    """An unexpected error raised by the backend in the child process (not a KioskError)."""

    def __init__(self, class_name: str, message: str) -> None:
        super().__init__(f"{class_name}: {message}" if message else class_name)
        self.class_name = class_name


# ---------------------------------------------------------------------------- child side


class EventForwarder:
    """Stands in for the bridge in the child: gathers events and sends them in batches."""

    def __init__(self, conn: Connection, batch_s: float = EVENT_BATCH_S) -> None:
        self._conn = conn
        self._batch_s = batch_s
        self._cond = threading.Condition()
        self._pending: dict[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="kiosk-events", daemon=True)
        self.sent_batches = 0
        self.sent_events = 0

    def start(self) -> EventForwarder:
        self._thread.start()
        return self

    def on_consultation(self, consultation_id: int, status: str) -> None:
        self._post(("c", int(consultation_id)), "consultation", (int(consultation_id), str(status)))

    def on_faculty(self, faculty_id: int) -> None:
        self._post(("f", int(faculty_id)), "faculty", (int(faculty_id),))

    def on_mqtt_state(self, state: str) -> None:
        self._post(("m",), "mqtt_state", (str(state),))

    def _post(self, key: tuple[Any, ...], kind: str, args: tuple[Any, ...]) -> None:
        with self._cond:
            self._pending.pop(key, None)  # re-insert: the newest event goes last
            self._pending[key] = (kind, args)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed and not self._pending:
                    return
            time.sleep(self._batch_s)  # let a burst gather into one message
            with self._cond:
                batch = list(self._pending.values())
                self._pending.clear()
            try:
                self._conn.send(batch)
            except (OSError, EOFError, ValueError):
                return  # the kiosk is gone; the call loop sees it too and exits
            self.sent_batches += 1
            self.sent_events += len(batch)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5)


def _load_factory(path: str) -> Callable[[Any], Any]:
    module_name, _, attr = path.partition(":")
    factory: Callable[[Any], Any] = getattr(importlib.import_module(module_name), attr)
    return factory


def _public_methods(backend: Any) -> list[str]:
    """The calls the kiosk may make: the backend's public methods but the event wiring."""
    return sorted(
        name
        for name in dir(type(backend))
        if not name.startswith("_")
        and name not in ("connect_events", "disconnect_events")
        and callable(getattr(type(backend), name))
    )


def _error_reply(err: BaseException) -> tuple[bool, str, str]:
    return (isinstance(err, KioskError), err.__class__.__name__, str(err))


def serve(calls: Connection, events: Connection) -> int:
    """The child's main loop: build the system, answer calls until the kiosk hangs up."""
    from ..bootstrap import build_system
    from ..cli import setup_logging

    init = calls.recv()
    setup_logging(init.get("log_level", "INFO"))
    settings = init["settings"]
    # Before any thread starts (threads inherit it): the kiosk's Qt thread wins the CPU.
    nice = int(getattr(settings, "kiosk_backend_nice", 0))
    if nice:
        os.nice(nice)
    try:
        system = build_system(settings)
        system.start()
        backend = _load_factory(init.get("factory", DEFAULT_FACTORY))(system)
    except Exception as err:
        logger.exception("the kiosk's backend could not start")
        calls.send(("failed", f"{err.__class__.__name__}: {err}"))
        return 1
    forwarder = EventForwarder(events).start()
    backend.connect_events(forwarder)
    allowed = frozenset(_public_methods(backend))
    calls.send(("ready", (system.mqtt.state, sorted(allowed))))
    logger.info("kiosk backend ready (pid %d)", os.getpid())
    try:
        while True:
            try:
                msg = calls.recv()
            except (EOFError, OSError):
                break  # the kiosk closed or died
            if msg is None:
                break
            call_id, method, args, kwargs = msg
            try:
                if method not in allowed:
                    raise AttributeError(f"{method!r} is not a backend call")
                result = getattr(backend, method)(*args, **kwargs)
                reply: tuple[Any, ...] = (call_id, True, result)
            except Exception as err:
                if not isinstance(err, KioskError):
                    logger.exception("backend call %s failed", method)
                reply = (call_id, False, _error_reply(err))
            try:
                calls.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError) as err:
                logger.exception("the result of %s could not be sent", method)
                calls.send((call_id, False, _error_reply(err)))
            except (OSError, EOFError):
                break
    finally:
        backend.disconnect_events()
        forwarder.close()
        system.stop()
        logger.info("kiosk backend stopped")
    return 0


def child_main(argv: list[str] | None = None) -> int:
    """``python -m central_system.views.backend_process --calls-fd N --events-fd M``."""
    parser = argparse.ArgumentParser(description="the kiosk's backend (started by the kiosk)")
    parser.add_argument("--calls-fd", type=int, required=True)
    parser.add_argument("--events-fd", type=int, required=True)
    args = parser.parse_args(argv)
    # The kiosk decides when this process ends (it hangs up the call socket). Ctrl+C in a
    # terminal and systemd's stop signal reach the whole process group: ignoring them here
    # lets the kiosk stop first and this process flush the MQTT service and say "offline".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    calls = Connection(args.calls_fd)
    events = Connection(args.events_fd)
    try:
        return serve(calls, events)
    finally:
        calls.close()
        events.close()


# ---------------------------------------------------------------------------- kiosk side


class BackendProcess:
    """Starts, talks to and restarts the child process that runs the central system.

    Use it where the kiosk would use a :class:`KioskBackend`: every public method of
    ``KioskBackend`` is a blocking call here too (worker thread only), and
    :meth:`connect_events` forwards the child's events to the bridge.
    """

    def __init__(
        self,
        settings: Any,
        factory: str = DEFAULT_FACTORY,
        *,
        log_level: str | None = None,
        start_timeout: float = START_TIMEOUT_S,
        call_timeout: float = CALL_TIMEOUT_S,
        restart: bool = True,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.log_level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.restart = restart
        self.mqtt_state = STARTING_STATE
        self.restarts = 0
        self.start_failures = 0
        self.last_start_error = ""
        self._started_once = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._calls: Connection | None = None
        self._call_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._bridge: Any = None
        self._reader: threading.Thread | None = None
        self._closing = threading.Event()
        self._generation = 0
        self._methods: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        """The process id of the current (or, while restarting, the last) child; None before start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        """The child is running and answering calls."""
        return self._calls is not None and self._proc is not None and self._proc.poll() is None

    def start(self) -> BackendProcess:
        """Start the child and wait until its system is built and started (bounded).

        Raises RuntimeError when it cannot start (see :meth:`start_in_background`).
        """
        self._spawn()
        return self

    def start_in_background(self) -> BackendProcess:
        """Start the child without waiting, retrying with a growing delay until it is up.

        What a kiosk wants at boot: the window shows at once ("starting…"), and a
        database or broker that is not up yet delays the kiosk instead of crashing it
        into systemd's restart limit.
        """
        threading.Thread(
            target=self._restart_loop, args=(True,), name="kiosk-backend-start", daemon=True
        ).start()
        return self

    def _spawn(self) -> None:
        calls_parent, calls_child = socket.socketpair()
        events_parent, events_child = socket.socketpair()
        cmd = [
            sys.executable,
            "-m",
            "central_system.views.backend_process",
            "--calls-fd",
            str(calls_child.fileno()),
            "--events-fd",
            str(events_child.fileno()),
        ]
        try:
            # An argument list of our own interpreter and module: no shell, no user input.
            proc = subprocess.Popen(  # noqa: S603
                cmd, pass_fds=(calls_child.fileno(), events_child.fileno())
            )
        finally:
            calls_child.close()
            events_child.close()
        calls = Connection(calls_parent.detach())
        events = Connection(events_parent.detach())
        try:
            calls.send(
                {"settings": self.settings, "factory": self.factory, "log_level": self.log_level}
            )
            if not calls.poll(self.start_timeout):
                raise RuntimeError(
                    f"the kiosk's backend did not start within {self.start_timeout:.0f} s"
                )
            kind, detail = calls.recv()
            if kind != "ready":
                raise RuntimeError(f"the kiosk's backend failed to start: {detail}")
        except BaseException:
            calls.close()
            events.close()
            _kill(proc)
            raise
        self._generation += 1
        self._started_once = True
        self._proc = proc
        self._calls = calls
        state, methods = detail
        self.mqtt_state = str(state)
        self._methods = frozenset(methods)
        self._reader = threading.Thread(
            target=self._read_events,
            args=(events, self._generation),
            name="kiosk-backend-events",
            daemon=True,
        )
        self._reader.start()
        if self._bridge is not None:
            self._bridge.on_mqtt_state(self.mqtt_state)

    def close(self, timeout: float = 15.0) -> None:
        """Ask the child to stop (it flushes the MQTT service) and wait for it (bounded).

        A child stuck in a call (holding the call socket) or slow to stop is killed: what
        it had saved is safe in the database and its outbox.
        """
        self._closing.set()
        proc = self._proc
        if self._call_lock.acquire(timeout=CLOSE_LOCK_WAIT_S):
            try:
                calls, self._calls = self._calls, None
                if calls is not None:
                    with contextlib.suppress(OSError, EOFError):
                        calls.send(None)
                    calls.close()
            finally:
                self._call_lock.release()
        elif proc is not None:
            logger.warning("the kiosk's backend is stuck in a call: killing it")
            _kill(proc)  # the stuck call then reads EOF and returns
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("the kiosk's backend did not stop in %.0f s: killing it", timeout)
                _kill(proc)
        if self._reader is not None:
            self._reader.join(5)

    # ------------------------------------------------------------------ calls

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``KioskBackend.<method>(*args, **kwargs)`` in the child; blocks (worker thread)."""
        with self._call_lock:
            calls = self._calls
            if calls is None:
                raise KioskError(UNAVAILABLE if self._started_once else STARTING)
            call_id = next(self._ids)
            try:
                calls.send((call_id, method, args, kwargs))
            except (OSError, EOFError) as err:
                raise KioskError(UNAVAILABLE) from err  # never reached the child
            # From here on the child may have acted on the call: a missing answer is not
            # "nothing happened" (a request may be saved and on its way to the desk).
            try:
                deadline = time.monotonic() + self.call_timeout
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not calls.poll(remaining):
                        raise OutcomeUnknownError(
                            "The central system did not answer in time; "
                            "what you did may or may not have been saved."
                        )
                    reply_id, ok, payload = calls.recv()
                    if reply_id == call_id:
                        break
                    # An answer to a call that timed out earlier: drop it.
            except (OSError, EOFError) as err:
                raise OutcomeUnknownError(OUTCOME_UNKNOWN) from err
        if ok:
            return payload
        is_kiosk_error, class_name, message = payload
        if is_kiosk_error:
            raise KioskError(message)
        raise RemoteCallError(class_name, message)

    def system_stats(self) -> dict[str, Any]:
        """The child's statistics, plus what only the kiosk knows: the child's restarts."""
        stats: dict[str, Any] = self.call("system_stats")
        stats["backend"] = f"child process {self.pid}, restarts {self.restarts}"
        return stats

    def __getattr__(self, name: str) -> Any:
        # Only the child backend's public methods are calls (KioskBackend's, or the
        # factory's subclass's); anything else is a programming error, found here.
        if name.startswith("_") or name not in self.__dict__.get("_methods", ()):
            raise AttributeError(name)

        def remote(*args: Any, **kwargs: Any) -> Any:
            return self.call(name, *args, **kwargs)

        remote.__name__ = name
        return remote

    # ------------------------------------------------------------------ events

    def connect_events(self, bridge: Any) -> None:
        """Forward the child's events to ``bridge`` (called on the reader thread)."""
        self._bridge = bridge
        bridge.on_mqtt_state(self.mqtt_state)

    def disconnect_events(self) -> None:
        self._bridge = None

    def _read_events(self, events: Connection, generation: int) -> None:
        try:
            while True:
                try:
                    batch = events.recv()
                except (EOFError, OSError):
                    break
                bridge = self._bridge
                for kind, args in batch:
                    if kind == "mqtt_state":
                        self.mqtt_state = args[0]
                    if bridge is None:
                        continue
                    try:
                        getattr(bridge, f"on_{kind}")(*args)
                    except Exception:
                        logger.exception("event %s could not be delivered", kind)
        finally:
            events.close()
        if not self._closing.is_set() and generation == self._generation:
            self._child_died()

    def _child_died(self) -> None:
        with self._call_lock:
            if self._calls is not None:
                self._calls.close()
            self._calls = None
        proc = self._proc
        code = proc.wait(10) if proc is not None else None
        logger.error("the kiosk's backend exited unexpectedly (exit code %s)", code)
        self._set_state(BACKEND_DOWN_STATE)
        if self.restart:
            threading.Thread(
                target=self._restart_loop, name="kiosk-backend-restart", daemon=True
            ).start()

    def _restart_loop(self, first_start: bool = False) -> None:
        for attempt in itertools.count():
            if attempt or not first_start:
                delay = RESTART_DELAY_S[min(attempt, len(RESTART_DELAY_S) - 1)]
                if self._closing.wait(delay):
                    return
            try:
                self._spawn()
            except Exception as err:
                self.start_failures += 1
                self.last_start_error = str(err)
                logger.error(
                    "starting the kiosk's backend failed (attempt %d): %s", attempt + 1, err
                )
                self._set_state(BACKEND_FAILED_STATE)
                continue
            if self._closing.is_set():  # the kiosk closed while the child was starting
                self.close()
                return
            if not first_start:
                self.restarts += 1
                logger.warning("the kiosk's backend was restarted (pid %s)", self.pid)
            return

    def _set_state(self, state: str) -> None:
        self.mqtt_state = state
        bridge = self._bridge
        if bridge is not None:
            bridge.on_mqtt_state(state)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # SIGKILL: the child ignores SIGTERM by design (only the kiosk's hang-up stops it).
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


if __name__ == "__main__":
    sys.exit(child_main())
