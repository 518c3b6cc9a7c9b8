"""The central system: statistics, backups and the audit log (administrators)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ...api.schemas import AuditView, TextAnswer
from ..deps import BackendDep, CurrentAdmin, ServerDep

router = APIRouter(tags=["system"])


@router.get("/system/stats", response_model=dict[str, Any])
def system_stats(admin: CurrentAdmin, backend: BackendDep, server: ServerDep) -> dict[str, Any]:
    """MQTT state, backlog and counters, the database, and this server's id."""
    stats = backend.system_stats()
    stats["backend"] = f"server {server.server_id} ({server.role})"
    stats["role"] = server.role
    stats["event_subscribers"] = server.hub.subscribers
    return stats


@router.post("/system/backup", response_model=TextAnswer)
def backup(admin: CurrentAdmin, backend: BackendDep) -> TextAnswer:
    """Back the database up into the server's data directory; answers the file written."""
    return TextAnswer(text=backend.backup(admin.username))


@router.get("/audit", response_model=list[AuditView])
def audit_log(
    admin: CurrentAdmin, backend: BackendDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[AuditView]:
    """The newest audit-log entries."""
    return backend.list_audit(limit)
