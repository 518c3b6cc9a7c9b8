"""deploy/grafana/consultease.json reads only the metric names docs/analytics.md promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dashboard_uses_only_documented_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "consultease.json").read_text())
    documented = set(
        re.findall(
            r"^\| `(consultease_[a-z_]+)` \|", (ROOT / "docs" / "analytics.md").read_text(), re.M
        )
    )
    assert len(documented) >= 10
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = re.findall(r"consultease_[a-z_]+", target["expr"])
            assert names, target
            # A histogram is read through its _bucket series.
            used.update(n.removesuffix("_bucket") for n in names)
    assert used <= documented, used - documented
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
