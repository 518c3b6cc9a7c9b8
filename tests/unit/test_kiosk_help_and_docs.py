"""The kiosk's help texts and docs describe it as it is since the pickle child went
(issue 9): a client of CONSULTEASE_SERVER_URL or of its own ``consultease server`` child,
and the retired CONSULTEASE_KIOSK_BACKEND only as retired."""

from __future__ import annotations

import re
from pathlib import Path

from central_system.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "deployment.md", ROOT / "docs" / "kiosk.md"]
GONE = re.compile(r"backend_process|demo_backend|views/backend\.py|KIOSK_BACKEND=(process|thread)")


def _help(*argv: str) -> str:
    parser = build_parser()
    if not argv:
        return parser.format_help()
    sub = next(a for a in parser._actions if a.dest == "command")
    return str(sub.choices[argv[0]].format_help())  # type: ignore[attr-defined]


def test_run_help_says_whose_client_the_kiosk_is() -> None:
    text = " ".join(_help("run").split())
    assert "CONSULTEASE_SERVER_URL" in text
    assert "own `consultease server` child" in text
    overview = " ".join(_help().split())
    assert "run the kiosk: a client of CONSULTEASE_SERVER_URL" in overview
    # `serve` is `server` (the same leadership, never a second publisher beside it).
    assert "the same as `server` (one active server per database" in overview


def test_the_docs_name_no_retired_piece_and_tell_an_upgrader_about_kiosk_backend() -> None:
    for path in DOCS:
        found = GONE.search(path.read_text())
        assert found is None, f"{path.name}: {found.group(0) if found else ''}"
    upgrades = (ROOT / "docs" / "deployment.md").read_text().split("## 12. Upgrades", 1)[1]
    upgrades = " ".join(upgrades.split("\n## ", 1)[0].split())
    assert "CONSULTEASE_KIOSK_BACKEND" in upgrades and "no longer used" in upgrades
