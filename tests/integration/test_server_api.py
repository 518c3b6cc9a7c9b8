"""The server's API against a real server process, Mosquitto, SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central_system import topics
from central_system.api.client import ApiClient
from central_system.api.errors import ForbiddenError, NotAuthenticatedError, NotFoundError
from central_system.api.schemas import Event
from central_system.models import AuditLog, Consultation, KioskToken
from central_system.server.frequent import UNKNOWN_CARD
from tests.brokers import MosquittoBroker
from tests.mqtt_probe import Probe, publish_raw
from tests.server_helpers import (
    ROOT,
    ServerProcess,
    admin_client,
    bring_online,
    create_admin,
    db_engine,
    enroll,
    response_json,
    revoke,
    running_server,
)

CARD_A = "04A1B2C3"
CARD_B = "04A1B2C4"
MESSAGE = "Please help me with recursion in the exercise."


def _audit(engine, action: str) -> list[AuditLog]:
    with Session(engine) as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


def _consultation_count(engine) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).select_from(Consultation)) or 0)


def _setup(server: ServerProcess, engine, broker: MosquittoBroker) -> dict:
    create_admin(engine)
    admin = admin_client(server.url)
    fac = admin.save_faculty(None, "Dr. Ada Cruz", "CS", "ada@example.edu")
    s1 = admin.register_student("Maria Santos", "2021-00001", "CS", CARD_A)
    s2 = admin.register_student("Juan Dela Cruz", "2021-00002", "CS", CARD_B)
    bring_online(admin, broker.port, fac.id)
    return {"admin": admin, "faculty": fac, "students": (s1, s2)}


def test_health_and_openapi_need_no_token_and_the_api_does(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    with running_server(db_url, broker.port, tmp_path) as server:
        health = httpx.get(server.url + "/healthz").json()
        assert health["role"] == "active"
        assert health["mqtt"] == "connected"
        assert health["database"] == "ok"
        spec = httpx.get(server.url + "/openapi.json").json()
        assert "/api/v1/consultations" in spec["paths"]
        assert "/api/v1/events" in spec["paths"]
        r = httpx.get(server.url + "/api/v1/faculty")
        assert r.status_code == 401
        assert r.json()["error"] == "not_authenticated"
        r = httpx.get(server.url + "/api/v1/faculty", headers={"Authorization": "Bearer cek_nope"})
        assert r.status_code == 401


def test_a_request_from_kiosk_a_reaches_the_desk_and_kiosk_b_sees_it_accepted_live(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        seeded = _setup(server, engine, broker)
        fid = seeded["faculty"].id
        kiosk_a = ApiClient(server.url, enroll(engine, "kiosk-a"))
        kiosk_b = ApiClient(server.url, enroll(engine, "kiosk-b"))
        assert kiosk_a.student(CARD_A).name == "Maria Santos"
        events: list[Event] = []

        def listen() -> None:
            with contextlib.suppress(Exception):  # the client is closed at the end of the test
                for event in kiosk_b.events():
                    events.append(event)

        threading.Thread(target=listen, daemon=True).start()
        deadline = time.monotonic() + 10
        while not any(e.kind == "mqtt_state" for e in events) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert events and events[0].kind == "mqtt_state"
        desk = Probe(broker.port, [topics.faculty_requests_topic(fid)])
        try:
            created = kiosk_a.create_consultation(CARD_A, fid, MESSAGE, "CS101")
            assert created.status == "pending"
            assert desk.wait_for(
                lambda msgs: (
                    any(json.loads(m.payload).get("id") == created.id for m in msgs)
                    or any(str(created.id) in m.payload.decode() for m in msgs)
                ),
                15,
            ), desk.payloads()
        finally:
            desk.close()
        # Kiosk B, where the same student tapped in, sees the request and then its acceptance.
        assert [c.id for c in kiosk_b.my_consultations(CARD_A)] == [created.id]
        publish_raw(
            broker.port, topics.faculty_responses_topic(fid), response_json(fid, created.id), qos=1
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
            e.kind == "consultation" and e.id == created.id and e.status == "accepted"
            for e in events
        ):
            time.sleep(0.02)
        assert any(
            e.kind == "consultation" and e.id == created.id and e.status == "accepted"
            for e in events
        ), events
        assert kiosk_b.consultation(CARD_A, created.id).status == "accepted"
        kiosk_a.close()
        kiosk_b.close()


def test_revoked_tokens_kiosk_tokens_on_admin_calls_and_other_students_data_are_refused_and_audited(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        seeded = _setup(server, engine, broker)
        fid = seeded["faculty"].id
        kiosk = ApiClient(server.url, enroll(engine, "lobby"))
        mine = kiosk.create_consultation(CARD_B, fid, MESSAGE)
        # Student A's card cannot read or cancel student B's consultation.
        with pytest.raises(NotFoundError):
            kiosk.consultation(CARD_A, mine.id)
        with pytest.raises(NotFoundError):
            kiosk.cancel(CARD_A, mine.id)
        assert kiosk.consultation(CARD_B, mine.id).status == "pending"
        assert [c.id for c in kiosk.my_consultations(CARD_A)] == []
        denied = _audit(engine, "consultation.denied")
        assert denied and denied[0].actor == "kiosk:lobby" and not denied[0].success
        # A kiosk token on administrator endpoints.
        for method, path in (
            ("GET", "/api/v1/students"),
            ("GET", "/api/v1/audit"),
            ("POST", "/api/v1/system/backup"),
        ):
            r = httpx.request(
                method, server.url + path, headers={"Authorization": f"Bearer {kiosk.token}"}
            )
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"] == "forbidden"
        forbidden = _audit(engine, "api.forbidden")
        assert forbidden and forbidden[0].actor == "kiosk:lobby"
        with pytest.raises(ForbiddenError):
            ApiClient(server.url, kiosk.token).request("GET", "/api/v1/desks", admin=False)
        # An administrator session cannot act for a student.
        admin = seeded["admin"]
        r = httpx.get(
            server.url + "/api/v1/students/me",
            headers={"Authorization": f"Bearer {admin.admin_token}", "X-Card-UID": CARD_A},
        )
        assert r.status_code == 403
        # Revoked: the very next call is refused, and the attempt audited.
        revoke(engine, "lobby")
        with pytest.raises(NotAuthenticatedError):
            kiosk.faculty()
        refused = _audit(engine, "api.refused")
        assert refused and refused[0].actor == "kiosk:lobby"
        assert _audit(engine, "kiosk.revoke")[0].success
        # Signed out: the administrator's session token stops working.
        token = admin.admin_token
        admin.sign_out()
        r = httpx.get(server.url + "/api/v1/students", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401


def test_bad_input_gets_a_4xx_json_error_and_changes_nothing(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        seeded = _setup(server, engine, broker)
        fid = seeded["faculty"].id
        token = enroll(engine, "lobby")
        auth = {"Authorization": f"Bearer {token}", "X-Card-UID": CARD_A}
        url = server.url + "/api/v1/consultations"
        before = _consultation_count(engine)
        cases = [
            httpx.post(url, headers={**auth, "Content-Type": "application/json"}, content=b"{bad"),
            httpx.post(url, headers=auth, json={"faculty_id": "x", "message": MESSAGE}),
            httpx.post(url, headers=auth, json={"faculty_id": 2**40, "message": MESSAGE}),
            httpx.post(url, headers=auth, json={"faculty_id": fid, "message": "a\x00" * 10}),
            httpx.post(url, headers=auth, json={"faculty_id": fid, "message": MESSAGE, "x": 1}),
            httpx.post(url, headers=auth, json=[1, 2]),
            httpx.post(url, headers=auth, json={"faculty_id": fid, "message": "x" * 200_000}),
            httpx.post(url, headers=auth, json={"faculty_id": 999_999, "message": MESSAGE}),
            httpx.post(url, headers=auth, json={"faculty_id": fid, "message": "short"}),
            httpx.post(
                url,
                headers={**auth, "X-Card-UID": "not-hex!"},
                json={"faculty_id": fid, "message": MESSAGE},
            ),
            httpx.get(server.url + "/api/v1/consultations/99999999999", headers=auth),
            httpx.get(server.url + "/api/v1/consultations/424242", headers=auth),
            httpx.get(server.url + "/api/v1/nothing-here", headers=auth),
        ]
        for r in cases:
            assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
            body = r.json()
            assert body["error"] and body["detail"], body
        statuses = [r.status_code for r in cases]
        assert statuses[6] == 413
        assert statuses[7] in (400, 404)
        assert _consultation_count(engine) == before


def test_a_second_server_on_the_same_sqlite_file_refuses_to_start(
    sqlite_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    with running_server(sqlite_url, broker.port, tmp_path) as first:
        second = ServerProcess(sqlite_url, broker.port, tmp_path, client_id="second", name="second")
        second.start()
        assert second.proc is not None
        assert second.proc.wait(30) == 2
        assert "already runs on this SQLite database" in second.log()
        assert first.health()["role"] == "active"


def test_kiosk_enroll_prints_the_token_once_and_revoke_works_from_the_cli(
    sqlite_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    env = {"PYTHONPATH": str(ROOT), "CONSULTEASE_DATABASE_URL": sqlite_url, "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "central_system.cli", "kiosk"]
    out = subprocess.run(
        [*cli, "enroll", "hall-2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("cek_") and len(token) > 40
    with db_engine(sqlite_url) as engine, Session(engine) as s:
        stored = s.execute(select(func.count()).select_from(AuditLog)).scalar()
        assert stored
        from central_system.models import KioskToken

        row = s.scalar(select(KioskToken).where(KioskToken.name == "hall-2"))
        assert row is not None and token not in row.token_hash and len(row.token_hash) == 64
    again = subprocess.run(
        [*cli, "enroll", "hall-2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and "already enrolled" in again.stderr
    with running_server(sqlite_url, broker.port, tmp_path) as server:
        client = ApiClient(server.url, token)
        assert client.faculty() == []
        out = subprocess.run(
            [*cli, "revoke", "hall-2"], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        with pytest.raises(NotAuthenticatedError):
            client.faculty()
    with db_engine(sqlite_url) as engine:
        assert [a.success for a in _audit(engine, "kiosk.enroll")] == [True, False]
        assert [a.success for a in _audit(engine, "kiosk.revoke")] == [True]


def test_an_administrator_with_a_temporary_password_may_only_change_it(
    sqlite_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    from central_system.controllers.admin_controller import AdminController
    from tests.server_helpers import ADMIN_PASSWORD, ADMIN_USER

    with (
        running_server(sqlite_url, broker.port, tmp_path) as server,
        db_engine(sqlite_url) as engine,
    ):
        create_admin(engine)
        temporary = AdminController(db=engine).reset_password(ADMIN_USER, actor="test")
        client = ApiClient(server.url, None)
        session = client.sign_in(ADMIN_USER, temporary)
        assert session.must_change_password
        with pytest.raises(ForbiddenError, match="temporary"):
            client.students()
        assert client.request("GET", "/api/v1/admin/session", admin=True)["must_change_password"]
        client.change_password(temporary, ADMIN_PASSWORD)
        assert client.students() == []  # the same session, now with a password of their own


def test_the_kiosks_frequent_calls_check_token_and_card_in_one_read_with_the_same_answers(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    # The faculty list, waiting counts, the card holder, their consultations and a new request
    # run their checks and reads in one worker-thread hop (server/frequent.py, issue 9):
    # the same answers and refusals as the dependencies they replaced.
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        seeded = _setup(server, engine, broker)
        fid = seeded["faculty"].id
        maria = seeded["students"][0]
        kiosk = ApiClient(server.url, enroll(engine, "floor-2"))
        assert kiosk.student("04:a1:b2:c3").id == maria.id  # separators and case
        with pytest.raises(NotFoundError):
            kiosk.student("DEADBEEF")
        sent = kiosk.create_consultation(CARD_A, fid, MESSAGE)
        assert (sent.student_name, sent.faculty_name) == ("Maria Santos", "Dr. Ada Cruz")
        assert [c.id for c in kiosk.my_consultations(CARD_A)] == [sent.id]
        assert kiosk.my_consultations(CARD_B) == []
        assert kiosk.waiting_counts() == {fid: 1}
        [faculty] = kiosk.faculty()
        assert faculty.id == fid and faculty.can_request
        # An administrator's session may read the faculty list and the counts, not act for a card.
        admin_h = {"Authorization": f"Bearer {seeded['admin'].admin_token}"}
        assert httpx.get(server.url + "/api/v1/faculty", headers=admin_h).json()[0]["id"] == fid
        assert httpx.get(server.url + "/api/v1/faculty/waiting", headers=admin_h).json() == {
            str(fid): 1
        }
        r = httpx.post(
            server.url + "/api/v1/consultations",
            headers={**admin_h, "X-Card-UID": CARD_A},
            json={"faculty_id": fid, "message": MESSAGE},
        )
        assert r.status_code == 403, r.text
        # No token, a made-up one, then a revoked one on the very next call: 401, nothing written.
        assert httpx.get(server.url + "/api/v1/faculty").status_code == 401
        bogus = {"Authorization": "Bearer cek_" + "x" * 43, "X-Card-UID": CARD_A}
        assert httpx.get(server.url + "/api/v1/students/me", headers=bogus).status_code == 401
        before = _consultation_count(engine)
        revoke(engine, "floor-2")
        for call in (
            lambda: kiosk.student(CARD_A),
            lambda: kiosk.my_consultations(CARD_A),
            lambda: kiosk.create_consultation(CARD_A, fid, MESSAGE),
            kiosk.waiting_counts,
        ):
            with pytest.raises(NotAuthenticatedError):
                call()
        assert _consultation_count(engine) == before
        assert any(a.actor == "kiosk:floor-2" for a in _audit(engine, "api.refused"))


def test_a_request_is_checked_and_created_in_one_transaction_with_the_same_answers(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    # POST /consultations checks the token and the card in the request's own transaction and
    # answers from what it inserted (server/frequent.py, controllers, issue 9): the answer must
    # be the stored row's, the checks must still come first, and a refusal must still commit
    # the kiosk token's last use.
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        seeded = _setup(server, engine, broker)
        fid = seeded["faculty"].id
        token = enroll(engine, "atrium")
        url = server.url + "/api/v1/consultations"
        kiosk_h = {"Authorization": f"Bearer {token}"}
        # The kiosk's first call ever is a refused request: 400, and its last use is recorded.
        short = httpx.post(
            url,
            headers={**kiosk_h, "X-Card-UID": CARD_A},
            json={"faculty_id": fid, "message": "short"},
        )
        assert short.status_code == 400, short.text
        with Session(engine) as s:
            [used] = s.scalars(select(KioskToken.last_used_at).where(KioskToken.name == "atrium"))
        assert used is not None
        # The token, then the card, are checked before the request itself.
        bogus_h = {"Authorization": "Bearer cek_" + "y" * 43, "X-Card-UID": "DEADBEEF"}
        bad = {"faculty_id": 999_999, "message": "short"}
        assert httpx.post(url, headers=bogus_h, json=bad).status_code == 401
        unknown = httpx.post(url, headers={**kiosk_h, "X-Card-UID": "DEADBEEF"}, json=bad)
        assert (unknown.status_code, unknown.json()["detail"]) == (404, UNKNOWN_CARD)
        assert _consultation_count(engine) == 0
        # The answer built from the inserted values is the one a read of the stored row gives.
        body = {
            "faculty_id": fid,
            "message": "  Please\thelp with " + MESSAGE,
            "course_code": " cs 101 ",
        }
        created = httpx.post(url, headers={**kiosk_h, "X-Card-UID": CARD_A}, json=body)
        assert created.status_code == 201, created.text
        answer = created.json()
        stored = httpx.get(f"{url}/{answer['id']}", headers={**kiosk_h, "X-Card-UID": CARD_A})
        assert answer == stored.json()
        assert (answer["course_code"], answer["status"], answer["note"]) == (
            "CS 101",
            "pending",
            None,
        )
        assert (answer["student_name"], answer["faculty_name"]) == ("Maria Santos", "Dr. Ada Cruz")
        assert answer["message"] == "Please help with " + MESSAGE  # trimmed, tab to space
