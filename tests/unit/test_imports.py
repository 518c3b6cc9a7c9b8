"""Only the async MQTT service imports paho (import-linter contract, checked here too)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ROOT / "central_system" / "services" / "async_mqtt_service.py"


def test_no_module_but_the_service_imports_paho():
    offenders = []
    for path in (ROOT / "central_system").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "paho" or n.startswith("paho.") for n in names) and path != ALLOWED:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
