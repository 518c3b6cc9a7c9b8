"""The composition root: builds the database, the one MQTT service and the controllers.

Every component that needs MQTT receives the service from here; nothing else
constructs one. Components with background work expose ``start()``/``stop()``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine

from . import db
from .config import Settings
from .services.async_mqtt_service import AsyncMQTTService, set_async_mqtt_service

logger = logging.getLogger(__name__)


class Component(Protocol):
    """Something with background work (subscriptions, timers)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class System:
    """Everything the UI or the CLI needs, built once."""

    settings: Settings
    engine: Engine
    mqtt: AsyncMQTTService
    controllers: dict[str, Any] = field(default_factory=dict)
    components: list[Component] = field(default_factory=list)

    def start(self) -> None:
        """Start the MQTT service, then every component (they subscribe through it)."""
        self.mqtt.start()
        for component in self.components:
            component.start()

    def stop(self) -> None:
        """Stop components in reverse order, then flush and stop the MQTT service."""
        for component in reversed(self.components):
            try:
                component.stop()
            except Exception:
                logger.exception("stopping %r failed", component)
        self.mqtt.stop()
        set_async_mqtt_service(None)
        db.dispose_db()


def build_controllers(system: System) -> None:
    """Build the controllers on ``system.mqtt``, with their subscriptions and the liveness timer."""
    from .controllers import (
        AdminController,
        AnalyticsController,
        ConsultationController,
        ExpiryPolicy,
        FacultyController,
        QueueController,
        StudentController,
        inbound_stats,
    )
    from .controllers.liveness import LivenessService
    from .services.expiry import ExpiryService

    engine, mqtt, settings = system.engine, system.mqtt, system.settings
    liveness = LivenessService(settings, db=engine, mqtt=mqtt)
    faculty = FacultyController(db=engine, mqtt=mqtt, liveness=liveness)
    expiry = ExpiryPolicy.from_settings(settings)
    consultation = ConsultationController(db=engine, mqtt=mqtt, liveness=liveness, expiry=expiry)
    expiry_sweep = ExpiryService(
        consultation.expire_due, settings.consultation_expiry_check_interval_s
    )
    liveness.set_resender(consultation.resend_pending)
    system.controllers.update(
        {
            "consultation": consultation,
            "faculty": faculty,
            "student": StudentController(db=engine, mqtt=mqtt),
            "admin": AdminController(db=engine, mqtt=mqtt),
            "liveness": liveness,
            "queue": QueueController(db=engine, mqtt=mqtt, expiry=expiry),
            "analytics": AnalyticsController(
                db=engine, mqtt=mqtt, timezone=settings.consultation_timezone
            ),
            "expiry": expiry_sweep,
            "inbound_stats": inbound_stats,
        }
    )
    # Liveness first: it loads the desks' state before any presence report arrives.
    system.components.extend([liveness, faculty, consultation])
    if expiry.enabled:
        system.components.append(expiry_sweep)


def build_system(settings: Settings) -> System:
    """Build the database, the one MQTT service and the controllers (nothing is started)."""
    engine = db.init_db(settings.effective_database_url)
    mqtt = AsyncMQTTService(settings, engine)
    set_async_mqtt_service(mqtt)
    system = System(settings=settings, engine=engine, mqtt=mqtt)
    build_controllers(system)
    return system
