"""docs/mqtt-topics.md is generated from the real builders and must match them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mqtt_topics_doc_matches_the_builders() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_doc", ROOT / "scripts" / "gen_mqtt_topics_doc.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert "CID:42 From:Maria Santos (SID:7): " in rendered
    assert (ROOT / "docs" / "mqtt-topics.md").read_text(encoding="utf-8") == rendered, (
        "run: python scripts/gen_mqtt_topics_doc.py"
    )
