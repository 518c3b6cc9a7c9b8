"""The kiosk's frequent reads and its request answered ahead of FastAPI (server/fast_path.py)
and the shared faculty list and waiting counts (frequent.SharedAnswer): the same answers as
the app's, kept fresh by every change. A real CentralServer on SQLite and PostgreSQL with real Mosquitto,
in-process behind Starlette's TestClient."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from central_system import topics
from central_system.models import AuditLog, Consultation, Faculty, KioskToken
from central_system.server.app import MAX_BODY_BYTES
from central_system.server.fast_path import MAX_FAST_BODY, KioskFastPath
from central_system.server.frequent import LOOP_READ_WAIT_MS, FrequentCalls
from tests.brokers import MosquittoBroker
from tests.mqtt_probe import publish_raw
from tests.server_helpers import ADMIN_PASSWORD, ADMIN_USER, create_admin, enroll, revoke
from tests.web.helpers import Web, running_web

CARD = "04A1B2C3"
OTHER_CARD = "04A1B2C4"


@pytest.fixture
def web(db_url: str, make_settings: Any) -> Iterator[Web]:
    with running_web(make_settings(database_url=db_url)) as w:
        yield w


def _fast_path(web: Web) -> KioskFastPath:
    layer = web.app.middleware_stack  # Starlette's and FastAPI's own layers, then ours
    for _ in range(6):
        if isinstance(layer, KioskFastPath):
            return layer
        layer = layer.app
    raise AssertionError("the fast path is not among the outermost layers")


def _seed(web: Web, client: TestClient) -> dict[str, Any]:
    create_admin(web.engine)
    signed_in = client.post(
        "/api/v1/admin/session", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    )
    assert signed_in.status_code == 201, signed_in.text
    admin = {"Authorization": f"Bearer {signed_in.json()['token']}"}
    fids = []
    for name in ("Dr. Ada Cruz", "Dr. Ben Reyes"):
        r = client.post(
            "/api/v1/faculty", json={"name": name, "department": "CS", "email": None}, headers=admin
        )
        assert r.status_code == 201, r.text
        fids.append(r.json()["id"])
    for name, number, card in (
        ("Maria Santos", "2021-1", CARD),
        ("Juan Luna", "2021-2", OTHER_CARD),
    ):
        r = client.post(
            "/api/v1/students",
            json={"name": name, "student_id": number, "department": "CS", "rfid_uid": card},
            headers=admin,
        )
        assert r.status_code == 201, r.text
    token = enroll(web.engine, "kiosk-a")
    return {"admin": admin, "kiosk": {"Authorization": f"Bearer {token}"}, "fids": fids}


def _both(client: TestClient, path: str, headers: dict[str, str]) -> tuple[Any, Any]:
    """The same call answered by the fast path and by the app (an extra query parameter the
    fast path does not take sends it to the app)."""
    sep = "&" if "?" in path else "?"
    return client.get(path, headers=headers), client.get(f"{path}{sep}_=1", headers=headers)


def test_the_fast_path_answers_exactly_as_the_app_does(web: Web) -> None:
    client = web.client()
    seeded = _seed(web, client)
    kiosk, admin = seeded["kiosk"], seeded["admin"]
    card = {**kiosk, "X-Card-UID": CARD}
    fast = _fast_path(web)
    cases = [
        ("/api/v1/faculty", kiosk, 200),
        ("/api/v1/faculty", admin, 200),  # administrators may read the list
        ("/api/v1/faculty/waiting", kiosk, 200),
        ("/api/v1/students/me", card, 200),
        ("/api/v1/students/me", {**kiosk, "X-Card-UID": "04:a1:b2:c3"}, 200),  # same card
        ("/api/v1/students/me/consultations", card, 200),
        ("/api/v1/students/me/consultations?limit=1", card, 200),
        ("/api/v1/students/me", {**kiosk, "X-Card-UID": "0BADCAFE"}, 404),  # unknown card
        ("/api/v1/students/me", {**admin, "X-Card-UID": CARD}, 403),  # not a kiosk
        ("/api/v1/faculty", {"Authorization": "Bearer cek_unknown"}, 401),
        ("/api/v1/faculty", {"Authorization": "Bearer nonsense"}, 401),
    ]
    for path, headers, status in cases:
        before = fast.answered
        quick, slow = _both(client, path, headers)
        assert fast.answered == before + 1, f"{path} was not answered by the fast path"
        assert (quick.status_code, slow.status_code) == (status, status), (path, quick.text)
        assert quick.content == slow.content, path
        assert quick.headers["content-type"] == slow.headers["content-type"] == "application/json"
    # A request made and cancelled: the card holder's list shows it the same way on both.
    made = client.post(
        "/api/v1/consultations",
        json={"faculty_id": seeded["fids"][0], "message": "Help with recursion please."},
        headers=card,
    )
    # (the desk is offline: refused with the controller's reason, the same on both paths)
    assert made.status_code == 400, made.text
    quick, slow = _both(client, "/api/v1/students/me/consultations", card)
    assert quick.content == slow.content


def test_irregular_calls_are_left_to_the_app(web: Web) -> None:
    client = web.client()
    seeded = _seed(web, client)
    kiosk = seeded["kiosk"]
    fast = _fast_path(web)
    before = fast.answered
    irregular = [
        ("/api/v1/faculty", {}, 401),  # no token
        ("/api/v1/faculty", {"Authorization": "Basic abc"}, 401),
        ("/api/v1/students/me", kiosk, 422),  # no card header
        ("/api/v1/students/me", {**kiosk, "X-Card-UID": "not-hex!"}, 422),
        ("/api/v1/students/me/consultations?limit=0", {**kiosk, "X-Card-UID": CARD}, 422),
        ("/api/v1/students/me/consultations?limit=201", {**kiosk, "X-Card-UID": CARD}, 422),
        ("/api/v1/students/me/consultations?limit=x", {**kiosk, "X-Card-UID": CARD}, 422),
    ]
    for path, headers, status in irregular:
        r = client.get(path, headers=headers)
        assert r.status_code == status, (path, r.text)
        assert r.json()["error"], path
    assert fast.answered == before
    # A revoked kiosk is refused by both, on its very next call.
    revoke(web.engine, "kiosk-a")
    quick, slow = _both(client, "/api/v1/faculty", kiosk)
    assert quick.status_code == slow.status_code == 401
    assert quick.content == slow.content


def _names(client: TestClient, headers: dict[str, str]) -> list[str]:
    r = client.get("/api/v1/faculty", headers=headers)
    assert r.status_code == 200
    return [f["name"] for f in r.json()]


def test_the_shared_faculty_list_is_read_once_and_never_outlives_a_change(
    web: Web, broker: MosquittoBroker
) -> None:
    client = web.client()
    seeded = _seed(web, client)
    kiosk, admin, (fid, _other) = seeded["kiosk"], seeded["admin"], seeded["fids"]
    shared = web.server.frequent._faculty  # type: ignore[union-attr]
    _names(client, kiosk)
    reads = shared.reads
    for _ in range(10):
        assert _names(client, kiosk) == ["Dr. Ada Cruz", "Dr. Ben Reyes"]
    assert shared.reads == reads, "the list was read again although nothing changed"
    # An administrator's edit through this server: the very next list shows it.
    r = client.put(
        f"/api/v1/faculty/{fid}",
        json={"name": "Dr. Ada Cruz-Lim", "department": "CS", "email": None},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert _names(client, kiosk) == ["Dr. Ada Cruz-Lim", "Dr. Ben Reyes"]
    # A change written by another process (the consultease command): shown within the bound.
    with Session(web.engine) as s:
        s.execute(update(Faculty).where(Faculty.id == fid).values(name="Dr. Ada Lim"))
        s.commit()
    deadline = time.monotonic() + shared.ttl + 5
    while _names(client, kiosk)[0] != "Dr. Ada Lim" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _names(client, kiosk)[0] == "Dr. Ada Lim"


def _available(client: TestClient, kiosk: dict[str, str], fid: int) -> bool:
    listed = client.get("/api/v1/faculty", headers=kiosk).json()
    return any(f["id"] == fid and f["can_request"] for f in listed)


def _desk_online(
    client: TestClient, broker: MosquittoBroker, kiosk: dict[str, str], fid: int
) -> None:
    """The faculty member's desk says they are present, until the faculty list shows it."""
    payload = json.dumps({"faculty_id": fid, "present": True, "status": "AVAILABLE"}).encode()
    deadline = time.monotonic() + 20
    while not _available(client, kiosk, fid) and time.monotonic() < deadline:
        publish_raw(broker.port, topics.faculty_status_topic(fid), payload, qos=0)
        time.sleep(0.2)
    assert _available(client, kiosk, fid), "the desk's presence never reached the faculty list"


