"""A setting an upgrade retired is named once at start-up, with what replaced it (issue 9).

CONSULTEASE_KIOSK_BACKEND (process/thread/server) chose how the kiosk ran its central
system; the kiosk now always runs a ``consultease server`` child unless
CONSULTEASE_SERVER_URL is set. A kiosk upgraded with the old setting still starts
(exit 0), and its user is told, in one line, that the setting does nothing now.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _consultease(args: list[str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTEASE_")}
    env.update(CONSULTEASE_DATA_DIR=str(tmp_path / "data"), TMPDIR=str(tmp_path), **extra)
    return subprocess.run(
        [sys.executable, "-m", "central_system.cli", "--log-level", "WARNING", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "consultease: warning:" in line]


@pytest.mark.parametrize("value", ["process", "thread", "server"])
def test_the_retired_kiosk_backend_variable_is_named_once_and_the_command_still_runs(
    tmp_path: Path, value: str
) -> None:
    result = _consultease(["faculty", "list"], tmp_path, CONSULTEASE_KIOSK_BACKEND=value)
    assert result.returncode == 0, result.stderr
    lines = _warnings(result)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert f"CONSULTEASE_KIOSK_BACKEND='{value}' is no longer used" in line
    assert "consultease server" in line and "CONSULTEASE_SERVER_URL" in line


@pytest.mark.parametrize("table", [False, True])
def test_the_retired_kiosk_backend_key_in_the_toml_file_is_named_with_the_file(
    tmp_path: Path, table: bool
) -> None:
    config = tmp_path / "consultease.toml"
    config.write_text(("[consultease]\n" if table else "") + 'kiosk_backend = "process"\n')
    result = _consultease(["faculty", "list"], tmp_path, CONSULTEASE_CONFIG=str(config))
    assert result.returncode == 0, result.stderr
    assert _warnings(result) == [
        f"consultease: warning: kiosk_backend in {config}='process' is no longer used: "
        "the kiosk always runs its own central system as a `consultease server` child, "
        "unless CONSULTEASE_SERVER_URL names servers to use; remove it"
    ], result.stderr


def test_no_warning_without_a_retired_setting(tmp_path: Path) -> None:
    result = _consultease(["faculty", "list"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert _warnings(result) == [], result.stderr
