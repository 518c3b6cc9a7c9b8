"""The kiosk's names for the API's answers and errors (one schema for server, client and screens)."""

from __future__ import annotations

from ..api.errors import KioskError, OutcomeUnknownError
from ..api.schemas import (
    AdminSession,
    AuditView,
    ConsultationView,
    DeskView,
    FacultyView,
    QueueView,
    StudentView,
)
from ..controllers.kiosk_facade import KioskBackend

__all__ = [
    "AdminSession",
    "AuditView",
    "ConsultationView",
    "DeskView",
    "FacultyView",
    "KioskBackend",
    "KioskError",
    "OutcomeUnknownError",
    "QueueView",
    "StudentView",
]