def test_waiting_counts_follow_requests_and_desk_presence_follows_the_desk(
    web: Web, broker: MosquittoBroker
) -> None:
    client = web.client()
    seeded = _seed(web, client)
    kiosk, fid = seeded["kiosk"], seeded["fids"][0]
    card = {**kiosk, "X-Card-UID": CARD}
    assert not _available(client, kiosk, fid)
    _desk_online(client, broker, kiosk, fid)
    waiting = client.get("/api/v1/faculty/waiting", headers=kiosk).json()
    assert waiting.get(str(fid), 0) == 0
    made = client.post(
        "/api/v1/consultations",
        json={"faculty_id": fid, "message": "Help with recursion please."},
        headers=card,
    )
    assert made.status_code == 201, made.text
    # The very next poll counts it (no waiting out the shared answer's bound).
    assert client.get("/api/v1/faculty/waiting", headers=kiosk).json() == {str(fid): 1}
    cancelled = client.post(f"/api/v1/consultations/{made.json()['id']}/cancel", headers=card)
    assert cancelled.status_code == 200, cancelled.text
    assert client.get("/api/v1/faculty/waiting", headers=kiosk).json() == {}


def _send(
    client: TestClient, headers: dict[str, str], body: dict[str, Any], *, app: bool = False
) -> Any:
    """``POST /consultations``; with ``app`` answered by the app (the fast path takes no query)."""
    return client.post(
        "/api/v1/consultations" + ("?_=1" if app else ""), json=body, headers=headers
    )


