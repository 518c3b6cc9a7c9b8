"""The broker's transition mode for desks still flashed for the original ConsultEase.

Against a real Mosquitto running what `consultease broker-config` generates: a desk with
the original's shared login (or none) keeps working on day one, cannot forge what the
central system publishes, and `doctor` warns until the mode is turned off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from central_system import db as dbmod
from central_system.config import Settings
from central_system.services import provisioning
from central_system.services.doctor import Status, _Context, check_legacy_desk_login
from faculty_desk_unit import DeskUnit
from tests.integration import test_broker_security
from tests.integration.service_helpers import wait_until
from tests.integration.test_broker_security import Client, Deployment, GeneratedBroker, _central

deployment = test_broker_security.deployment  # the fixture: a generated config on Mosquitto

SHARED_USER = "consultease_desk"  # what the original's desks shared
SHARED_PASSWORD = "Old-Shared-Desk-Pass-7"


def _doctor(d: Deployment, tmp_path: Path) -> tuple[Status, str]:
    settings = Settings(database_url=d.db_url, data_dir=tmp_path)
    result = check_legacy_desk_login(_Context(settings, 1.0))
    return result.status, result.detail


def _transition(d: Deployment, username: str | None, password: str | None) -> None:
    with dbmod.session_scope() as s:
        provisioning.set_legacy_desk_access(s, username, password)
        provisioning.refresh_broker_files(s, d.out_dir)
    d.broker.reload()


@pytest.mark.timeout(90)
def test_a_desk_with_the_old_shared_login_works_until_the_transition_ends(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    assert _doctor(d, tmp_path)[0] == Status.PASS
    refused = Client(d.broker.port, SHARED_USER, SHARED_PASSWORD)
    assert not refused.accepted  # before the transition mode: refused like any stranger
    refused.close()

    _transition(d, SHARED_USER, SHARED_PASSWORD)
    assert SHARED_PASSWORD not in (d.out_dir / "passwd").read_text()
    status, detail = _doctor(d, tmp_path)
    assert status == Status.WARN and "TRANSITION MODE" in detail and SHARED_USER in detail
    assert SHARED_PASSWORD not in detail

    observer = _central(d)
    observer.subscribe("consultease/faculty/#")
    desk = DeskUnit(
        2, "Dr. Test 2", "127.0.0.1", d.broker.port, "firmware", username=SHARED_USER,
        password=SHARED_PASSWORD,
    ).start()  # fmt: skip
    forger = Client(d.broker.port, SHARED_USER, SHARED_PASSWORD)
    try:
        assert desk.wait_connected(10)
        # Its presence reaches the central system, and a request reaches it.
        assert wait_until(lambda: "consultease/faculty/2/status" in observer.topics(), 10)
        observer.publish("consultease/faculty/2/messages", b"CID:41 From:Ana (SID:1): hello")
        assert desk.wait_for_request(10, cid=41) is not None
        assert desk.acknowledge(41) is not None
        assert wait_until(lambda: "consultease/faculty/2/responses" in observer.topics(), 10)
        # What the transition mode still refuses: forging what the central publishes.
        assert forger.accepted
        forger.publish("consultease/faculty/1/messages", b"CID:99 From:Mallory (SID:9): forged")
        forger.publish("consultease/system/central/x/status", b"online")
        time.sleep(1.0)
        assert "consultease/faculty/1/messages" not in observer.topics()
        assert not any(t.startswith("consultease/system/") for t in observer.topics())
    finally:
        desk.stop()
        forger.close()
        observer.close()

    with dbmod.session_scope() as s:
        assert provisioning.end_legacy_desk_access(s)
        provisioning.refresh_broker_files(s, d.out_dir)
    d.broker.reload()
    after = Client(d.broker.port, SHARED_USER, SHARED_PASSWORD)
    try:
        assert not after.accepted, after.connack
    finally:
        after.close()
    assert _doctor(d, tmp_path)[0] == Status.PASS


@pytest.mark.timeout(90)
def test_anonymous_transition_lets_old_desks_in_confined_to_desk_topics(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    with dbmod.session_scope() as s:
        provisioning.set_legacy_desk_access(s, None, None)
        result = provisioning.write_broker_config(s, d.out_dir, port=d.broker.port)
    conf = result.conf_path.read_text()
    assert "allow_anonymous true" in conf and "allow_anonymous false" not in conf
    acl = result.acl_path.read_text()
    # Anonymous rules must come before the first `user` line to apply to anonymous clients.
    assert acl.index("topic write consultease/faculty/+/status") < acl.index("\nuser ")
    d.broker.stop()
    broker = GeneratedBroker(result.conf_path, d.broker.port, d.broker.log_path).start()
    observer = Client(broker.port, d.central_user, d.central_password)
    anonymous = Client(broker.port, None, None)
    try:
        assert observer.accepted and anonymous.accepted
        observer.subscribe("consultease/#")
        anonymous.publish("consultease/faculty/1/status", b'{"status": "AVAILABLE"}')
        anonymous.publish("consultease/faculty/1/messages", b"CID:7 From:Mallory (SID:9): x")
        assert wait_until(lambda: "consultease/faculty/1/status" in observer.topics(), 10)
        time.sleep(0.5)
        assert "consultease/faculty/1/messages" not in observer.topics()
        assert _doctor(d, tmp_path)[0] == Status.WARN
    finally:
        anonymous.close()
        observer.close()
        broker.cleanup()


def test_reserved_or_malformed_shared_logins_are_refused(deployment: Deployment) -> None:
    with dbmod.session_scope() as s:
        for bad in ("desk-3", provisioning.CENTRAL_USERNAME, "has space", "a:b"):
            with pytest.raises(provisioning.ProvisioningError):
                provisioning.set_legacy_desk_access(s, bad, "x-password-1")
        with pytest.raises(provisioning.ProvisioningError):
            provisioning.set_legacy_desk_access(s, "shared", "")


def test_no_terminal_and_no_password_variable_is_one_clear_line(tmp_path: Path) -> None:
    """broker-config run by a script (no terminal to ask on) without the variable: no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTEASE_")}
    env["CONSULTEASE_DATA_DIR"] = str(tmp_path / "data")
    argv = ["broker-config", "--out", str(tmp_path / "broker"), "--legacy-desk-login", SHARED_USER]
    result = subprocess.run(
        [sys.executable, "-m", "central_system.cli", *argv],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal: getpass reads the empty stdin
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "CONSULTEASE_LEGACY_DESK_PASSWORD" in result.stderr
    assert not (tmp_path / "broker" / "acl").exists()  # nothing written


def test_a_shared_login_longer_than_its_column_is_refused(deployment: Deployment) -> None:
    # PostgreSQL would raise 'value too long' (a traceback); SQLite would store it silently.
    with dbmod.session_scope() as s, pytest.raises(provisioning.ProvisioningError, match="64"):
        provisioning.set_legacy_desk_access(s, "d" * 65, "x-password-1")
