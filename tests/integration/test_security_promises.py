"""docs/security.md's lockout promise at its edges, on SQLite and PostgreSQL.

"5 failed logins within 15 minutes lock the account for 15 minutes": five failures
spread over 14 minutes lock it; the window's numbers are literals here.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from central_system.controllers.admin_controller import AdminController
from tests.integration.test_admin_accounts import GOOD, Clock, cheap_hasher


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctl(engine: Engine, clock: Clock) -> AdminController:
    return AdminController(hasher=cheap_hasher(), clock=clock)


def test_five_failures_spread_over_14_minutes_still_lock(
    ctl: AdminController, clock: Clock
) -> None:
    ctl.create_first_admin("alice", GOOD)
    for _ in range(4):
        assert not ctl.authenticate("alice", "wrong-password-1").locked_until
        clock.advance(minutes=3, seconds=30)
    fifth = ctl.authenticate("alice", "wrong-password-1")  # 14 minutes after the first
    assert fifth.locked_until == clock.now + timedelta(minutes=15)
    assert not ctl.authenticate("alice", GOOD)


def test_a_failure_just_over_15_minutes_old_no_longer_counts(
    ctl: AdminController, clock: Clock
) -> None:
    ctl.create_first_admin("alice", GOOD)
    assert not ctl.authenticate("alice", "wrong-password-1").locked_until
    clock.advance(minutes=15, seconds=1)
    for _ in range(4):
        assert not ctl.authenticate("alice", "wrong-password-1").locked_until
        clock.advance(seconds=1)
    assert ctl.authenticate("alice", GOOD)
