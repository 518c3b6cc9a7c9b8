"""The re-send rule (docs/mqtt-topics.md, "When a request is sent again") against desks that
behave like the deployed firmware: a real Mosquitto, the headless central system, both databases.

Each test counts, at the desk, how often each consultation was put on it (``deliveries``)
and how often a copy joined one it already held (``copies_shown``, what a faculty member
would see twice).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine

from central_system import topics
from central_system.controllers import ConsultationController, FacultyController
from central_system.controllers.consultation_controller import RESEND_MARGIN
from central_system.main import ConsultEaseApp
from faculty_desk_unit import DeskUnit
from faculty_desk_unit.desk import Mode
from faculty_desk_unit.protocol import build_heartbeat_json, build_presence_json
from tests.brokers import MosquittoBroker
from tests.integration.controller_helpers import db_url_of, running_app, seed, wait_until

pytestmark = pytest.mark.timeout(120)

# Long enough that a busy machine stalling our handlers never makes a desk look offline.
OFFLINE_AFTER_S = 6.0
HEARTBEAT_S = 0.5
MARGIN_S = RESEND_MARGIN.total_seconds()
# Long enough for any re-send to have reached the desk (generous: a busy 2-core machine).
SETTLE_S = 2.0


@pytest.fixture
def central(make_settings, engine: Engine) -> Iterator[ConsultEaseApp]:
    """The headless central system; a desk is offline after 6 s of silence."""
    settings = make_settings(
        database_url=db_url_of(engine),
        desk_offline_after_s=OFFLINE_AFTER_S,
        liveness_check_interval_s=0.2,
    )
    with running_app(settings) as app:
        yield app


@pytest.fixture
def world(central: ConsultEaseApp) -> dict[str, Any]:
    """Two students and one faculty member."""
    return seed(central, faculty_count=1)


def _desk(
    central: ConsultEaseApp, world: dict[str, Any], broker: MosquittoBroker, mode: Mode
) -> DeskUnit:
    fid = world["faculty"][0].id
    desk = DeskUnit(
        fid, "Dr. Faculty 0", "127.0.0.1", broker.port, mode, heartbeat_interval=HEARTBEAT_S
    ).start()
    faculty: FacultyController = central.controllers["faculty"]
    assert wait_until(lambda: _shown(faculty, fid) == "available", 15)
    return desk


@pytest.fixture
def firmware_desk(
    central: ConsultEaseApp, world: dict[str, Any], broker: MosquittoBroker
) -> Iterator[DeskUnit]:
    """A deployed-firmware desk, available, heartbeating every 0.5 s."""
    desk = _desk(central, world, broker, "firmware")
    yield desk
    desk.stop()


@pytest.fixture
def improved_desk(
    central: ConsultEaseApp, world: dict[str, Any], broker: MosquittoBroker
) -> Iterator[DeskUnit]:
    """An improved desk (persistent session, says so), available."""
    desk = _desk(central, world, broker, "improved")
    yield desk
    desk.stop()


def _shown(faculty: FacultyController, fid: int) -> str | None:
    row = faculty.get_faculty(fid)
    return None if row is None else str(row.status)


def _request(central: ConsultEaseApp, world: dict[str, Any], student: int, text: str) -> str:
    controller: ConsultationController = central.controllers["consultation"]
    c = controller.create_consultation(world["students"][student].id, world["faculty"][0].id, text)
    return str(c.id)


def _held(desk: DeskUnit) -> list[str]:
    return sorted(r.cid for r in desk.queue)


def _delivered_and_heard_of(central: ConsultEaseApp, world: dict[str, Any], desk: DeskUnit) -> str:
    """A request the desk got, followed by messages from the desk (so it is known to hold it)."""
    cid = _request(central, world, 0, "Delivered before anything happened")
    assert desk.wait_for(lambda d: d.deliveries[cid] == 1, 10)
    time.sleep(MARGIN_S + 4 * HEARTBEAT_S)  # heartbeats after it, beyond the margin
    return cid


def _available_again(central: ConsultEaseApp, world: dict[str, Any]) -> None:
    faculty: FacultyController = central.controllers["faculty"]
    assert wait_until(lambda: _shown(faculty, world["faculty"][0].id) == "available", 15)
    time.sleep(SETTLE_S)


def test_a_request_created_during_a_blip_is_delivered_once(
    central: ConsultEaseApp, world: dict[str, Any], firmware_desk: DeskUnit
) -> None:
    desk = firmware_desk
    before = _delivered_and_heard_of(central, world, desk)
    desk.kill_connection(reconnect_after=1.0)
    assert not desk.connected
    in_gap = _request(central, world, 1, "Sent while the Wi-Fi was down")
    assert desk.wait_connected(10)
    assert desk.wait_for(lambda d: d.deliveries[in_gap] == 1, 10), "lost in the gap"
    _available_again(central, world)
    assert desk.deliveries[in_gap] == 1
    assert desk.deliveries[before] == 1  # held, so never sent again
    assert _held(desk) == sorted([before, in_gap])
    assert desk.stats.copies_shown == 0


def test_away_and_back_puts_no_copy_on_the_desk(
    central: ConsultEaseApp, world: dict[str, Any], firmware_desk: DeskUnit
) -> None:
    desk = firmware_desk
    held = _delivered_and_heard_of(central, world, desk)
    desk.set_present(False)
    faculty: FacultyController = central.controllers["faculty"]
    assert wait_until(lambda: _shown(faculty, world["faculty"][0].id) == "away", 10)
    time.sleep(1.0)
    desk.set_present(True)
    _available_again(central, world)
    assert desk.deliveries[held] == 1
    assert _held(desk) == [held]  # the firmware keeps its current request across AWAY
    assert desk.stats.copies_shown == 0


def test_a_request_that_reached_the_desk_just_before_away_is_shown_once_after(
    central: ConsultEaseApp, world: dict[str, Any], firmware_desk: DeskUnit
) -> None:
    # Sent after the desk's last message: we cannot know it arrived, so it is withdrawn
    # and re-sent; the desk shows it once.
    desk = firmware_desk
    cid = _request(central, world, 0, "Just before the faculty member stepped out")
    assert desk.wait_for(lambda d: d.deliveries[cid] == 1, 10)
    desk.set_present(False)
    desk.set_present(True)
    _available_again(central, world)
    assert _held(desk) == [cid]
    assert desk.stats.copies_shown == 0


def test_a_long_outage_without_reboot_puts_no_copy_on_the_desk(
    central: ConsultEaseApp, world: dict[str, Any], firmware_desk: DeskUnit
) -> None:
    desk = firmware_desk
    held = _delivered_and_heard_of(central, world, desk)
    desk.kill_connection(reconnect_after=OFFLINE_AFTER_S + 2.0)
    faculty: FacultyController = central.controllers["faculty"]
    fid = world["faculty"][0].id
    assert wait_until(lambda: _shown(faculty, fid) == "offline", 15)
    _available_again(central, world)
    assert desk.stats.link_losses == 1 and desk.stats.reboots == 0
    assert desk.deliveries[held] == 1
    assert _held(desk) == [held]
    assert desk.stats.copies_shown == 0


def test_after_a_reboot_every_pending_request_arrives_once(
    central: ConsultEaseApp, world: dict[str, Any], firmware_desk: DeskUnit
) -> None:
    desk = firmware_desk
    first = _request(central, world, 0, "First request before the reboot")
    second = _request(central, world, 1, "Second request before the reboot")
    assert desk.wait_for(lambda d: d.deliveries[first] == d.deliveries[second] == 1, 10)
    time.sleep(3.0)
    desk.reboot(down_for=0.5)
    assert desk.queue == []  # a reboot forgets everything
    assert desk.wait_for(lambda d: _held(d) == sorted([first, second]), 10)
    _available_again(central, world)
    assert desk.deliveries[first] == desk.deliveries[second] == 2  # once before, once after
    assert _held(desk) == sorted([first, second])
    assert desk.stats.copies_shown == 0


def test_improved_desk_gets_each_request_once_through_its_session(
    central: ConsultEaseApp, world: dict[str, Any], improved_desk: DeskUnit
) -> None:
    desk = improved_desk
    before = _delivered_and_heard_of(central, world, desk)
    desk.kill_connection(reconnect_after=1.0)
    in_gap = _request(central, world, 1, "Kept by the broker for the desk")
    assert desk.wait_connected(10)
    assert desk.wait_for(lambda d: d.deliveries[in_gap] == 1, 10)
    time.sleep(MARGIN_S + 4 * HEARTBEAT_S)
    desk.set_present(False)
    desk.set_present(True)
    _available_again(central, world)
    assert desk.deliveries[before] == desk.deliveries[in_gap] == 1
    assert desk.stats.requests_duplicate == 0  # nothing arrived twice
    assert desk.stats.withdrawals == 0
    assert _held(desk) == sorted([before, in_gap])


def test_a_resend_that_fails_is_tried_again_at_the_desks_next_message(
    central: ConsultEaseApp, world: dict[str, Any], firmware_desk: DeskUnit
) -> None:
    desk = firmware_desk
    controller: ConsultationController = central.controllers["consultation"]
    calls: list[object] = []

    def fails_once(faculty_id: int, since: object) -> int:
        calls.append(since)
        if len(calls) == 1:
            raise RuntimeError("the database went away for a moment")
        return controller.resend_pending(faculty_id, since)  # type: ignore[arg-type]

    central.controllers["liveness"].set_resender(fails_once)
    time.sleep(MARGIN_S + 4 * HEARTBEAT_S)
    desk.kill_connection(reconnect_after=1.0)
    in_gap = _request(central, world, 1, "Sent while the Wi-Fi was down")
    assert desk.wait_connected(10)
    # The failed attempt is kept: the next heartbeat (0.5 s later) re-sends it.
    assert desk.wait_for(lambda d: d.deliveries[in_gap] == 1, 10), "lost after a failed re-send"
    _available_again(central, world)
    assert len(calls) == 2 and calls[0] == calls[1]
    assert desk.deliveries[in_gap] == 1 and desk.stats.copies_shown == 0


def test_a_desks_messages_held_up_behind_a_slow_handler_keep_their_order(
    central: ConsultEaseApp, world: dict[str, Any], broker: MosquittoBroker
) -> None:
    # While the handlers are busy, a desk's heartbeat waits, then its presence report, then
    # newer heartbeats. Folded into the first heartbeat's place, the newest heartbeat was
    # handled before the presence report, whose uptime then went backwards: a reboot that
    # never happened, and every pending request sent again with no withdrawal (a copy on
    # the desk). Kept in order, nothing looks like a reboot.
    fid = world["faculty"][0].id
    controller: ConsultationController = central.controllers["consultation"]
    calls: list[object] = []

    def recording(faculty_id: int, since: Any) -> int:
        calls.append(since)
        return controller.resend_pending(faculty_id, since)

    central.controllers["liveness"].set_resender(recording)
    service = central.async_mqtt_service
    held, entered = threading.Event(), threading.Event()

    def slow_handler(_message: object) -> None:
        entered.set()
        held.wait(20)

    service.subscribe("test/slow", slow_handler, qos=0)
    desk = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    desk.connect("127.0.0.1", broker.port, 30)
    desk.loop_start()
    try:

        def send(topic: str, payload: str) -> None:
            desk.publish(topic, payload.encode(), qos=0).wait_for_publish(5)

        def heartbeat(uptime_ms: int) -> None:
            send(topics.faculty_heartbeat_topic(fid), build_heartbeat_json(fid, uptime_ms, True, 0))

        heartbeat(10_000)  # the first message from this desk: new, everything sent to it
        faculty: FacultyController = central.controllers["faculty"]
        assert wait_until(lambda: _shown(faculty, fid) == "available", 15)
        assert wait_until(lambda: calls == [None], 10)
        deadline = time.monotonic() + 15
        while not entered.is_set() and time.monotonic() < deadline:
            send("test/slow", "hold")  # until the subscription is in place at the broker
            entered.wait(0.2)
        assert entered.is_set()
        received = service.get_stats()["messages_received"]
        heartbeat(20_000)
        presence = build_presence_json(fid, "Dr. Faculty 0", True, 21_000)
        send(topics.faculty_status_topic(fid), presence)
        send(topics.legacy_faculty_status_topic(fid), presence)
        heartbeat(21_500)
        heartbeat(22_000)
        assert wait_until(lambda: service.get_stats()["messages_received"] >= received + 5, 10)
    finally:
        held.set()
        desk.loop_stop()
        desk.disconnect()
    time.sleep(SETTLE_S)
    state = central.controllers["liveness"].desk_state(fid)
    assert state is not None and state.uptime_ms == 22_000
    assert None not in calls[1:], f"a reboot was seen: {calls}"
