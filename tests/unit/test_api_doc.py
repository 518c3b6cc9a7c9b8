"""docs/api.md's endpoint table is generated from the server's routes and must match them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (\w+) \| `([^`]+)` \| ([^|]+) \|", re.MULTILINE)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_api_doc", ROOT / "scripts" / "gen_api_doc.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_doc_lists_every_endpoint_with_who_may_call_it() -> None:
    rendered = _generator().render()
    assert "| POST | `/api/v1/consultations` | kiosk + card |" in rendered
    assert "| GET | `/api/v1/audit` | admin |" in rendered
    assert (ROOT / "docs" / "api.md").read_text(encoding="utf-8") == rendered, (
        "run: python scripts/gen_api_doc.py"
    )


def test_no_endpoint_that_needs_a_token_is_listed_as_callable_by_anyone() -> None:
    # Which operations need a token comes from the OpenAPI document (FastAPI marks every
    # operation with a bearer dependency anywhere in its tree), not from the generator's own
    # list of dependencies, which once missed deps.signed_in_admin and said "anyone".
    generator = _generator()
    spec = generator.openapi()
    needs_token = {
        (method.upper(), path): bool(op.get("security"))
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    }
    listed = {(m, p): who.strip() for m, p, who in ROW.findall(generator.render_table())}
    assert set(listed) == set(needs_token)
    wrong = sorted(op for op, who in listed.items() if (who == "anyone") == needs_token[op])
    assert not wrong, f"who may call these is listed wrongly: {wrong}"
    assert {op for op, token in needs_token.items() if not token} == {
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("POST", "/api/v1/admin/session"),
    }
    for op in (
        ("GET", "/api/v1/admin/session"),
        ("DELETE", "/api/v1/admin/session"),
        ("POST", "/api/v1/admin/password"),
    ):
        assert listed[op] == "admin (a temporary password is enough)", op