def _requests(web: Web) -> int:
    with Session(web.engine) as s:
        return len(s.scalars(select(Consultation.id)).all())


def test_a_request_is_sent_by_the_fast_path_as_the_app_sends_it(
    web: Web, broker: MosquittoBroker
) -> None:
    client = web.client()
    seeded = _seed(web, client)
    kiosk, admin, (fid, offline) = seeded["kiosk"], seeded["admin"], seeded["fids"]
    card = {**kiosk, "X-Card-UID": CARD}
    _desk_online(client, broker, kiosk, fid)
    fast = _fast_path(web)
    body = {"faculty_id": fid, "message": "Help with recursion please.", "course_code": "CS 101"}
    before = fast.answered
    calls = web.server.frequent
    assert calls is not None
    sent_before = (calls.loop_sends, calls.thread_sends)
    quick = _send(client, card, body)
    assert fast.answered == before + 1, "the request was not answered by the fast path"
    # On the event loop on PostgreSQL (the kiosk's last use was recorded by _desk_online's
    # reads); SQLite's writers queue on a gate the loop must not wait on: a worker thread.
    on_loop = web.engine.dialect.name == "postgresql"
    assert (calls.loop_sends, calls.thread_sends) == (
        sent_before[0] + on_loop,
        sent_before[1] + (not on_loop),
    )
    slow = _send(client, card, body, app=True)
    assert fast.answered == before + 1
    assert (quick.status_code, slow.status_code) == (201, 201), (quick.text, slow.text)
    made, also = quick.json(), slow.json()
    assert list(made) == list(also)  # the same fields, in the same order
    assert made["id"] != also["id"]
    assert {k: v for k, v in made.items() if k not in ("id", "created_at")} == {
        k: v for k, v in also.items() if k not in ("id", "created_at")
    }
    assert made["status"] == "pending" and made["faculty_id"] == fid
    mine = client.get("/api/v1/students/me/consultations", headers=card).json()
    assert {c["id"] for c in mine} == {made["id"], also["id"]}
    # Refusals: the same answer, byte for byte, and nothing written by either.
    written = _requests(web)
    refused = [
        # the desk is offline; no such faculty member
        (card, {"faculty_id": offline, "message": "Are you in the office?"}, 400),
        (card, {"faculty_id": 987654, "message": "Is anyone there today?"}, 404),
        ({**kiosk, "X-Card-UID": "0BADCAFE"}, body, 404),  # unknown card
        ({**admin, "X-Card-UID": CARD}, body, 403),  # not a kiosk
        ({"Authorization": "Bearer cek_unknown", "X-Card-UID": CARD}, body, 401),
    ]
    for headers, sent, status in refused:
        before = fast.answered
        quick, slow = _send(client, headers, sent), _send(client, headers, sent, app=True)
        assert fast.answered == before + 1, sent
        assert (quick.status_code, slow.status_code) == (status, status), (sent, quick.text)
        assert quick.content == slow.content, sent
    assert _requests(web) == written
    # The third pending request with one faculty member is refused the same way by both.
    assert _send(client, card, body).status_code == 201
    quick, slow = _send(client, card, body), _send(client, card, body, app=True)
    assert (quick.status_code, slow.status_code) == (400, 400), quick.text
    assert quick.content == slow.content
    assert "3 pending requests" in quick.json()["detail"]


