"""A caller that loses access loses its event stream too, and a kiosk token is no card-UID
oracle (issue 9 review, items 9 and 10), against a real ``consultease server`` process.

The stream was authenticated once, at connect: a kiosk revoked with ``consultease kiosk
revoke`` (another process, the remedy docs/deployment.md gives for a lost kiosk) kept
receiving consultation and faculty events. Now each stream checks its token at every
keepalive, and the server ends a stream at once when it makes the change itself.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central_system.models import AdminSessionToken, AuditLog, utcnow
from central_system.server.auth import token_hash
from tests.brokers import MosquittoBroker
from tests.server_helpers import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    ROOT,
    admin_client,
    create_admin,
    db_engine,
    enroll,
    running_server,
)
from tests.stream_reader import StreamReader

KEEPALIVE_S = 1.0
# Generous: one keepalive, a thread hop for the check and a loaded CI machine.
ENDS_WITHIN_S = KEEPALIVE_S + 9.0
# With the default 15 s keepalive, a stream the server ends itself must end well before it.
AT_ONCE_S = 5.0
CARD = "04A1B2C3"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


class Stream(StreamReader):
    """``GET /api/v1/events`` read in a thread until it ends; when it ended."""

    def __init__(self, url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        super().__init__(
            lambda: httpx.stream("GET", url + "/api/v1/events", headers=headers, timeout=60)
        )


def _events(url: str, token: str) -> httpx.Response:
    """A refused ``GET /api/v1/events`` (an accepted one never ends: use :class:`Stream`)."""
    return httpx.get(url + "/api/v1/events", headers={"Authorization": f"Bearer {token}"})


def _audit(engine, action: str) -> list[AuditLog]:
    with Session(engine) as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


def test_a_kiosk_revoked_by_the_cli_and_an_expired_session_lose_their_streams_within_a_keepalive(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    env = {"PYTHONPATH": str(ROOT), "CONSULTEASE_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    keepalive = {"CONSULTEASE_SERVER_KEEPALIVE_S": str(KEEPALIVE_S)}
    with (
        running_server(db_url, broker.port, tmp_path, extra_env=keepalive) as server,
        db_engine(db_url) as engine,
    ):
        create_admin(engine)
        lost, kept = enroll(engine, "lost-kiosk"), enroll(engine, "hall-kiosk")
        admin = admin_client(server.url)
        lost_stream, kept_stream = Stream(server.url, lost), Stream(server.url, kept)
        admin_stream = Stream(server.url, str(admin.admin_token))
        time.sleep(3 * KEEPALIVE_S)  # checked three times: still allowed
        assert lost_stream.is_alive() and kept_stream.is_alive() and admin_stream.is_alive()
        began = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "central_system.cli", "kiosk", "revoke", "lost-kiosk"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        ran = time.monotonic() - began
        assert out.returncode == 0, out.stderr
        took = lost_stream.ended_within(ENDS_WITHIN_S, began)
        print(
            f"the revoked kiosk's stream ended {took:.2f} s after `consultease kiosk revoke` "
            f"started (the command ran {ran:.2f} s; keepalive {KEEPALIVE_S} s)"
        )
        refused = _events(server.url, lost)
        assert refused.status_code == 401 and refused.json()["error"] == "not_authenticated"
        # An administrator session that expired (8 h after sign-in) ends the same way.
        with Session(engine) as s:
            expired_at = time.monotonic()
            s.execute(
                update(AdminSessionToken)
                .where(AdminSessionToken.token_hash == token_hash(str(admin.admin_token)))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            s.commit()
        admin_stream.ended_within(ENDS_WITHIN_S, expired_at)
        assert _events(server.url, str(admin.admin_token)).status_code == 401
        # Everyone else's stream is untouched, and keeps its keepalives.
        assert kept_stream.is_alive()
        seen = len(kept_stream.chunks)
        time.sleep(2 * KEEPALIVE_S)
        assert kept_stream.is_alive() and len(kept_stream.chunks) > seen
        Stream(server.url, kept)  # and may open another (200)
    assert [a.success for a in _audit(engine, "kiosk.revoke")] == [True]


def _web_admin(url: str) -> httpx.Client:
    web = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    page = web.get("/web/login")
    match = CSRF.search(page.text)
    assert match, page.text[:300]
    data = {"csrf": match.group(1), "username": ADMIN_USER, "password": ADMIN_PASSWORD}
    assert web.post("/web/login", data=data).status_code == 303
    return web


def test_a_revoke_on_the_servers_web_page_and_a_sign_out_end_the_stream_at_once(
    sqlite_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    with (
        running_server(sqlite_url, broker.port, tmp_path) as server,  # keepalive: 15 s
        db_engine(sqlite_url) as engine,
    ):
        create_admin(engine)
        token, kept = enroll(engine, "lost-kiosk"), enroll(engine, "hall-kiosk")
        stream, kept_stream = Stream(server.url, token), Stream(server.url, kept)
        web = _web_admin(server.url)
        try:
            page = web.get("/web/admin/kiosks")
            match = CSRF.search(page.text)
            assert match, page.text[:300]
            began = time.monotonic()
            r = web.post(
                "/web/admin/kiosks/revoke", data={"csrf": match.group(1), "name": "lost-kiosk"}
            )
            assert r.status_code == 200 and "revoked" in r.text
        finally:
            web.close()
        took = stream.ended_within(AT_ONCE_S, began)
        print(f"the kiosk's stream ended {took:.2f} s after the web page's revoke was posted")
        assert _events(server.url, token).status_code == 401
        admin = admin_client(server.url)
        admin_stream = Stream(server.url, str(admin.admin_token))
        session = str(admin.admin_token)
        began = time.monotonic()
        admin.sign_out()
        took = admin_stream.ended_within(AT_ONCE_S, began)
        print(f"the administrator's stream ended {took:.2f} s after DELETE /admin/session")
        assert _events(server.url, session).status_code == 401
        assert kept_stream.is_alive()


def test_a_kiosk_past_its_limit_of_unknown_cards_gets_429_on_every_card_call_audited_once(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    limit = {"CONSULTEASE_SERVER_UNKNOWN_CARDS_PER_MINUTE": "3"}
    with (
        running_server(db_url, broker.port, tmp_path, extra_env=limit) as server,
        db_engine(db_url) as engine,
    ):
        create_admin(engine)
        admin = admin_client(server.url)
        faculty = admin.save_faculty(None, "Dr. Ada Cruz", "CS", "ada@example.edu")
        admin.register_student("Maria Santos", "2021-00001", "CS", CARD)
        probe, other = enroll(engine, "probe-kiosk"), enroll(engine, "hall-kiosk")

        def me(token: str, card: str, path: str = "/api/v1/students/me") -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}", "X-Card-UID": card}
            return httpx.get(server.url + path, headers=headers)

        assert me(probe, CARD).status_code == 200
        for card in ("0A000001", "0A000002", "0A000003", "0A000001", "0A000001"):
            r = me(probe, card)  # the same unknown card again counts once
            assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
        assert me(probe, CARD).status_code == 200  # under the limit: nothing changed
        limited = me(probe, "0A000004")
        assert limited.status_code == 429, limited.text
        assert limited.json() == {
            "error": "rate_limited",
            "detail": "Too many unknown cards were tapped at this kiosk. "
            "Please try again in a minute.",
        }
        # Now every card call of this kiosk, known card included (else a 429 would tell an
        # unknown card from a known one), through the fast path and through the app.
        for path in (
            "/api/v1/students/me",
            "/api/v1/students/me/consultations",
            "/api/v1/students/me/queue",
        ):
            assert me(probe, CARD, path).status_code == 429, path
            assert me(probe, "0A000005", path).status_code == 429, path
        sent = httpx.post(
            server.url + "/api/v1/consultations",
            headers={"Authorization": f"Bearer {probe}", "X-Card-UID": CARD},
            json={"faculty_id": faculty.id, "message": "Could we go over my thesis draft?"},
        )
        assert sent.status_code == 429, sent.text
        # Its calls without a card, and every other kiosk, are untouched.
        assert (
            httpx.get(
                server.url + "/api/v1/faculty", headers={"Authorization": f"Bearer {probe}"}
            ).status_code
            == 200
        )
        assert me(other, CARD).status_code == 200
        assert me(other, "0A000009").status_code == 404
        rows = _audit(engine, "api.rate_limited")
        assert [(a.actor, a.success) for a in rows] == [("kiosk:probe-kiosk", False)]
