"""``consultease desk-unit`` (one simulated desk, interactive) and ``desk-units`` (a headless fleet).

The simulator lives in ``faculty_desk_unit`` (it is a desk unit, not part of the
central system) and is imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

# How often the interactive view re-checks for changes, and the headless stats period.
_UI_POLL_S = 0.25
_STATS_PERIOD_S = 5.0


def register(subparsers: Any) -> None:
    """Add the ``desk-unit`` and ``desk-units`` sub-commands."""
    one = subparsers.add_parser(
        "desk-unit",
        help="run one simulated faculty desk unit in this terminal (a=acknowledge b=busy p=present w=away q=quit)",
    )
    one.add_argument("--faculty-id", type=int, required=True, help="Faculty.id of the desk")
    one.add_argument(
        "--name", default=None, help="faculty name shown and sent (default: 'Faculty N')"
    )
    _common(one)
    one.add_argument("--away", action="store_true", help="boot with the faculty member away")
    one.set_defaults(func=run_one)

    many = subparsers.add_parser(
        "desk-units", help="run many simulated desk units headless (demos and load tests)"
    )
    many.add_argument("--count", type=int, default=200, help="number of desks (default 200)")
    many.add_argument(
        "--first-faculty-id", type=int, default=1, help="faculty id of the first desk"
    )
    _common(many)
    many.add_argument(
        "--auto-ack",
        type=float,
        default=None,
        metavar="SECONDS",
        help="acknowledge every request after SECONDS",
    )
    many.add_argument(
        "--flap",
        action="store_true",
        help="every --flap-interval s: toggle the presence of a tenth of the desks, drop the "
        "Wi-Fi of another tenth for 0.2-3 s, sometimes one desk's for over 90 s, sometimes reboot one",
    )
    many.add_argument(
        "--flap-presence-only",
        action="store_true",
        help="with --flap: only toggle presence, never drop Wi-Fi or reboot",
    )
    many.add_argument("--flap-interval", type=float, default=20.0)
    many.add_argument(
        "--connect-spread",
        type=float,
        default=2.0,
        help="spread the first connects over this many seconds",
    )
    many.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: Ctrl+C)",
    )
    many.set_defaults(func=run_many)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("firmware", "improved"), default="firmware")
    p.add_argument("--host", default=None, help="broker host (default: CONSULTEASE_MQTT_HOST)")
    p.add_argument(
        "--port", type=int, default=None, help="broker port (default: CONSULTEASE_MQTT_PORT)"
    )
    p.add_argument("--username", default=None, help="broker username of the desk")
    p.add_argument(
        "--password-env",
        default=None,
        metavar="VAR",
        help="read the broker password from this environment variable (never from the command line)",
    )
    p.add_argument("--heartbeat-interval", type=float, default=30.0, help="seconds (firmware: 30)")


def _broker(args: argparse.Namespace) -> tuple[str, int]:
    from ..config import get_settings

    settings = get_settings()
    return args.host or settings.mqtt_host, args.port or settings.mqtt_port


def _password(args: argparse.Namespace) -> str | None:
    return os.environ.get(args.password_env) if args.password_env else None


# ---------------------------------------------------------------------- one desk, interactive


@contextlib.contextmanager
def _raw_keys(enabled: bool) -> Iterator[None]:
    """Single keys without echo while the terminal is ours; restored on exit."""
    if not enabled:
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _render(desk: Any, tty_mode: bool, note: str) -> str:
    state = (
        "connected" if desk.connected else ("AUTH FAILED" if desk.auth_failed else "connecting…")
    )
    lines = [
        f"Desk unit · faculty {desk.faculty_id} · {desk.faculty_name} · {desk.mode} mode",
        f"broker {desk.host}:{desk.port} {state} · client id {desk.client_id or '-'}",
        f"faculty: {'AVAILABLE' if desk.present else 'AWAY'} · uptime {desk.uptime_ms() // 1000}s",
        "",
    ]
    queue = desk.queue
    if queue:
        lines.append(f"{len(queue)} request(s), oldest first:")
        for i, request in enumerate(queue, 1):
            lines.append(
                f" {i:>2}. #{request.cid} {request.student_name} (SID {request.sid}): {request.message[:200]}"
            )
    else:
        lines.append("no requests")
    lines += ["", "keys: a=acknowledge oldest  b=busy oldest  p=present  w=away  q=quit"]
    if note:
        lines.append(note)
    text = "\n".join(lines)
    return ("\x1b[2J\x1b[H" + text) if tty_mode else ("\n" + text)


def _apply_key(desk: Any, key: str) -> tuple[bool, str]:
    """Act on one key; returns (keep running, a note for the screen)."""
    key = key.strip().lower()[:1]
    if key == "q":
        return False, ""
    if key in ("a", "b"):
        answered = desk.acknowledge() if key == "a" else desk.busy()
        if answered is None:
            return True, "nothing to answer"
        verb = "ACKNOWLEDGE" if key == "a" else "BUSY"
        return True, f"sent {verb} for #{answered.cid}"
    if key == "p":
        desk.set_present(True)
        return True, "faculty present"
    if key == "w":
        desk.set_present(False)
        return True, "faculty away (requests are ignored, like the firmware)"
    return True, f"unknown key {key!r}" if key else ""


def run_one(args: argparse.Namespace) -> int:
    """Run one desk in the terminal until q, EOF-then-Ctrl+C, SIGINT or SIGTERM."""
    from faculty_desk_unit import DeskUnit

    from . import install_signal_handlers

    host, port = _broker(args)
    desk = DeskUnit(
        args.faculty_id,
        args.name or f"Faculty {args.faculty_id}",
        host,
        port,
        mode=args.mode,
        heartbeat_interval=args.heartbeat_interval,
        username=args.username,
        password=_password(args),
        present=not args.away,
    )
    stop = threading.Event()
    changed = threading.Event()
    desk.on_change = lambda _d: changed.set()
    install_signal_handlers(stop.set)
    tty_mode = sys.stdin.isatty()
    desk.start()
    note = ""
    stdin_open = True
    shown = ""
    try:
        with _raw_keys(tty_mode):
            while not stop.is_set():
                screen = _render(desk, tty_mode, note)
                # Redraw on change only (uptime ticks do not count), so line mode is not flooded.
                if changed.is_set() or _strip_uptime(screen) != _strip_uptime(shown):
                    changed.clear()
                    print(screen, flush=True)
                    shown = screen
                if not stdin_open:
                    stop.wait(_UI_POLL_S)
                    continue
                ready, _, _ = select.select([sys.stdin], [], [], _UI_POLL_S)
                if not ready:
                    continue
                data = os.read(sys.stdin.fileno(), 64).decode(errors="replace")
                if data == "":
                    stdin_open = False  # EOF on piped input: keep serving until a signal
                    continue
                for key in data if tty_mode else data.splitlines():
                    keep, note = _apply_key(desk, key)
                    if not keep:
                        stop.set()
                        break
                    shown = ""
    finally:
        desk.stop()
    return 0


def _strip_uptime(screen: str) -> str:
    return re.sub(r"uptime \d+s", "", screen)


# ---------------------------------------------------------------------- many desks, headless


def run_many(args: argparse.Namespace) -> int:
    """Run a fleet of desks and print a stats line every few seconds until Ctrl+C."""
    from faculty_desk_unit import DeskFleet

    from . import install_signal_handlers

    if args.count < 1:
        print("--count must be at least 1", file=sys.stderr)
        return 2
    host, port = _broker(args)
    fleet = DeskFleet(
        args.count,
        host,
        port,
        args.mode,
        heartbeat_interval=args.heartbeat_interval,
        first_faculty_id=args.first_faculty_id,
        username=args.username,
        password=_password(args),
        auto_ack=args.auto_ack,
        flap_interval=args.flap_interval if args.flap else None,
        flap_links=not args.flap_presence_only,
        connect_spread=args.connect_spread,
    )
    stop = threading.Event()
    install_signal_handlers(stop.set)
    started = time.monotonic()
    print(
        f"starting {args.count} {args.mode}-mode desks (faculty {args.first_faculty_id}…"
        f"{args.first_faculty_id + args.count - 1}) against {host}:{port}; Ctrl+C stops",
        flush=True,
    )
    fleet.start()
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if args.duration is not None and elapsed >= args.duration:
                break
            period = _STATS_PERIOD_S
            if args.duration is not None:
                period = min(period, args.duration - elapsed)
            if stop.wait(period):
                break
            print(f"[{time.monotonic() - started:6.0f}s] {fleet.stats_line()}", flush=True)
    finally:
        fleet.stop()
        print(f"stopped: {fleet.stats_line()}", flush=True)
    return 0