def test_a_request_the_fast_path_does_not_take_reaches_the_app_whole(web: Web) -> None:
    client = web.client()
    seeded = _seed(web, client)
    kiosk, fid = seeded["kiosk"], seeded["fids"][0]
    card = {**kiosk, "X-Card-UID": CARD}
    as_json = {**card, "Content-Type": "application/json"}
    fast = _fast_path(web)
    before, written = fast.answered, _requests(web)
    irregular: list[tuple[str, dict[str, Any], int]] = [
        ("malformed JSON", {"content": b'{"faculty_id": 1,', "headers": as_json}, 422),
        ("not UTF-8", {"content": b'{"message": "\xff\xfe"}', "headers": as_json}, 400),
        ("a list", {"json": [fid, "hello"], "headers": card}, 422),
        ("nested too deep", {"content": b"[" * 8000 + b"]" * 8000, "headers": as_json}, 400),
        ("wrong type", {"json": {"faculty_id": "one", "message": "Hi"}, "headers": card}, 422),
        ("no message", {"json": {"faculty_id": fid}, "headers": card}, 422),
        ("no card", {"json": {"faculty_id": fid, "message": "Hi"}, "headers": kiosk}, 422),
        (
            "a form",
            {
                "content": b"faculty_id=1&message=Hi",
                "headers": {**card, "Content-Type": "application/x-www-form-urlencoded"},
            },
            422,
        ),
        (
            "two content types, the first not JSON",
            {
                "content": json.dumps({"faculty_id": fid, "message": "Hello there, professor"}),
                "headers": [
                    *card.items(),
                    ("Content-Type", "text/plain"),
                    ("Content-Type", "application/json"),
                ],
            },
            422,
        ),
        (
            "a long message",
            {"json": {"faculty_id": fid, "message": "x" * MAX_FAST_BODY}, "headers": card},
            422,
        ),
        (
            "over the app's limit",
            {"json": {"faculty_id": fid, "message": "x" * MAX_BODY_BYTES}, "headers": card},
            413,
        ),
    ]
    for name, kw, status in irregular:
        r = client.post("/api/v1/consultations", **kw)
        assert r.status_code == status, (name, r.text)
        assert r.json()["error"], name
    assert fast.answered == before, "the fast path answered a call it should leave to the app"
    assert _requests(web) == written
    # A body the fast path read and did not take reaches the app whole: its answer names
    # the field at fault.
    r = client.post(
        "/api/v1/consultations", json={"faculty_id": "one", "message": "Hi"}, headers=card
    )
    assert r.json()["errors"][0]["loc"] == ["body", "faculty_id"], r.text
    # Without a Content-Type the body is not JSON to the app, nor to the fast path.
    r = client.post(
        "/api/v1/consultations",
        content=json.dumps({"faculty_id": fid, "message": "Hi"}).encode(),
        headers=card,
    )
    assert r.status_code == 422, r.text
    assert fast.answered == before


