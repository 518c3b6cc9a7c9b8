"""The plan's MQTT helpers (step 1.2): thin accessors over the one async service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from ..services.async_mqtt_service import AsyncMQTTService, Handler, PublishHandle


def get_mqtt_service() -> AsyncMQTTService:
    """The process's one async MQTT service."""
    from ..services.async_mqtt_service import get_async_mqtt_service

    return get_async_mqtt_service()


def publish_mqtt_message(
    topic: str, data: Any, qos: int = 1, retain: bool = False
) -> PublishHandle:
    """Publish without waiting; returns a handle with ``wait_persisted``/``wait_acknowledged``."""
    return get_mqtt_service().publish_async(topic, data, qos, retain)


def stage_mqtt_message(
    session: Session, topic: str, data: Any, qos: int = 1, retain: bool = False
) -> PublishHandle:
    """Publish as part of ``session``'s transaction: sent only if, and after, it commits."""
    return get_mqtt_service().stage(session, topic, data, qos, retain)


def subscribe_to_topic(topic: str, handler: Handler, qos: int = 1) -> Callable[[], None]:
    """Subscribe ``handler`` to ``topic`` (wildcards allowed); returns the unsubscriber."""
    return get_mqtt_service().subscribe(topic, handler, qos)
