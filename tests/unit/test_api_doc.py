"""docs/api.md's endpoint table is generated from the server's routes and must match them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_api_doc_lists_every_endpoint_with_who_may_call_it() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_api_doc", ROOT / "scripts" / "gen_api_doc.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert "| POST | `/api/v1/consultations` | kiosk + card |" in rendered
    assert "| GET | `/api/v1/audit` | admin |" in rendered
    assert (ROOT / "docs" / "api.md").read_text(encoding="utf-8") == rendered, (
        "run: python scripts/gen_api_doc.py"
    )
