"""Administrator accounts on a real database (SQLite and PostgreSQL): hashing, policy, lockout, audit."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select

from central_system.controllers.admin_controller import (
    AccountLockedError,
    AdminController,
    AdminExistsError,
    LastAdminError,
    PasswordPolicyError,
    WrongPasswordError,
    check_password_policy,
)
from central_system.db import get_db
from central_system.models import Admin

GOOD = "Tangerine-Orbit-42"
OTHER = "Velvet.Harbor.917"


class Clock:
    """A controllable clock so the 15-minute windows take no real time."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def cheap_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctl(engine: Engine, clock: Clock) -> AdminController:
    return AdminController(hasher=cheap_hasher(), clock=clock)


def _row(username: str) -> Admin:
    with get_db() as s:
        admin = s.scalar(select(Admin).where(Admin.username == username))
        assert admin is not None
        return admin


def test_first_admin_only_once_and_hash_is_argon2id(ctl: AdminController) -> None:
    assert ctl.needs_first_admin()
    ctl.create_first_admin("alice", GOOD)
    assert not ctl.needs_first_admin()
    stored = _row("alice").password_hash
    assert stored.startswith("$argon2id$") and GOOD not in stored
    with pytest.raises(AdminExistsError):
        ctl.create_first_admin("mallory", OTHER)
    assert ctl.get_admin("mallory") is None
    actions = [(e.action, e.target, e.success) for e in ctl.list_audit()]
    assert ("admin.create_first", "alice", True) in actions
    assert ("admin.create_first", "mallory", False) in actions


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("Short1!", "at least 12"),
        ("alllowercaseletters", "two kinds"),
        ("alice-Is-Great-9", "username"),
        ("Password2024!", "too common"),
        ("aaaaaaaaaaaaA1", "too few different"),
    ],
)
def test_password_policy_messages(password: str, fragment: str) -> None:
    with pytest.raises(PasswordPolicyError, match=fragment):
        check_password_policy(password, "alice")


def test_policy_applies_to_first_admin(ctl: AdminController) -> None:
    with pytest.raises(PasswordPolicyError):
        ctl.create_first_admin("alice", "short")
    assert ctl.needs_first_admin()


def test_login_success_and_failures_are_audited(ctl: AdminController) -> None:
    ctl.create_first_admin("alice", GOOD)
    assert ctl.authenticate("alice", GOOD)
    bad = ctl.authenticate("alice", "wrong-password-1")
    assert not bad and bad.message == "Wrong username or password."
    unknown = ctl.authenticate("nobody", GOOD)
    assert not unknown and unknown.message == bad.message  # no user enumeration
    logins = [(e.target, e.success) for e in ctl.list_audit(action="login")]
    assert logins == [("nobody", False), ("alice", False), ("alice", True)]
    assert _row("alice").last_login_at is not None


def test_lockout_after_five_failures_even_with_right_password(
    ctl: AdminController, clock: Clock
) -> None:
    ctl.create_first_admin("alice", GOOD)
    for _ in range(4):
        assert not ctl.authenticate("alice", "wrong-password-1").locked_until
        clock.advance(minutes=1)
    fifth = ctl.authenticate("alice", "wrong-password-1")
    assert fifth.locked_until == clock.now + timedelta(minutes=15)
    locked = ctl.authenticate("alice", GOOD)
    assert not locked and "locked" in locked.message
    with pytest.raises(AccountLockedError):
        ctl.change_password("alice", GOOD, OTHER)
    clock.advance(minutes=15, seconds=1)
    assert ctl.authenticate("alice", GOOD)
    assert _row("alice").failed_attempts == 0


def test_failures_spread_over_more_than_fifteen_minutes_do_not_lock(
    ctl: AdminController, clock: Clock
) -> None:
    ctl.create_first_admin("alice", GOOD)
    for _ in range(8):
        assert not ctl.authenticate("alice", "wrong-password-1").locked_until
        clock.advance(minutes=4)
    assert ctl.authenticate("alice", GOOD)


