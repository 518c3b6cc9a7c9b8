"""Helpers for tests of the async MQTT service against a real broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from central_system import db as dbmod
from central_system.config import Settings
from central_system.services.async_mqtt_service import AsyncMQTTService


@contextmanager
def running_service(
    settings: Settings, db_url: str, connect: bool = True
) -> Iterator[AsyncMQTTService]:
    """A started service on ``db_url``; stopped afterwards."""
    engine = dbmod.init_db(db_url)
    service = AsyncMQTTService(settings, engine)
    service.start()
    try:
        if connect:
            assert service.wait_connected(15), service.get_stats()["last_error"]
        yield service
    finally:
        service.stop(timeout=5)


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Poll ``predicate`` until true or ``timeout``; bounded."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
