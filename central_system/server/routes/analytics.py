"""Analytics reports for a range of days, and their CSV export (administrators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ...api.schemas import AnalyticsTable, TextAnswer
from ..deps import BackendDep, CurrentAdmin

router = APIRouter(prefix="/analytics", tags=["analytics"])
Days = Annotated[int, Query(ge=1, le=3 * 365, description="the last N days (1: today)")]


@router.get("", response_model=dict[str, AnalyticsTable])
def analytics(
    admin: CurrentAdmin, backend: BackendDep, days: Days = 7
) -> dict[str, AnalyticsTable]:
    """Every report for the last ``days`` days, by report name."""
    return {
        name: AnalyticsTable(name=t.name, columns=tuple(t.columns), rows=[tuple(r) for r in t.rows])
        for name, t in backend.analytics(days).items()
    }


@router.post("/{report}/export", response_model=TextAnswer)
def export(
    report: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z_]+$")],
    admin: CurrentAdmin,
    backend: BackendDep,
    days: Days = 7,
) -> TextAnswer:
    """Write one report as CSV into the server's data directory; the file written. Audited."""
    return TextAnswer(text=backend.export_analytics(report, days, admin.username))
