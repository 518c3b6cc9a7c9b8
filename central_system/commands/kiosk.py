"""``consultease run`` (the kiosk) and ``consultease demo`` (the whole system, no setup)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

logger = logging.getLogger(__name__)

# Bound of the headless scenario (it normally takes a few seconds).
DEFAULT_HEADLESS_TIMEOUT_S = 60.0


def register(subparsers: Any) -> None:
    """Add the ``run`` and ``demo`` sub-commands."""
    run_p = subparsers.add_parser(
        "run",
        help="run the kiosk: a client of CONSULTEASE_SERVER_URL, or, unset, of its own "
        "server child on the configured broker and database",
        description="Run the kiosk window. With CONSULTEASE_SERVER_URL set it is a client of "
        "those servers (CONSULTEASE_SERVER_TOKEN from `consultease kiosk enroll`); unset, it "
        "starts its own `consultease server` child on a Unix socket, with the configured "
        "broker and database.",
    )
    run_p.add_argument(
        "--fullscreen", action="store_true", help="fill the screen (the touchscreen kiosk)"
    )
    run_p.set_defaults(func=run)

    demo_p = subparsers.add_parser(
        "demo",
        help="run everything with no setup: embedded broker, SQLite in a temp dir, its own "
        "server child, demo data, simulated desks",
    )
    demo_p.add_argument(
        "--headless",
        action="store_true",
        help="run a scripted scenario offscreen and print its timeline",
    )
    demo_p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_HEADLESS_TIMEOUT_S,
        help="bound of the headless scenario (s)",
    )
    demo_p.add_argument("--fullscreen", action="store_true", help="fill the screen")
    demo_p.add_argument(
        "--keep-data", action="store_true", help="keep the temporary data directory"
    )
    demo_p.set_defaults(func=demo)


def run(args: argparse.Namespace) -> int:
    """The kiosk against the configured broker and database."""
    from ..config import get_settings
    from ..services.display import display_problem, xcb_library_problem
    from ..services.rfid import create_reader
    from ..views.app import Kiosk, ensure_qapp

    settings = get_settings()
    # Qt would abort the process (SIGABRT) with a message that names no cause.
    no_display = display_problem(os.environ)
    if no_display is not None:
        print(
            f"consultease run: {no_display}; the kiosk needs a screen "
            "(`scripts/consultease serve` runs the central system without one).",
            file=sys.stderr,
        )
        return 2
    missing = xcb_library_problem()
    if missing is not None:
        print(f"consultease run: {missing}", file=sys.stderr)
        return 2
    app = ensure_qapp(sys.argv[:1])
    # Before anything starts: a SIGTERM during start-up (systemd stop) still ends cleanly.
    stopping = _quit_on_signals(app)
    # The kiosk is a client of the server's API, and only of it: the configured server(s),
    # or a `consultease server` child of its own on a Unix socket (the single-Pi case).
    from ..api.errors import KioskError
    from ..kiosk.api_backend import ApiBackend

    if settings.server_url:
        try:
            backend = ApiBackend.from_settings(settings)
        except (KioskError, ValueError) as err:
            print(f"consultease run: {err}", file=sys.stderr)
            return 2
    else:
        # Started after the window shows, and retried until it is up (a database or
        # broker that is late at boot delays the kiosk, it does not crash it).
        backend = ApiBackend.local_server(settings)
    reader = create_reader(settings.rfid_device)
    kiosk = Kiosk(None, reader, backend=backend)
    kiosk.show(fullscreen=args.fullscreen or settings.fullscreen)
    backend.start_in_background()
    try:
        return 0 if stopping.is_set() else int(app.exec())
    finally:
        kiosk.close()
        backend.close()


def demo(args: argparse.Namespace) -> int:
    """The demo: interactive window, or ``--headless`` scripted scenario."""
    from ..services.display import window_problem

    if args.headless:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    else:
        problem = window_problem()
        if problem is not None:
            # Before Qt starts: Qt would abort the process with no hint of what to do.
            print(
                f"{problem}; running the headless scenario instead "
                "(`scripts/consultease demo --headless`).",
                flush=True,
            )
            args.headless = True
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from ..demo.environment import DemoEnvironment

    print("Starting the ConsultEase demo…", flush=True)
    env = DemoEnvironment(keep_data=args.keep_data)
    # Until the Qt loop takes over the signals: SIGTERM and SIGHUP unwind like Ctrl+C, so
    # the finally below stops everything and removes the temporary data directory.
    _unwind_on_termination()
    try:
        return _run_demo(args, env)
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr, flush=True)
        return 130
    finally:
        env.stop()


def _run_demo(args: argparse.Namespace, env: Any) -> int:
    """Start the demo environment and run the window or the scripted scenario on it."""
    from ..config import ConfigurationError, is_settings_error
    from ..demo.environment import DEMO_ADMIN, demo_cards
    from ..demo.scenario import Scenario, headless_steps, visible_messages
    from ..services.rfid import SimulatedRFIDReader
    from ..views.app import Kiosk, ensure_qapp

    try:
        env.start()
    except Exception as err:
        if isinstance(err, ConfigurationError) or is_settings_error(err):
            raise  # one line and exit 2, from cli.main like every command
        print(f"demo setup failed: {err}", file=sys.stderr)
        return 2
    s = env.settings
    print(f"  data directory: {env.data_dir}", flush=True)
    print(
        f"  MQTT broker:    {s.mqtt_host}:{s.mqtt_port}{' (embedded)' if env.broker else ''}",
        flush=True,
    )
    print(f"  simulated desks: {len(env.faculty_ids)} (improved mode)", flush=True)
    print(f"  central system: server child process {env.backend.pid}", flush=True)
    if env.admin_password:
        # Shown once, never stored in clear: there is no default password.
        print(f"  admin login:    {DEMO_ADMIN} / {env.admin_password}", flush=True)
    app = ensure_qapp(sys.argv[:1])
    reader = SimulatedRFIDReader()
    kiosk = Kiosk(None, reader, backend=env.backend)
    stopping = _quit_on_signals(app)

    # A closed terminal ends the demo like Ctrl+C (the temporary data goes with it).
    def hang_up(*_: object) -> None:
        stopping.set()
        app.quit()

    signal.signal(signal.SIGHUP, hang_up)
    try:
        if args.headless:
            kiosk.window.show()
            scenario = Scenario(
                headless_steps(env, kiosk),
                args.timeout,
                diagnose=lambda: visible_messages(kiosk.window),
            )
            scenario.finished.connect(lambda _ok: app.quit())
            scenario.start()
            app.exec()
            ok = bool(scenario.ok) and not stopping.is_set()
            print("DEMO OK" if ok else "DEMO FAILED", flush=True)
            return 0 if ok else 1
        kiosk.show(fullscreen=args.fullscreen or s.fullscreen)
        kiosk.show_simulated_reader(demo_cards())
        return 0 if stopping.is_set() else int(app.exec())
    finally:
        kiosk.close()


def _unwind_on_termination() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt (Python's default for them kills outright)."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def _quit_on_signals(app: Any) -> threading.Event:
    """Ctrl+C / SIGTERM quit the Qt loop cleanly (Python handlers run between Qt events).

    The returned event is set by the signal, for a signal that arrives before the loop runs.
    """
    from PySide6.QtCore import QTimer

    from . import install_signal_handlers

    stopping = threading.Event()

    def on_signal() -> None:
        stopping.set()
        app.quit()

    install_signal_handlers(on_signal)
    timer = QTimer(app)
    timer.start(250)  # wake the interpreter so the signal handler gets to run
    timer.timeout.connect(lambda: None)
    return stopping
