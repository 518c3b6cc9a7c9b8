"""Helpers for controller tests: a headless central system on the test broker and database, desk stand-ins."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine

from central_system import topics
from central_system.config import Settings
from central_system.controllers import (
    ConsultationController,
    FacultyController,
    StudentController,
)
from central_system.main import ConsultEaseApp
from tests.mqtt_probe import publish_raw


def db_url_of(engine: Engine) -> str:
    """The URL of ``engine`` with its password (tests only)."""
    return engine.url.render_as_string(hide_password=False)


@contextmanager
def running_app(settings: Settings) -> Iterator[ConsultEaseApp]:
    """``ConsultEaseApp(headless=True)`` started and connected; stopped afterwards."""
    app = ConsultEaseApp(settings, headless=True)
    app.start()
    try:
        assert app.async_mqtt_service.wait_connected(15), app.async_mqtt_service.get_stats()
        yield app
    finally:
        app.stop()


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Poll ``predicate`` until true or ``timeout``; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def presence_payload(fid: int, status: str = "AVAILABLE", name: str = "Dr. Cruz") -> bytes:
    """The deployed firmware's presence JSON (contract 2.1)."""
    return json.dumps(
        {
            "faculty_id": fid,
            "faculty_name": name,
            "present": status == "AVAILABLE",
            "status": status,
            "timestamp": 123456,
            "ntp_sync_status": "SYNCED",
            "in_grace_period": False,
            "detailed_status": status,
        }
    ).encode()


def response_payload(fid: int, cid: int | str, response_type: str = "ACKNOWLEDGE") -> bytes:
    """The deployed firmware's response JSON (contract 2.2), message_id as a string."""
    return json.dumps(
        {
            "faculty_id": fid,
            "faculty_name": "Dr. Cruz",
            "response_type": response_type,
            "message_id": str(cid),
            "timestamp": "123456",
            "faculty_present": True,
            "response_method": "physical_button",
            "status": "Professor acknowledges the request",
        }
    ).encode()


def heartbeat_payload(fid: int, presence: str = "AVAILABLE") -> bytes:
    """The deployed firmware's periodic heartbeat (contract 2.3)."""
    return json.dumps(
        {
            "faculty_id": fid,
            "uptime": 123456,
            "free_heap": 150000,
            "wifi_connected": True,
            "wifi_rssi": -60,
            "wifi_stable": True,
            "mqtt_stable": True,
            "wifi_retries": 0,
            "mqtt_retries": 0,
            "time_initialized": True,
            "ntp_sync_status": "SYNCED",
            "presence_status": presence,
            "queue_size": 0,
            "consultation_queue_size": 0,
        }
    ).encode()


def bring_desk_online(
    port: int, fid: int, faculty: FacultyController, status: str = "AVAILABLE"
) -> None:
    """Publish the desk's presence (QoS 0, like the firmware) until the central system shows it."""
    want = status.lower()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        publish_raw(port, topics.faculty_status_topic(fid), presence_payload(fid, status), qos=0)
        if wait_until(
            lambda: (
                (f := faculty.get_faculty(fid)) is not None and f.desk_online and f.status == want
            ),
            timeout=1.0,
        ):
            return
    raise AssertionError(f"desk {fid} never came online: {faculty.get_faculty(fid)!r}")


def settle_inbound(app: ConsultEaseApp, quiet_s: float = 1.0, timeout: float = 20.0) -> None:
    """Wait until the central system has handled everything sent to it so far: nothing waiting
    for the handlers and nothing new received for ``quiet_s``. ``bring_desk_online`` may have
    published a presence more than once on a slow machine; a late copy must not land in the
    middle of a test that compares the database before and after one message."""
    service = app.async_mqtt_service
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        stats = service.get_stats()
        if stats["messages_received"] != last or stats["inbound_pending"]:
            last, since = stats["messages_received"], time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.05)
    raise AssertionError(f"the central system's inbound never settled: {service.get_stats()!r}")


def seed(app: ConsultEaseApp, faculty_count: int = 2) -> dict[str, Any]:
    """Students and faculty through the controllers."""
    students: StudentController = app.controllers["student"]
    faculty: FacultyController = app.controllers["faculty"]
    s1 = students.create_student("Maria Santos", "2021-00001", "04a1b2c3", "Computer Science")
    s2 = students.create_student("Juan Dela Cruz", "2021-00002", "04A1B2C4", "Engineering")
    fac = [
        faculty.create_faculty(f"Dr. Faculty {i}", "CS", f"f{i}@example.edu")
        for i in range(faculty_count)
    ]
    return {"students": [s1, s2], "faculty": fac}


def consultation_controller(app: ConsultEaseApp) -> ConsultationController:
    """The wired consultation controller."""
    controller: ConsultationController = app.controllers["consultation"]
    return controller
