"""Liveness writes routine updates in transactions of ROUTINE_FLUSH_ROWS desks (issue 15).

One transaction for every desk's last_seen and heartbeat held SQLite's write lock for
50+ ms at 10,000 desks, and a request created meanwhile waited for all of it. Every
desk's update must still be written.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, select

from central_system.controllers.liveness import ROUTINE_FLUSH_ROWS, LivenessService
from central_system.db import session_scope
from central_system.main import ConsultEaseApp
from central_system.models import DeskUnit, Faculty
from tests.integration.controller_helpers import db_url_of, running_app, seed

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def central(make_settings, engine: Engine) -> Iterator[ConsultEaseApp]:
    """The headless central system; the periodic check is called by the test only."""
    settings = make_settings(database_url=db_url_of(engine), liveness_check_interval_s=3600)
    with running_app(settings) as app:
        yield app


def test_routine_flush_writes_every_desk_in_several_short_transactions(
    central: ConsultEaseApp, engine: Engine
) -> None:
    count = 2 * ROUTINE_FLUSH_ROWS + 10
    fids = [f.id for f in seed(central, faculty_count=count)["faculty"]]
    liveness: LivenessService = central.controllers["liveness"]
    for fid in fids:  # online now (each written at once: not on the dispatch thread)
        assert liveness.observe(fid, heartbeat={"faculty_id": fid, "uptime": 1000})
    for fid in fids:  # routine: kept in memory until the check
        assert liveness.observe(fid, heartbeat={"faculty_id": fid, "uptime": 2000})
    commits: list[int] = []
    listener = lambda _conn: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listener)
    try:
        liveness.check()
    finally:
        event.remove(engine, "commit", listener)
    assert len(commits) >= 3, f"{len(commits)} transactions for {count} desks"
    with session_scope() as session:
        beats = dict(session.execute(select(DeskUnit.faculty_id, DeskUnit.last_heartbeat)).all())
        seen = dict(session.execute(select(Faculty.id, Faculty.last_seen)).all())
    assert all(beats[fid] == {"faculty_id": fid, "uptime": 2000} for fid in fids)
    assert all(seen[fid] is not None for fid in fids)
