"""CONSULTEASE_LOG_FORMAT=json: every log line is one JSON object (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import logging
from central_system.cli import setup_logging
setup_logging("INFO")
logging.getLogger("consultease.test").warning("desk %d went offline", 7)
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("consultease.test").exception("sweep failed")
"""


def _run(log_format: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTEASE_")}
    env["PYTHONPATH"] = str(ROOT)
    if log_format is not None:
        env["CONSULTEASE_LOG_FORMAT"] = log_format
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_json_log_lines_parse_and_carry_the_fields() -> None:
    lines = _run("json")
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(entries) == 2
    first, second = entries
    assert first["level"] == "WARNING" and first["logger"] == "consultease.test"
    assert first["message"] == "desk 7 went offline"
    assert first["ts"].endswith("+00:00") and isinstance(first["process"], int)
    assert "exception" not in first
    assert second["message"] == "sweep failed"
    assert "ValueError: boom" in second["exception"]


def test_plain_format_is_the_default() -> None:
    lines = _run(None)
    assert "WARNING consultease.test: desk 7 went offline" in lines[0]
    assert not lines[0].startswith("{")
