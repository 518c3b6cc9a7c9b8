"""Desk connection history (issue 12): real desks on a real Mosquitto leave transition rows.

An improved desk whose socket dies fires its last will (``lwt``); a deployed-firmware
desk has none, so only the heartbeat timeout notices it (``heartbeat timeout``); each
comes back with a new ``online`` row. On SQLite and PostgreSQL. Pruning keeps each
desk's newest row before the cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from central_system.controllers.liveness import LivenessService
from central_system.db import session_scope
from central_system.main import ConsultEaseApp
from central_system.models import DeskConnectionEvent, utcnow
from faculty_desk_unit.desk import DeskUnit
from tests.integration.controller_helpers import db_url_of, running_app, seed, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def central(make_settings, engine: Engine) -> Iterator[ConsultEaseApp]:
    """The headless central system with a short liveness timeout (2 s)."""
    settings = make_settings(
        database_url=db_url_of(engine), desk_offline_after_s=2.0, liveness_check_interval_s=0.2
    )
    with running_app(settings) as app:
        yield app


def _history(fid: int) -> list[tuple[bool, str]]:
    with session_scope() as session:
        rows = session.execute(
            select(DeskConnectionEvent.online, DeskConnectionEvent.reason)
            .where(DeskConnectionEvent.faculty_id == fid)
            .order_by(DeskConnectionEvent.at, DeskConnectionEvent.id)
        ).all()
    return [(bool(online), str(reason)) for online, reason in rows]


def test_a_desk_that_loses_the_broker_leaves_offline_and_online_rows(
    central: ConsultEaseApp, broker
) -> None:
    data = seed(central, faculty_count=2)
    improved_fid, firmware_fid = (f.id for f in data["faculty"])
    liveness: LivenessService = central.controllers["liveness"]
    improved = DeskUnit(
        improved_fid, "Dr. Faculty 0", "127.0.0.1", broker.port, mode="improved",
        heartbeat_interval=0.5,
    ).start()  # fmt: skip
    firmware = DeskUnit(
        firmware_fid, "Dr. Faculty 1", "127.0.0.1", broker.port, heartbeat_interval=0.5
    ).start()
    try:
        assert wait_until(lambda: _history(improved_fid) == [(True, "status")], timeout=15)
        assert wait_until(lambda: _history(firmware_fid) == [(True, "status")], timeout=15)
        before = liveness.disconnections

        # A power cut of the improved desk: the broker publishes its will.
        improved.kill_connection(reconnect_after=3.0)
        assert wait_until(lambda: _history(improved_fid)[1:2] == [(False, "lwt")], timeout=10)
        # It connects again and reports its presence: online, once (the timeout adds nothing).
        assert wait_until(lambda: len(_history(improved_fid)) == 3, timeout=15)
        assert _history(improved_fid) == [(True, "status"), (False, "lwt"), (True, "status")]

        # The firmware desk has no will: silent for 2 s, the liveness check marks it offline.
        firmware.kill_connection()
        assert wait_until(
            lambda: _history(firmware_fid) == [(True, "status"), (False, "heartbeat timeout")],
            timeout=15,
        )
        assert liveness.disconnections == before + 2
        with session_scope() as session:
            times = list(
                session.scalars(
                    select(DeskConnectionEvent.at)
                    .where(DeskConnectionEvent.faculty_id == improved_fid)
                    .order_by(DeskConnectionEvent.id)
                )
            )
        assert times == sorted(times)
        assert times[2] - times[1] >= timedelta(seconds=2)  # it was away about 3 s
    finally:
        improved.stop()
        firmware.stop()


def test_pruning_keeps_each_desks_newest_row_before_the_cut(central: ConsultEaseApp) -> None:
    data = seed(central, faculty_count=2)
    a, b = (f.id for f in data["faculty"])
    liveness: LivenessService = central.controllers["liveness"]
    now = utcnow()
    old, older = now - timedelta(days=liveness.history_days + 1), now - timedelta(days=500)
    rows = [
        (a, older, True),
        (a, old, False),  # a's newest before the cut: kept
        (a, now - timedelta(days=1), True),
        (b, older, True),  # b's only row before the cut: kept
    ]
    with session_scope() as session:
        session.add_all(
            DeskConnectionEvent(faculty_id=f, at=at, online=on, reason="status")
            for f, at, on in rows
        )
    assert liveness.prune_history(now) == 1
    with session_scope() as session:
        left = session.execute(
            select(DeskConnectionEvent.faculty_id, DeskConnectionEvent.online).order_by(
                DeskConnectionEvent.faculty_id, DeskConnectionEvent.at
            )
        ).all()
    assert [tuple(r) for r in left] == [(a, False), (a, True), (b, True)]
    assert liveness.prune_history(now) == 0
