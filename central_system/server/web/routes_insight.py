"""Insight for administrators: the analytics reports as tables, server-rendered SVG charts
(requests per day; the desks with the lowest uptime), and each report as a CSV download
(audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from ...api.errors import KioskError
from .deps import AdminUser, WebCtx, WebError, render

router = APIRouter(prefix="/web/admin/insight", include_in_schema=False)

RANGES = {1: "Today", 7: "7 days", 30: "30 days", 90: "90 days"}
Days = Annotated[int, Query(ge=1, le=90)]
CHART_W, CHART_H, CHART_PAD = 720, 220, 28
# The uptime chart: one horizontal bar per desk, the lowest uptime first.
UPTIME_DESKS, UPTIME_ROW_H, UPTIME_LABEL_W = 20, 18, 200


def bars(table: Any) -> dict[str, Any]:
    """Bar geometry for requests per day (computed here: the page carries no script)."""
    rows = [(str(r[0]), int(r[1] or 0)) for r in table.rows] if table is not None else []
    top = max((v for _, v in rows), default=0) or 1
    width = (CHART_W - 2 * CHART_PAD) / max(1, len(rows))
    out = []
    for i, (label, value) in enumerate(rows):
        h = (CHART_H - 2 * CHART_PAD) * value / top
        out.append(
            {
                "x": round(CHART_PAD + i * width + width * 0.1, 1),
                "y": round(CHART_H - CHART_PAD - h, 1),
                "w": round(width * 0.8, 1),
                "h": round(h, 1),
                "label": label,
                "value": value,
            }
        )
    return {"bars": out, "w": CHART_W, "h": CHART_H, "pad": CHART_PAD, "top": top}


def uptime_bars(table: Any) -> dict[str, Any]:
    """Bars for the ``UPTIME_DESKS`` desks with the lowest uptime in the range (0-100 %)."""
    rows = []
    if table is not None:
        for r in table.as_dicts():
            if r["uptime_pct"] is not None:
                rows.append((str(r["faculty"]), float(r["uptime_pct"]), int(r["disconnections"])))
    rows.sort(key=lambda r: (r[1], -r[2], r[0]))
    rows = rows[:UPTIME_DESKS]
    span = CHART_W - UPTIME_LABEL_W - CHART_PAD - 40
    out = []
    for i, (label, pct, drops) in enumerate(rows):
        out.append(
            {
                "x": UPTIME_LABEL_W,
                "y": CHART_PAD + i * UPTIME_ROW_H,
                "w": round(span * max(0.0, min(pct, 100.0)) / 100.0, 1),
                "h": UPTIME_ROW_H - 4,
                "label": label[:32],
                "pct": round(pct, 1),
                "drops": drops,
            }
        )
    height = 2 * CHART_PAD + len(out) * UPTIME_ROW_H
    return {"bars": out, "w": CHART_W, "h": height, "label_w": UPTIME_LABEL_W, "span": span}


@router.get("")
def insight(request: Request, ctx: WebCtx, user: AdminUser, days: Days = 7) -> Response:
    """Every report for the range, with a chart of requests per day."""
    days = days if days in RANGES else 7
    try:
        tables = ctx.backend.analytics(days)
    except KioskError as err:
        raise WebError(400, str(err)) from None
    return render(
        request,
        "admin_insight.html",
        user,
        tables=tables,
        days=days,
        ranges=RANGES,
        chart=bars(tables.get("requests_per_day")),
        uptime=uptime_bars(tables.get("desk_uptime_by_faculty")),
    )


@router.get("/{report}.csv")
def export(
    request: Request,
    ctx: WebCtx,
    user: AdminUser,
    report: Annotated[str, Path(max_length=64, pattern=r"^[a-z_]+$")],
    days: Days = 7,
) -> Response:
    """One report as CSV (a download; audited like the kiosk's export)."""
    try:
        tables = ctx.backend.analytics(days)
    except KioskError as err:
        raise WebError(400, str(err)) from None
    table = tables.get(report)
    if table is None:
        raise WebError(404, f"No report {report!r}.")
    ctx.audit(user.actor, "analytics.export", report, True, {"days": days, "via": "web"})
    return Response(
        table.to_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{report}-{days}d.csv"'},
    )
