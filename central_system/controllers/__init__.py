"""Controllers: plain Python between the kiosk (or CLI) and the database and MQTT service.

No Qt and no paho here. Each controller can be built with no arguments (it then
uses the process's database and MQTT service) or given ``db=``/``mqtt=``.
``wire_controllers(system)`` is called by ``bootstrap.build_system``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .admin_controller import AdminController
from .analytics_controller import AnalyticsController, AnalyticsError, Table
from .base import ConsultationEvent, FacultyEvent
from .consultation_controller import ConsultationController, ConsultationError
from .faculty_controller import FacultyController, FacultyError
from .queue_controller import ExpiryPolicy, QueueController, QueuePosition
from .schemas import InboundStats, inbound_stats
from .student_controller import StudentController, StudentError

if TYPE_CHECKING:
    from ..bootstrap import System

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
    "wire_controllers",
]


def wire_controllers(system: System) -> None:
    """Build the controllers on ``system.mqtt`` and register their subscriptions and the liveness timer."""
    from ..services.expiry import ExpiryService
    from ..services.liveness import LivenessService

    liveness = LivenessService(system.settings, db=system.engine, mqtt=system.mqtt)
    faculty = FacultyController(db=system.engine, mqtt=system.mqtt, liveness=liveness)
    expiry = ExpiryPolicy.from_settings(system.settings)
    consultation = ConsultationController(
        db=system.engine, mqtt=system.mqtt, liveness=liveness, expiry=expiry
    )
    expiry_sweep = ExpiryService(
        consultation.expire_due, system.settings.consultation_expiry_check_interval_s
    )
    liveness.set_resender(consultation.resend_pending)
    system.controllers.update(
        {
            "consultation": consultation,
            "faculty": faculty,
            "student": StudentController(db=system.engine, mqtt=system.mqtt),
            "admin": AdminController(db=system.engine, mqtt=system.mqtt),
            "liveness": liveness,
            "queue": QueueController(db=system.engine, mqtt=system.mqtt, expiry=expiry),
            "analytics": AnalyticsController(
                db=system.engine, mqtt=system.mqtt, timezone=system.settings.consultation_timezone
            ),
            "expiry": expiry_sweep,
            "inbound_stats": inbound_stats,
        }
    )
    # Liveness first: it loads the desks' state before any presence report arrives.
    system.components.extend([liveness, faculty, consultation])
    if expiry.enabled:
        system.components.append(expiry_sweep)
