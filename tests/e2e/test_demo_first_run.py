"""``consultease demo`` as a newcomer meets it: no display, Ctrl+C, a crash, leftovers.

Every case runs the real command in a child process with its own TMPDIR.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from central_system.demo.environment import DEMO_KEEP_FILE, DEMO_OWNER_FILE, remove_stale_demo_dirs
from tests.brokers import MosquittoBroker

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def _env(tmp_path: Path, broker: MosquittoBroker | None, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("CONSULTEASE_") or k.startswith("CONSULTEASE_TEST_"))
        and k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    env["TMPDIR"] = str(tmp_path)
    if broker is not None:  # a configured broker replaces the embedded one (faster)
        env.update(CONSULTEASE_MQTT_HOST="127.0.0.1", CONSULTEASE_MQTT_PORT=str(broker.port))
    env.update(extra)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "central_system.cli", "--log-level", "WARNING", *args]


def _demo_dirs(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("consultease-demo-*"))


def test_demo_without_a_display_says_so_and_runs_the_headless_scenario(tmp_path: Path) -> None:
    """A clean environment (no DISPLAY, no QT_QPA_PLATFORM, the embedded broker): exit 0."""
    result = subprocess.run(
        _cli("demo"),
        cwd=ROOT,
        env=_env(tmp_path, None),
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    first = out.splitlines()[0]
    assert first.startswith("no display: neither DISPLAY nor WAYLAND_DISPLAY is set")
    assert "running the headless scenario instead" in first
    assert "scripts/consultease demo --headless" in first
    assert out.rstrip().endswith("DEMO OK")
    assert "could not be initialized" not in result.stderr  # Qt never tried a real screen
    assert not _demo_dirs(tmp_path)


def test_run_without_a_display_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        _cli("run"), cwd=ROOT, env=_env(tmp_path, None), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no display" in lines[0] and "consultease serve" in lines[0]


def _start_window_demo(tmp_path: Path, broker: MosquittoBroker) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _cli("demo"),
        cwd=ROOT,
        env=_env(tmp_path, broker, QT_QPA_PLATFORM="offscreen"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], needle: str) -> str:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    proc.kill()
    raise AssertionError(f"{needle!r} never printed: {''.join(seen)}")


def _wait_for_dir(tmp_path: Path) -> Path:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        dirs = [d for d in _demo_dirs(tmp_path) if (d / DEMO_OWNER_FILE).exists()]
        if dirs:
            return dirs[0]
        time.sleep(0.02)
    raise AssertionError("the demo made no data directory")


def test_ctrl_c_in_the_window_demo_removes_its_data(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    proc = _start_window_demo(tmp_path, broker)
    _wait_for_line(proc, "admin login:")
    data_dir = _wait_for_dir(tmp_path)
    time.sleep(1.0)  # the Qt loop runs
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert not data_dir.exists()


def test_sigterm_during_setup_removes_the_data(tmp_path: Path, broker: MosquittoBroker) -> None:
    proc = _start_window_demo(tmp_path, broker)
    data_dir = _wait_for_dir(tmp_path)  # setup has begun, the window is not up yet
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    assert code in (0, 130), proc.stderr.read() if proc.stderr else ""
    assert not data_dir.exists()


def test_a_crashed_demo_leaves_nothing_after_the_next_run(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    """An abort (what Qt does when its platform fails) cannot be caught: the next demo cleans up."""
    proc = _start_window_demo(tmp_path, broker)
    _wait_for_line(proc, "admin login:")
    crashed = _wait_for_dir(tmp_path)
    proc.send_signal(signal.SIGABRT)
    assert proc.wait(timeout=60) == -signal.SIGABRT
    assert crashed.exists()  # nothing could run in the aborted process

    # Two directories the cleanup must leave: one kept on purpose, one of a running demo.
    kept = tmp_path / "consultease-demo-kept"
    kept.mkdir()
    (kept / DEMO_KEEP_FILE).write_text("")
    (kept / DEMO_OWNER_FILE).write_text("999999999\n")
    running = tmp_path / "consultease-demo-running"
    running.mkdir()
    (running / DEMO_OWNER_FILE).write_text(f"{os.getpid()}\n")

    result = subprocess.run(
        _cli("demo", "--headless"),
        cwd=ROOT,
        env=_env(tmp_path, broker, QT_QPA_PLATFORM="offscreen"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not crashed.exists()
    assert _demo_dirs(tmp_path) == [kept, running]


def test_stale_directory_rules(tmp_path: Path) -> None:
    """Dead owner: removed. Reused pid (a process started after the file): removed. No owner file: kept while young."""
    dead = tmp_path / "consultease-demo-dead"
    dead.mkdir()
    (dead / DEMO_OWNER_FILE).write_text("999999999\n")
    reused = tmp_path / "consultease-demo-reused"
    reused.mkdir()
    owner = reused / DEMO_OWNER_FILE
    owner.write_text(f"{os.getpid()}\n")
    old = time.time() - 10 * 365 * 86400  # written long before this test process started
    os.utime(owner, (old, old))
    young = tmp_path / "consultease-demo-young"
    young.mkdir()
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()
    assert sorted(remove_stale_demo_dirs(tmp_path)) == [dead, reused]
    assert young.exists() and unrelated.exists()
