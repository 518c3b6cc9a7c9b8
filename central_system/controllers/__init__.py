"""Controllers: plain Python between the kiosk (or CLI) and the database and MQTT service.

No Qt and no paho here. Each controller can be built with no arguments (it then
uses the process's database and MQTT service) or given ``db=``/``mqtt=``.
``bootstrap.build_system`` builds them for a running system (the composition root).
"""

from __future__ import annotations

from .admin_controller import AdminController
from .analytics_controller import AnalyticsController, AnalyticsError, Table
from .base import ConsultationEvent, FacultyEvent
from .consultation_controller import ConsultationController, ConsultationError
from .faculty_controller import FacultyController, FacultyError
from .queue_controller import ExpiryPolicy, QueueController, QueuePosition
from .schemas import InboundStats, inbound_stats
from .student_controller import StudentController, StudentError

__all__ = [
    "AdminController",
    "AnalyticsController",
    "AnalyticsError",
    "ConsultationController",
    "ConsultationError",
    "ConsultationEvent",
    "ExpiryPolicy",
    "FacultyController",
    "FacultyError",
    "FacultyEvent",
    "InboundStats",
    "QueueController",
    "QueuePosition",
    "StudentController",
    "StudentError",
    "Table",
    "inbound_stats",
]
