"""SQLAlchemy 2 models of ConsultEase, one module per aggregate, plus the outbox table."""

from .admin import Admin, AuditLog
from .analytics import (
    AnalyticsRollupState,
    ConsultationStatsDaily,
    ConsultationStatsHourly,
    ConsultationStatsWeekly,
)
from .base import Base, utcnow
from .consultation import ALLOWED_TRANSITIONS, ANSWER_STATUSES, Consultation, ConsultationStatus
from .desk_history import (
    DeskConnectionEvent,
    DeskTransitionReason,
    DeskUptimeDaily,
    DeskUptimeWeekly,
)
from .faculty import DeskUnit, Faculty, FacultyStatus
from .kiosk import AdminSessionToken, KioskToken
from .legacy import LegacyDeskLogin, LegacyImportMap
from .outbox import OutboxMessage
from .student import Student
from .web import AccountInvite, WebSession

__all__ = [
    "ALLOWED_TRANSITIONS",
    "ANSWER_STATUSES",
    "AccountInvite",
    "Admin",
    "AdminSessionToken",
    "AnalyticsRollupState",
    "AuditLog",
    "Base",
    "Consultation",
    "ConsultationStatsDaily",
    "ConsultationStatsHourly",
    "ConsultationStatsWeekly",
    "ConsultationStatus",
    "DeskConnectionEvent",
    "DeskTransitionReason",
    "DeskUnit",
    "DeskUptimeDaily",
    "DeskUptimeWeekly",
    "Faculty",
    "FacultyStatus",
    "KioskToken",
    "LegacyDeskLogin",
    "LegacyImportMap",
    "OutboxMessage",
    "Student",
    "WebSession",
    "utcnow",
]