def test_success_resets_the_failure_count(ctl: AdminController, clock: Clock) -> None:
    ctl.create_first_admin("alice", GOOD)
    for _ in range(4):
        ctl.authenticate("alice", "wrong-password-1")
    assert ctl.authenticate("alice", GOOD)
    for _ in range(4):
        clock.advance(seconds=1)
        assert not ctl.authenticate("alice", "wrong-password-1").locked_until


def test_unknown_user_costs_a_real_verification(ctl: AdminController) -> None:
    """Timing must not reveal which usernames exist: both paths run one argon2 verification."""
    slow = AdminController(hasher=PasswordHasher(time_cost=4, memory_cost=65536, parallelism=1))
    slow.create_first_admin("alice", GOOD)
    slow.authenticate("nobody", GOOD)  # builds the dummy hash once

    def timed(name: str) -> float:
        t0 = time.perf_counter()
        slow.authenticate(name, "wrong-password-1")
        return time.perf_counter() - t0

    known = min(timed("alice") for _ in range(3))
    unknown = min(timed("nobody") for _ in range(3))
    # Generous bounds (noisy shared machine): the unknown path must not be an order faster.
    assert unknown > known / 3, (known, unknown)


def test_hash_is_upgraded_when_parameters_change(engine: Engine, clock: Clock) -> None:
    AdminController(hasher=cheap_hasher(), clock=clock).create_first_admin("alice", GOOD)
    old = _row("alice").password_hash
    stronger = PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)
    assert AdminController(hasher=stronger, clock=clock).authenticate("alice", GOOD)
    new = _row("alice").password_hash
    assert new != old and not stronger.check_needs_rehash(new)
    assert AdminController(hasher=stronger, clock=clock).authenticate("alice", GOOD)


def test_forced_password_change(ctl: AdminController) -> None:
    ctl.create_first_admin("alice", GOOD)
    temp = ctl.reset_password("alice", actor="cli")
    result = ctl.authenticate("alice", temp)
    assert result and result.must_change_password
    assert ctl.must_change_password("alice")
    with pytest.raises(WrongPasswordError):
        ctl.change_password("alice", "not-the-password-1", OTHER)
    with pytest.raises(PasswordPolicyError):
        ctl.change_password("alice", temp, "weak")
    ctl.change_password("alice", temp, OTHER)
    assert not ctl.must_change_password("alice")
    assert not ctl.authenticate("alice", temp)
    assert ctl.authenticate("alice", OTHER)
    actions = {(e.action, e.success) for e in ctl.list_audit()}
    assert {
        ("admin.reset_password", True),
        ("admin.change_password", False),
        ("admin.change_password", True),
    } <= actions


def test_accounts_create_and_deactivate(ctl: AdminController) -> None:
    ctl.create_first_admin("alice", GOOD)
    bob = ctl.create_admin("bob", OTHER, actor="admin:alice")
    assert bob.must_change_password
    with pytest.raises(AdminExistsError):
        ctl.create_admin("bob", OTHER, actor="admin:alice")
    ctl.deactivate_admin("bob", actor="admin:alice")
    refused = ctl.authenticate("bob", OTHER)
    assert not refused and "deactivated" in refused.message
    with pytest.raises(LastAdminError):
        ctl.deactivate_admin("alice", actor="admin:alice")
    entries = ctl.list_audit()
    assert any(
        e.actor == "admin:alice" and e.action == "admin.deactivate" and e.target == "bob"
        for e in entries
    )
    assert len(ctl.list_audit(limit=2)) == 2
    assert ctl.list_audit(limit=2, offset=1)[0].id == entries[1].id


def test_bad_inputs_give_clear_errors_not_crashes(ctl: AdminController) -> None:
    with pytest.raises(ValueError, match="username"):
        ctl.create_first_admin("a b", GOOD)
    assert not ctl.authenticate(None, None)  # type: ignore[arg-type]
    assert not ctl.authenticate("alice", "x" * 100_000)
    with pytest.raises(ValueError):
        ctl.list_audit(limit=-1)
