"""Deprecated: ``MQTTService`` only exists for old callers.

It delegates every call to the process's one :class:`AsyncMQTTService` and never
opens a connection of its own (plan, step 3.1).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from .async_mqtt_service import AsyncMQTTService, Handler, MQTTMessage, get_async_mqtt_service


class MQTTService:
    """Deprecated facade over :class:`AsyncMQTTService`."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        warnings.warn(
            "MQTTService is deprecated. Use AsyncMQTTService instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        self._service: AsyncMQTTService = get_async_mqtt_service()
        self._unsubscribers: dict[str, list[Callable[[], None]]] = {}

    def start(self) -> None:
        """Starts the shared async service (idempotent)."""
        self._service.start()

    def stop(self) -> None:
        """Does nothing: the shared service belongs to the application, not to this facade."""

    def connect(self) -> bool:
        """Starts the shared service; connecting happens in the background."""
        self._service.start()
        return True

    def disconnect(self) -> None:
        """Does nothing (see ``stop``)."""

    @property
    def is_connected(self) -> bool:
        """Whether the shared service is connected."""
        return self._service.is_connected

    def publish(self, topic: str, data: Any, qos: int = 1, retain: bool = False) -> bool:
        """Queues the message on the async service; True when it was accepted."""
        self._service.publish_async(topic, data, qos, retain)
        return True

    def publish_raw(self, topic: str, data: Any, qos: int = 1, retain: bool = False) -> bool:
        """Old name of ``publish``."""
        return self.publish(topic, data, qos, retain)

    def register_topic_handler(self, topic: str, handler: Callable[[str, Any], None]) -> None:
        """Old-style handler ``handler(topic, data)``; data is parsed JSON when possible."""

        def adapter(message: MQTTMessage) -> None:
            try:
                data: Any = message.json()
            except ValueError:
                data = message.text
            handler(message.topic, data)

        self._unsubscribers.setdefault(topic, []).append(self._service.subscribe(topic, adapter))

    def subscribe(self, topic: str, handler: Handler, qos: int = 1) -> Callable[[], None]:
        """Subscribe through the async service."""
        return self._service.subscribe(topic, handler, qos)

    def get_stats(self) -> dict[str, Any]:
        """The async service's statistics."""
        return self._service.get_stats()
