"""An open page's live stream ends when its session stops working (issue 10 review): it was
authenticated once, when the page opened, so a signed-out, expired or deactivated session
kept receiving consultation ids and statuses. Now signing out ends that session's streams
at once, and each stream checks its session again at every keepalive. A real
``CentralServer`` in-process (SQLite and PostgreSQL, real Mosquitto) as the other web tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from central_system.controllers.admin_controller import AdminController
from central_system.models import Admin, WebSession, utcnow
from central_system.server.web.live import WebLive
from central_system.server.web.security import SESSION_COOKIE, WebSessions
from tests.stream_reader import StreamReader
from tests.web.helpers import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    FACULTY_PASSWORD,
    Web,
    csrf_of,
    faculty_account,
    running_web,
    seed,
    sign_in,
)

KEEPALIVE_S = 0.5
# Generous: one keepalive, a thread hop for the check and a loaded CI machine.
ENDS_WITHIN_S = KEEPALIVE_S + 5.0
# With the default 15 s keepalive, a stream the server ends itself must end well before it.
AT_ONCE_S = 5.0


class PageStream(StreamReader):
    """``GET /web/faculty/events`` read in a thread, as an open page's EventSource does."""

    def __init__(self, client: TestClient) -> None:
        super().__init__(lambda: client.stream("GET", "/web/faculty/events"))


def _signed_in(web: Web, username: str, password: str = FACULTY_PASSWORD) -> TestClient:
    client = web.client()
    r = sign_in(client, username, password)
    assert r.status_code == 303, r.text[:300]
    return client


def _sign_out(client: TestClient, page: str = "/web/faculty") -> None:
    r = client.post("/web/logout", data={"csrf": csrf_of(client.get(page).text)})
    assert r.status_code == 303 and r.headers["location"] == "/web/login"


def _refused(client: TestClient, cookie: str) -> bool:
    """Whether the page's reconnect (with the old cookie) is sent to the login page."""
    client.cookies.set(SESSION_COOKIE, cookie)
    r = client.get("/web/faculty/events")
    return r.status_code == 303 and r.headers["location"].startswith("/web/login")


@pytest.fixture
def web(db_url: str, make_settings: Any) -> Iterator[Web]:
    with running_web(make_settings(database_url=db_url)) as w:  # keepalive: 15 s
        w.ids = seed(w.engine)  # type: ignore[attr-defined]
        yield w


@pytest.fixture
def quick_web(db_url: str, make_settings: Any) -> Iterator[Web]:
    settings = make_settings(database_url=db_url, server_keepalive_s=KEEPALIVE_S)
    with running_web(settings) as w:
        w.ids = seed(w.engine)  # type: ignore[attr-defined]
        yield w


def test_signing_out_ends_that_sessions_open_page_streams_at_once_and_no_other(web: Web) -> None:
    ids = web.ids  # type: ignore[attr-defined]
    faculty_account(web.engine, ids["ada"], "ada.cruz")
    faculty_account(web.engine, ids["ben"], "ben.reyes")
    laptop, phone = _signed_in(web, "ada.cruz"), _signed_in(web, "ada.cruz")
    ben = _signed_in(web, "ben.reyes")
    cookie = str(laptop.cookies.get(SESSION_COOKIE))
    laptop_page, phone_page, ben_page = PageStream(laptop), PageStream(phone), PageStream(ben)
    assert web.app.state.web_live.pages == 3
    began = time.monotonic()
    _sign_out(laptop)
    took = laptop_page.ended_within(AT_ONCE_S, began)
    print(f"the signed-out session's page stream ended {took:.2f} s after the sign-out")
    assert _refused(web.client(), cookie)
    # The same person's other session and everyone else's stay open.
    assert phone_page.is_alive() and ben_page.is_alive()
    assert web.app.state.web_live.pages == 2
    for client, page in ((phone, phone_page), (ben, ben_page)):  # each ends with its sign-out
        began = time.monotonic()
        _sign_out(client)
        page.ended_within(AT_ONCE_S, began)
    assert [a.actor for a in web.audit("web.logout")] == [
        "faculty:ada.cruz",
        "faculty:ada.cruz",
        "faculty:ben.reyes",
    ]


