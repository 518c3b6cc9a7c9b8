"""docs/security.md's promises at their edges.

"5 failed logins within 15 minutes lock the account for 15 minutes": five failures
spread over 14 minutes lock it (SQLite and PostgreSQL); the window's numbers are
literals here. "Secrets are never logged": checked on every log record while each
component that handles one does its work against the generated broker.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from central_system import db as dbmod
from central_system.controllers.admin_controller import AdminController
from central_system.services.async_mqtt_service import AsyncMQTTService
from faculty_desk_unit import DeskUnit
from tests.integration.service_helpers import running_service, wait_until
from tests.integration.test_admin_accounts import GOOD, OTHER, Clock, cheap_hasher
from tests.integration.test_broker_security import (  # the generated broker, as deployed
    Deployment,
    _settings,
    deployment,  # noqa: F401 - a fixture
)


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


def test_no_password_or_secret_reaches_the_log(
    deployment: Deployment,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # docs/security.md 2: "Secrets are never logged". Everything that handles one runs
    # here with every logger at DEBUG: a refused and an accepted central login, a desk's
    # login, administrator logins (right, wrong, locked-out) and a password change.
    caplog.set_level(logging.DEBUG)
    wrong_central = "Wrong-Central-Secret-4711"
    wrong_admin = "Wrong-Admin-Secret-0815"
    refused = AsyncMQTTService(_settings(deployment, wrong_central, tmp_path), dbmod.get_engine())
    refused.start()
    try:
        assert wait_until(lambda: refused.state == "auth_failed", 15)
    finally:
        refused.stop(timeout=2)
    settings = _settings(deployment, deployment.central_password, tmp_path)
    with running_service(settings, deployment.db_url) as svc:
        assert svc.publish_async("consultease/system/test", "x").wait_acknowledged(10)
    credentials = deployment.desks[1]
    desk = DeskUnit(
        1,
        "Dr. Test 1",
        "127.0.0.1",
        deployment.broker.port,
        username=credentials.username,
        password=credentials.password,
    ).start()
    try:
        assert desk.wait_connected(10)
    finally:
        desk.stop()
    admins = AdminController(hasher=cheap_hasher())
    admins.create_first_admin("alice", GOOD)
    assert admins.authenticate("alice", GOOD)
    admins.change_password("alice", GOOD, OTHER)
    for _ in range(6):
        assert not admins.authenticate("alice", wrong_admin)
    assert not admins.authenticate("alice", OTHER)  # locked out
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert "authentication failed" in text  # the refusals were logged, without the secret
    for secret in (
        wrong_central,
        deployment.central_password,
        credentials.password,
        GOOD,
        OTHER,
        wrong_admin,
    ):
        assert secret not in text
