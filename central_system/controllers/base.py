"""What every controller shares: where sessions and the MQTT service come from, listeners, events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from .. import db as dbmod
from ..db import unit_of_work
from ..models import AuditLog
from .outbound import Outgoing

if TYPE_CHECKING:
    from ..services.async_mqtt_service import AsyncMQTTService

logger = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
DbSource = Engine | SessionFactory | None
E = TypeVar("E")


def resolve_session_factory(db: DbSource) -> SessionFactory:
    """A session factory from an Engine, a sessionmaker/callable, or None (the process database)."""
    if db is None:
        return dbmod.get_db
    if isinstance(db, Engine):
        return sessionmaker(bind=db, expire_on_commit=False)
    if callable(db):
        return db
    raise TypeError(f"db must be an Engine, a session factory or None, not {type(db).__name__}")


class Listeners(Generic[E]):
    """Callbacks for events of one kind. A failing callback is logged and never stops the others."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[E], None]] = []

    def add(self, callback: Callable[[E], None]) -> Callable[[], None]:
        """Register ``callback``; returns a function that removes it."""
        with self._lock:
            self._callbacks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return remove

    def emit(self, event: E) -> None:
        """Call every callback with ``event``."""
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                logger.exception("%s listener %r failed", self._name, callback)


@dataclass(frozen=True, slots=True)
class ConsultationEvent:
    """A consultation changed status (``previous_status`` is None when it was just created)."""

    consultation_id: int
    student_id: int
    faculty_id: int
    status: str
    previous_status: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class FacultyEvent:
    """A faculty member's shown status or desk liveness changed."""

    faculty_id: int
    status: str
    desk_online: bool
    previous_status: str | None
    previous_desk_online: bool | None
    at: datetime

    @property
    def is_available(self) -> bool:
        """True when students may send requests now."""
        return self.desk_online and self.status == "available"


class ControllerBase:
    """Sessions from ``db`` (default: the process database), MQTT from ``mqtt`` (default: the process service)."""

    def __init__(self, db: DbSource = None, mqtt: AsyncMQTTService | None = None) -> None:
        self._session_factory = resolve_session_factory(db)
        self._mqtt = mqtt
        self._engine: Engine | None = None
        self._default_db = db is None

    @property
    def mqtt(self) -> AsyncMQTTService:
        """The MQTT service this controller publishes through."""
        if self._mqtt is None:
            from ..services.async_mqtt_service import get_async_mqtt_service

            return get_async_mqtt_service()
        return self._mqtt

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error, and always closes."""
        with unit_of_work(self._session_factory()) as session:
            yield session

    @property
    def engine(self) -> Engine:
        """The engine this controller's sessions are bound to (for Core connections)."""
        if self._default_db:
            return dbmod.get_engine()  # (the process database may be opened again elsewhere)
        engine = self._engine
        if engine is None:
            session = self._session_factory()
            try:
                engine = self._engine = cast(Engine, session.get_bind())
            finally:
                session.close()
        return engine

    def stage(self, session: Session, messages: list[Outgoing]) -> None:
        """Stage ``messages`` in ``session``'s transaction (sent only after it commits)."""
        for msg in messages:
            self.mqtt.stage(session, msg.topic, msg.payload, msg.qos, msg.retain)

    def publish(self, messages: list[Outgoing]) -> None:
        """Publish ``messages`` now, without a transaction."""
        for msg in messages:
            self.mqtt.publish_async(msg.topic, msg.payload, msg.qos, msg.retain)


def audit(
    session: Session,
    actor: str,
    action: str,
    target: str | None,
    *,
    success: bool,
    details: dict[str, object] | None = None,
    note: str | None = None,
) -> None:
    """Add one AuditLog row to ``session`` (committed with it)."""
    session.add(
        AuditLog(
            actor=actor[:100],
            action=action[:64],
            target=None if target is None else target[:200],
            success=success,
            details=details,
            note=note,
        )
    )