def test_a_deactivated_expired_or_elsewhere_ended_session_loses_its_stream_within_a_keepalive(
    quick_web: Web,
) -> None:
    web = quick_web
    ids = web.ids  # type: ignore[attr-defined]
    faculty_account(web.engine, ids["ada"], "ada.cruz")
    faculty_account(web.engine, ids["ben"], "ben.reyes")
    ada, ben = _signed_in(web, "ada.cruz"), _signed_in(web, "ben.reyes")
    ada_cookie = str(ada.cookies.get(SESSION_COOKIE))
    ada_page, ben_page = PageStream(ada), PageStream(ben)
    time.sleep(3 * KEEPALIVE_S)  # checked about three times: still allowed
    assert ada_page.is_alive() and ben_page.is_alive()

    # An administrator deactivates Ada's account (the CLI's path, not this server's pages).
    began = time.monotonic()
    AdminController(db=web.engine).deactivate_admin("ada.cruz", actor=f"admin:{ADMIN_USER}")
    took = ada_page.ended_within(ENDS_WITHIN_S, began)
    print(f"the deactivated account's stream ended {took:.2f} s after (keepalive {KEEPALIVE_S} s)")
    assert _refused(web.client(), ada_cookie)
    ben_page.keeps_going(3 * KEEPALIVE_S)  # everyone else's is untouched

    # A session signed out elsewhere (its row deleted by another server) ...
    with Session(web.engine) as s:
        began = time.monotonic()
        s.execute(delete(WebSession).where(WebSession.account_id == _account_id(web, "ben.reyes")))
        s.commit()
    ben_page.ended_within(ENDS_WITHIN_S, began)

    # ... and one that expired (8 h after sign-in) end the same way.
    ben = _signed_in(web, "ben.reyes")
    ben_page = PageStream(ben)
    with Session(web.engine) as s:
        began = time.monotonic()
        s.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    ben_page.ended_within(ENDS_WITHIN_S, began)
    assert web.app.state.web_live.pages == 0


def test_the_keepalive_check_refuses_a_deactivated_administrator_and_survives_a_database_error(
    quick_web: Web,
) -> None:
    web = quick_web
    admin = _signed_in(web, ADMIN_USER, ADMIN_PASSWORD)
    ctx = web.app.state.web_context
    user = ctx.sessions.resolve(str(admin.cookies.get(SESSION_COOKIE)))
    assert user is not None and user.is_admin
    assert ctx.sessions.still_allowed(user)
    controller = AdminController(db=web.engine)
    controller.create_admin("second-admin", ADMIN_PASSWORD, actor=f"admin:{ADMIN_USER}")
    controller.deactivate_admin(ADMIN_USER, actor="admin:second-admin")
    assert not ctx.sessions.still_allowed(user)

    def broken() -> Session:
        raise OperationalError("SELECT 1", {}, Exception("database unreachable"))

    assert WebSessions(broken).still_allowed(user)  # type: ignore[arg-type]


def _account_id(web: Web, username: str) -> int:
    with Session(web.engine) as s:
        found = s.scalar(select(Admin.id).where(Admin.username == username))
        assert found is not None
        return found


def test_a_busy_page_is_checked_every_keepalive_and_ending_one_session_spares_the_others() -> None:
    async def drain(stream: AsyncIterator[str]) -> list[str]:
        return [chunk async for chunk in stream]

    async def scenario() -> tuple[int, list[str], float]:
        live = WebLive(keepalive_s=0.1)
        live.attach(_NoBackend(), asyncio.get_running_loop())
        checks, allowed = 0, True

        async def still_allowed() -> bool:
            nonlocal checks
            checks += 1
            return allowed

        busy = asyncio.create_task(
            drain(live.stream(lambda _e: True, key=1, still_allowed=still_allowed))
        )
        signed_out = asyncio.create_task(drain(live.stream(lambda _e: True, key=2)))
        other = asyncio.create_task(drain(live.stream(lambda _e: True, key=3)))
        while live.pages < 3:
            await asyncio.sleep(0)
        live.end_streams_of(2)  # as the sign-out calls it (from a worker thread there)
        ended = await asyncio.wait_for(signed_out, 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < 0.35:  # an event every 10 ms: never idle for 0.1 s
            live.post({"kind": "faculty", "faculty_id": 1})
            await asyncio.sleep(0.01)
        allowed = False
        stopped = loop.time()
        while not busy.done():
            live.post({"kind": "faculty", "faculty_id": 1})
            await asyncio.sleep(0.01)
        took = loop.time() - stopped
        assert not other.done() and live.pages == 1
        live.close()
        await asyncio.wait_for(other, 2)
        return checks, ended, took

    checks, ended, took = asyncio.run(scenario())
    assert checks >= 3 and took < 0.5, (checks, took)
    assert ended == ["retry: 2000\n: connected\n\n"]


class _NoBackend:
    """A backend without controllers: the test posts its events itself."""

    def _controller(self, _name: str) -> Any:
        return _NoController()


class _NoController:
    def add_listener(self, _listener: Any) -> Any:
        return lambda: None
