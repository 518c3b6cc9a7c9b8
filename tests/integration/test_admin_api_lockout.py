"""An administrator's sign-in through the JSON API (``POST /api/v1/admin/session``) locks
the account after repeated wrong passwords, refuses even the right one while locked, and
audits every attempt: the same promise the web login keeps (tests/web), on SQLite and
PostgreSQL with a real server and Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from central_system.controllers.admin_controller import MAX_FAILURES
from central_system.models import AuditLog
from tests.web.helpers import ADMIN_PASSWORD, ADMIN_USER, Web, running_web, seed

WRONG = "Wrong-Password-123"


@pytest.fixture
def web(db_url: str, make_settings: Any) -> Iterator[Web]:
    with running_web(make_settings(database_url=db_url)) as w:
        seed(w.engine)
        yield w


def _sign_in(web: Web, password: str) -> Any:
    return web.client().post(
        "/api/v1/admin/session", json={"username": ADMIN_USER, "password": password}
    )


def _login_audit(web: Web) -> list[tuple[bool, str]]:
    with Session(web.engine) as s:
        rows = s.scalars(
            select(AuditLog).where(AuditLog.action == "login").order_by(AuditLog.id)
        ).all()
        return [(bool(r.success), str(r.details or "")) for r in rows]


def test_the_api_sign_in_locks_after_repeated_failures_even_for_the_right_password(
    web: Web,
) -> None:
    assert _sign_in(web, ADMIN_PASSWORD).status_code == 201  # the account works
    before = len(_login_audit(web))

    for _ in range(MAX_FAILURES):
        r = _sign_in(web, WRONG)
        assert r.status_code == 401, r.text
        assert r.json()["error"] and "token" not in r.json()

    locked = _sign_in(web, ADMIN_PASSWORD)
    assert locked.status_code == 401, locked.text
    assert "locked" in locked.json()["detail"].lower()
    assert "token" not in locked.json()

    attempts = _login_audit(web)[before:]
    assert len(attempts) == MAX_FAILURES + 1  # every attempt, the refused right one too
    assert not any(ok for ok, _ in attempts)
    assert "locked" in attempts[-1][1]
    assert WRONG not in "".join(d for _, d in attempts)  # no password in the audit log


def test_a_wrong_password_answers_401_without_a_session_and_unknown_users_alike(
    web: Web,
) -> None:
    wrong = _sign_in(web, WRONG)
    unknown = web.client().post(
        "/api/v1/admin/session", json={"username": "nobody-here", "password": WRONG}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]  # no user enumeration
