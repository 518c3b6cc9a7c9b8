"""``consultease demo --headless``: the scripted scenario, its timeline and its exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.brokers import MosquittoBroker

ROOT = Path(__file__).resolve().parents[2]


def _demo(
    broker: MosquittoBroker, tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    more = dict(env or {})
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CONSULTEASE_") or k.startswith("CONSULTEASE_TEST_")
    }
    env.update(more)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        CONSULTEASE_MQTT_HOST="127.0.0.1",  # a configured broker replaces the embedded one
        CONSULTEASE_MQTT_PORT=str(broker.port),
        TMPDIR=str(tmp_path),
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "central_system.cli",
            "--log-level",
            "WARNING",
            "demo",
            "--headless",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_headless_demo_runs_the_scenario_and_exits_zero(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    result = _demo(broker, tmp_path, "--timeout", "90")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "refused: 'This card is not registered" in out
    assert "logged in as Maria Garcia" in out
    assert "Sent to Dr. Ana Reyes's desk" in out
    assert "desk queue: ['1']" in out
    assert "kiosk shows the request as accepted" in out
    assert "My consultations: #1 accepted" in out
    assert out.rstrip().endswith("DEMO OK")
    # The central system is a server child, seeded over the API; its start-up noise stays quiet.
    assert "central system: server child process " in out
    assert "Uvicorn running" not in result.stderr + out
    # The first admin gets a random password, printed once; never a default one.
    assert "admin login:    admin / " in out
    # A fresh temporary data directory, removed afterwards.
    assert not list(tmp_path.glob("consultease-demo-*"))
    # Qt's offscreen noise is not shown to the user.
    assert "propagateSizeHints" not in result.stderr + out


def test_headless_demo_fails_with_nonzero_exit_when_it_times_out(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    result = _demo(broker, tmp_path, "--timeout", "0.001")
    assert result.returncode != 0
    assert "TIMEOUT" in result.stdout and "DEMO FAILED" in result.stdout