def test_fast_path_calls_are_timed_under_their_route(web: Web) -> None:
    client = web.client()
    seeded = _seed(web, client)
    for _ in range(6):
        assert client.get("/api/v1/faculty/waiting", headers=seeded["kiosk"]).status_code == 200
    text = client.get("/metrics").text
    line = next(
        (
            ln
            for ln in text.splitlines()
            if ln.startswith("consultease_api_request_duration_seconds_count")
            and 'route="/api/v1/faculty/waiting"' in ln
            and 'status="200"' in ln
        ),
        None,
    )
    assert line is not None, "fast-path calls are missing from the latency histogram"
    assert float(line.rsplit(" ", 1)[1]) >= 3
    # A request answered by the fast path, under POST and the same template.
    card = {**seeded["kiosk"], "X-Card-UID": CARD}
    refused = _send(client, card, {"faculty_id": seeded["fids"][0], "message": "Hi"})
    assert refused.status_code == 400  # the desk is offline
    text = client.get("/metrics").text
    assert any(
        ln.startswith("consultease_api_request_duration_seconds_count")
        and 'method="POST"' in ln
        and 'route="/api/v1/consultations"' in ln
        and 'status="400"' in ln
        for ln in text.splitlines()
    ), "a request answered by the fast path is missing from the latency histogram"


def test_reads_run_on_the_event_loop_and_what_must_write_in_a_worker_thread(web: Web) -> None:
    client = web.client()
    seeded = _seed(web, client)
    kiosk, admin = seeded["kiosk"], seeded["admin"]
    card = {**kiosk, "X-Card-UID": CARD}
    calls = web.server.frequent
    assert calls is not None
    # A kiosk's first call writes its last_used_at (due once a minute): a worker thread.
    before = (calls.loop_reads, calls.thread_reads)
    assert client.get("/api/v1/students/me", headers=card).status_code == 200
    assert (calls.loop_reads, calls.thread_reads) == (before[0], before[1] + 1)
    with Session(web.engine) as s:
        used = s.scalar(select(KioskToken.last_used_at).where(KioskToken.name == "kiosk-a"))
    assert used is not None, "the kiosk's last use was not recorded"
    # Then its reads run on the loop, every one of them.
    before = (calls.loop_reads, calls.thread_reads)
    for path in ("/api/v1/students/me", "/api/v1/students/me/consultations"):
        assert client.get(path, headers=card).status_code == 200
    assert client.get("/api/v1/faculty/waiting", headers=kiosk).status_code == 200
    assert (
        client.get("/api/v1/students/me", headers={**kiosk, "X-Card-UID": "0BAD"}).status_code
        == 404
    )
    assert (calls.loop_reads, calls.thread_reads) == (before[0] + 4, before[1])
    # An administrator's session is checked through its own sessions: a worker thread.
    assert client.get("/api/v1/faculty", headers=admin).status_code == 200
    assert calls.thread_reads == before[1] + 1
    # A revoked token is refused on its next call, and the refusal is audited.
    revoke(web.engine, "kiosk-a")
    refused = client.get("/api/v1/faculty/waiting", headers=kiosk)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    with Session(web.engine) as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "api.refused")).all()
    assert any("kiosk-a" in (row.actor or "") for row in rows), "the refusal was not audited"


def test_a_read_held_up_by_a_lock_leaves_the_event_loop_and_is_answered_from_a_thread(
    web: Web,
) -> None:
    client = web.client()
    seeded = _seed(web, client)
    kiosk = seeded["kiosk"]
    card = {**kiosk, "X-Card-UID": CARD}
    calls = web.server.frequent
    assert calls is not None
    for _ in range(2):  # the first call records the kiosk's last use (a worker thread)
        assert client.get("/api/v1/students/me", headers=card).status_code == 200
    loop_conn = calls._loop_conn
    assert loop_conn is not None
    # Its short wait is its own: the pool's connections keep the configured one.
    with web.engine.connect() as pooled:
        if web.engine.dialect.name == "sqlite":
            assert loop_conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == LOOP_READ_WAIT_MS
            assert pooled.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
            return  # (a WAL reader is not held up by a writer: nothing more to provoke here)
        assert loop_conn.exec_driver_sql("SHOW statement_timeout").scalar() == "250ms"
        assert pooled.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
    # PostgreSQL: another session holds the kiosk tokens' table locked for a second.
    locker = web.engine.connect()
    locker.exec_driver_sql("LOCK TABLE kiosk_tokens IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(1.0, locker.rollback)
    release.start()
    try:
        before = calls.thread_reads
        started = time.monotonic()
        answer = client.get("/api/v1/students/me", headers=card)
        waited = time.monotonic() - started
    finally:
        release.join()
        locker.close()
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "Maria Santos"
    assert calls.thread_reads == before + 1, "the held-up read was not handed to a worker thread"
    assert waited >= 0.9, "the read did not wait for the lock at all"
    # The loop's connection was replaced and reads run on the loop again.
    before = calls.loop_reads
    assert client.get("/api/v1/students/me", headers=card).status_code == 200
    assert calls.loop_reads == before + 1


def _ready_to_send_on_the_loop(
    web: Web, broker: MosquittoBroker
) -> tuple[TestClient, dict[str, str], int, FrequentCalls]:
    """PostgreSQL only (SQLite sends every request from a worker thread): the seeded world,
    the card's headers, a faculty member whose desk is online, and the server's calls."""
    if web.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: a request is always sent from a worker thread")
    client = web.client()
    seeded = _seed(web, client)
    kiosk, fid = seeded["kiosk"], seeded["fids"][0]
    _desk_online(client, broker, kiosk, fid)
    calls = web.server.frequent
    assert calls is not None
    return client, {**kiosk, "X-Card-UID": CARD}, fid, calls


def test_a_request_held_up_by_a_lock_leaves_the_event_loop_and_is_written_once(
    web: Web, broker: MosquittoBroker
) -> None:
    client, card, fid, calls = _ready_to_send_on_the_loop(web, broker)
    body = {"faculty_id": fid, "message": "Help with recursion please."}
    before = (calls.loop_sends, calls.thread_sends)
    assert _send(client, card, body).status_code == 201
    assert (calls.loop_sends, calls.thread_sends) == (before[0] + 1, before[1])
    # Another session holds the outbox locked against writes for a second: the request's
    # read passes, its INSERT (the request and its outbox rows, one statement) waits, is
    # cancelled after LOOP_READ_WAIT_MS with nothing written, and is sent again from a
    # worker thread, which waits for the lock.
    written = _requests(web)
    locker = web.engine.connect()
    locker.exec_driver_sql("LOCK TABLE mqtt_outbox IN EXCLUSIVE MODE")
    release = threading.Timer(1.0, locker.rollback)
    release.start()
    try:
        before = (calls.loop_sends, calls.thread_sends)
        started = time.monotonic()
        held_up = _send(client, card, {**body, "message": "Sent while the outbox was locked."})
        waited = time.monotonic() - started
    finally:
        release.join()
        locker.close()
    assert held_up.status_code == 201, held_up.text
    assert (calls.loop_sends, calls.thread_sends) == (before[0], before[1] + 1)
    assert waited >= 0.9, "the request did not wait for the lock at all"
    assert _requests(web) == written + 1, "the held-up request was not written exactly once"
    with Session(web.engine) as s:
        messages = s.scalars(select(Consultation.message).order_by(Consultation.id)).all()
    assert messages.count("Sent while the outbox was locked.") == 1
    # The loop's connection is still good: the next request is sent on the loop again.
    before = (calls.loop_sends, calls.thread_sends)
    assert _send(client, card, {**body, "message": "And one more."}).status_code == 201
    assert (calls.loop_sends, calls.thread_sends) == (before[0] + 1, before[1])


def test_a_request_whose_loop_connection_cannot_be_opened_is_sent_from_a_thread(
    web: Web, broker: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, card, fid, calls = _ready_to_send_on_the_loop(web, broker)

    def cannot_connect() -> Any:
        raise OperationalError("connect", {}, Exception("the database is restarting"))

    calls._drop_loop_connection()
    monkeypatch.setattr(calls, "_open_loop_connection", cannot_connect)
    written = _requests(web)
    before = (calls.loop_sends, calls.thread_sends)
    made = _send(client, card, {"faculty_id": fid, "message": "Help with recursion please."})
    assert made.status_code == 201, made.text
    assert (calls.loop_sends, calls.thread_sends) == (before[0], before[1] + 1)
    assert _requests(web) == written + 1
