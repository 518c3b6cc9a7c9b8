"""The web dashboard's security promises, without a browser: headers, CSRF, roles, lockout,
ownership and the desk transitions, on SQLite and PostgreSQL with a real Mosquitto."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from central_system import topics
from central_system.controllers.admin_controller import MAX_FAILURES
from central_system.models import Consultation, Faculty, utcnow
from tests.mqtt_probe import Probe
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


@pytest.fixture
def web(db_url: str, make_settings) -> Iterator[Web]:
    with running_web(make_settings(database_url=db_url)) as w:
        w.ids = seed(w.engine)  # type: ignore[attr-defined]
        yield w


def _pending(
    web: Web, faculty_id: int, student_id: int, message: str = "Help with loops please"
) -> int:
    with Session(web.engine) as s:
        c = Consultation(
            student_id=student_id,
            faculty_id=faculty_id,
            message=message,
            course_code="CS 101",
            status="pending",
            created_at=utcnow(),
        )
        s.add(c)
        s.commit()
        return c.id


def test_pages_carry_a_csp_without_unsafe_inline_and_strict_cookies(web: Web) -> None:
    client = web.client()
    page = client.get("/web/login")
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert (
        "<script>" not in page.text
        and " style=" not in page.text
        and " on" not in page.text.split("<body")[1].split("=")[0]
    )
    answer = sign_in(client, ADMIN_USER, ADMIN_PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/web/admin"
    cookie = answer.headers["set-cookie"].lower()
    assert "ce_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # plain HTTP here; HTTPS adds Secure
    assert client.get("/web/admin").status_code == 200
    https = web.client(base_url="https://testserver")
    secure_cookie = sign_in(https, ADMIN_USER, ADMIN_PASSWORD).headers["set-cookie"].lower()
    assert "secure" in secure_cookie


def test_a_form_without_its_csrf_token_is_refused_and_audited(web: Web) -> None:
    client = web.client()
    client.get("/web/login")
    r = client.post("/web/login", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert r.status_code == 403 and "ce_session" not in r.headers.get("set-cookie", "")
    assert sign_in(client, ADMIN_USER, ADMIN_PASSWORD).status_code == 303
    # Signed in: a forged form (no token, or another session's token) does nothing.
    fid = web.ids["ada"]  # type: ignore[attr-defined]
    other = web.client()
    sign_in(other, ADMIN_USER, ADMIN_PASSWORD)
    foreign = csrf_of(other.get("/web/admin").text)
    assert client.post("/web/logout", data={}).status_code == 403
    assert client.post("/web/logout", data={"csrf": foreign}).status_code == 403
    assert client.get("/web/admin").status_code == 200  # still signed in
    refused = web.audit("web.csrf_refused")
    assert len(refused) == 3 and refused[-1].actor == f"admin:{ADMIN_USER}"
    assert fid


def test_roles_are_enforced_on_the_server(web: Web) -> None:
    ada = web.ids["ada"]  # type: ignore[attr-defined]
    faculty_account(web.engine, ada, "ada.cruz")
    anonymous = web.client()
    r = anonymous.get("/web/admin/faculty")
    assert r.status_code == 303 and r.headers["location"].startswith(
        "/web/login?next=/web/admin/faculty"
    )
    assert anonymous.get("/web/faculty").status_code == 303
    fac = web.client()
    r = sign_in(fac, "ada.cruz", FACULTY_PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/web/faculty"
    assert fac.get("/web/faculty").status_code == 200
    for path in (
        "/web/admin",
        "/web/admin/faculty",
        "/web/admin/students",
        "/web/admin/desks",
        "/web/admin/consultations",
        "/web/admin/kiosks",
        "/web/admin/audit",
    ):
        assert fac.get(path).status_code == 403, path
    assert web.audit("web.forbidden")[0].actor == "faculty:ada.cruz"
    # A faculty account is never an administrator: not on the API, not at the kiosk.
    api = fac.post(
        "/api/v1/admin/session", json={"username": "ada.cruz", "password": FACULTY_PASSWORD}
    )
    assert api.status_code in (401, 403)
    admin = web.client()
    sign_in(admin, ADMIN_USER, ADMIN_PASSWORD)
    assert admin.get("/web/faculty").status_code == 403  # an administrator has no queue


def test_lockout_after_repeated_wrong_passwords_even_for_the_right_one(web: Web) -> None:
    client = web.client()
    for _ in range(MAX_FAILURES):
        assert sign_in(client, ADMIN_USER, "Wrong-Password-123").status_code == 401
    r = sign_in(client, ADMIN_USER, ADMIN_PASSWORD)
    assert r.status_code == 401 and "locked" in r.text
    assert "ce_session" not in r.headers.get("set-cookie", "")


def test_a_faculty_member_answers_only_their_own_requests_and_the_desk_is_told(
    web: Web, broker
) -> None:
    ids = web.ids  # type: ignore[attr-defined]
    faculty_account(web.engine, ids["ada"], "ada.cruz")
    faculty_account(web.engine, ids["ben"], "ben.reyes")
    mine = _pending(web, ids["ada"], ids["maria"])
    theirs = _pending(web, ids["ben"], ids["maria"])
    ada = web.client()
    sign_in(ada, "ada.cruz", FACULTY_PASSWORD)
    queue = ada.get("/web/faculty/queue").text
    assert "Maria Santos" in queue and "CS 101" in queue and f"request-{mine}" in queue
    assert f"request-{theirs}" not in queue
    # Another's consultation, by URL: 404 and audited; answering it changes nothing.
    assert ada.get(f"/web/faculty/consultations/{theirs}").status_code == 404
    assert web.audit("consultation.denied")[0].actor == "faculty:ada.cruz"
    token = csrf_of(ada.get("/web/faculty").text)
    r = ada.post(f"/web/faculty/consultations/{theirs}/accept", data={"csrf": token})
    assert r.status_code == 404
    desk = Probe(broker.port, [topics.faculty_cancellations_topic(ids["ada"])])
    try:
        r = ada.post(f"/web/faculty/consultations/{mine}/accept", data={"csrf": token})
        assert r.status_code == 303
        assert desk.wait_for(lambda msgs: len(msgs) >= 1, 15), desk.payloads()
        payload = json.loads(desk.payloads()[0])
        # The deployed firmware removes the request named after consultation_id (contract 3.1).
        assert payload["consultation_id"] == mine and payload["type"] == "consultation_answered"
        assert payload["status"] == "accepted"
    finally:
        desk.close()
    # Accepting twice is refused; completing is the next step.
    assert (
        ada.post(f"/web/faculty/consultations/{mine}/accept", data={"csrf": token}).status_code
        == 409
    )
    assert (
        ada.post(f"/web/faculty/consultations/{mine}/complete", data={"csrf": token}).status_code
        == 303
    )
    with Session(web.engine) as s:
        assert s.get(Consultation, mine).status == "completed"
        assert s.get(Consultation, mine).answer_s is not None
        assert s.get(Consultation, theirs).status == "pending"
    answers = [a for a in web.audit("consultation.web_answer") if a.success]
    assert [a.details["to"] for a in answers] == ["accepted", "completed"]
    assert {a.actor for a in answers} == {"faculty:ada.cruz"}
    history = ada.get("/web/faculty/history").text
    assert "completed" in history


def test_manual_availability_shows_on_the_kiosk_only_while_the_desk_is_offline(web: Web) -> None:
    ids = web.ids  # type: ignore[attr-defined]
    faculty_account(web.engine, ids["ada"], "ada.cruz")
    ada = web.client()
    sign_in(ada, "ada.cruz", FACULTY_PASSWORD)
    token = csrf_of(ada.get("/web/faculty").text)
    assert (
        ada.post(
            "/web/faculty/availability", data={"csrf": token, "status": "available"}
        ).status_code
        == 303
    )
    backend = web.server.backend
    view = backend.get_faculty(ids["ada"])
    assert view.availability == "available (set by hand)" and view.can_request
    listed = backend._controller("faculty").list_faculty(available_only=True)
    assert [f.id for f in listed] == [ids["ada"]]
    # A student can now send a request (answered in the browser).
    created = backend.send_request(ids["maria"], ids["ada"], "Question about my project", "CS101")
    assert created.status == "pending"
    # An online desk's own presence wins over the hand-set value.
    with Session(web.engine) as s:
        f = s.get(Faculty, ids["ada"])
        f.desk_online, f.status = True, "away"
        s.commit()
    view = backend.get_faculty(ids["ada"])
    assert view.availability == "away" and not view.can_request
    assert backend._controller("faculty").list_faculty(available_only=True) == []
    assert web.audit("faculty.manual_status")[0].actor == "faculty:ada.cruz"
    assert (
        ada.post("/web/faculty/availability", data={"csrf": token, "status": "busy"}).status_code
        == 400
    )


def test_invitations_are_one_time_and_expire(web: Web) -> None:
    from datetime import timedelta

    from central_system.controllers.web_accounts import WebAccounts

    ids = web.ids  # type: ignore[attr-defined]
    accounts = WebAccounts(web.engine)
    invite = accounts.invite(ids["ada"], "ada.cruz", actor="admin:test")
    client = web.client()
    page = client.get(f"/web/invite?code={invite.code}")
    assert "ada.cruz" in page.text
    data = {
        "csrf": csrf_of(page.text),
        "code": invite.code,
        "password": FACULTY_PASSWORD,
        "confirm": FACULTY_PASSWORD,
    }
    assert client.post("/web/invite", data=data).status_code == 200
    again = client.post("/web/invite", data=data)
    assert again.status_code == 400 and "invalid, used or expired" in again.text
    old = accounts.invite(ids["ben"], "ben.reyes", actor="admin:test", ttl=timedelta(seconds=-1))
    expired = client.post("/web/invite", data={**data, "code": old.code})
    assert expired.status_code == 400
    assert sign_in(web.client(), "ben.reyes", FACULTY_PASSWORD).status_code == 401
    assert sign_in(web.client(), "ada.cruz", FACULTY_PASSWORD).status_code == 303
    with Session(web.engine) as s:
        assert s.scalar(select(Faculty.manual_status).where(Faculty.id == ids["ada"])) is None


def test_admin_pages_add_invite_register_enrol_and_show_secrets_once(web: Web) -> None:
    admin = web.client()
    sign_in(admin, ADMIN_USER, ADMIN_PASSWORD)
    token = csrf_of(admin.get("/web/admin/faculty").text)
    r = admin.post(
        "/web/admin/faculty",
        data={"csrf": token, "name": "Dr. Cy Lim", "department": "EE", "email": "cy@example.edu"},
    )
    assert r.status_code == 200 and "Added Dr. Cy Lim" in r.text
    with Session(web.engine) as s:
        cy = s.scalar(select(Faculty).where(Faculty.name == "Dr. Cy Lim"))
        assert cy is not None
    r = admin.post(f"/web/admin/faculty/{cy.id}/invite", data={"csrf": token, "username": "cy.lim"})
    assert r.status_code == 200 and "/web/invite?code=cei_" in r.text
    assert "cei_" not in admin.get("/web/admin/faculty").text  # shown once
    assert web.audit("faculty.invite")[0].actor == f"admin:{ADMIN_USER}"
    r = admin.post(
        "/web/admin/students",
        data={
            "csrf": token,
            "name": "Jo Tan",
            "student_id": "2021-9",
            "department": "CS",
            "rfid_uid": "04:AA:BB:CC",
        },
    )
    assert r.status_code == 200 and "Registered Jo Tan" in r.text and "04AABBCC" in r.text
    bad = admin.post(
        "/web/admin/students",
        data={"csrf": token, "name": "X Y", "student_id": "2", "rfid_uid": "not hex"},
    )
    assert bad.status_code == 400
    r = admin.post("/web/admin/kiosks", data={"csrf": token, "name": "lobby-1"})
    assert r.status_code == 200 and "cek_" in r.text
    assert "cek_" not in admin.get("/web/admin/kiosks").text
    r = admin.post("/web/admin/kiosks/revoke", data={"csrf": token, "name": "lobby-1"})
    assert "revoked" in r.text
    r = admin.post(f"/web/admin/desks/{cy.id}/provision", data={"csrf": token})
    assert r.status_code == 200 and "shown once" in r.text
    assert web.audit("desk.provision")[0].actor == f"admin:{ADMIN_USER}"
    audit = admin.get("/web/admin/audit?q=kiosk.enroll").text
    assert "lobby-1" in audit and "faculty.invite" not in audit
    listing = admin.get("/web/admin/consultations?status=pending").text
    assert "No consultations match" in listing
    overview = admin.get("/web/admin").text
    assert "connected" in overview and "Active server" in overview


def test_a_faculty_member_changes_their_password_audited_as_themselves(web: Web) -> None:
    ids = web.ids  # type: ignore[attr-defined]
    faculty_account(web.engine, ids["ada"], "ada.cruz")
    ada = web.client()
    sign_in(ada, "ada.cruz", FACULTY_PASSWORD)
    token = csrf_of(ada.get("/web/password").text)
    new = "Another-Lecture-Lamp-77"
    short = ada.post(
        "/web/password",
        data={
            "csrf": token,
            "current_password": FACULTY_PASSWORD,
            "new_password": "short",
            "confirm": "short",
        },
    )
    assert short.status_code == 400 and "at least 12" in short.text
    ok = ada.post(
        "/web/password",
        data={
            "csrf": token,
            "current_password": FACULTY_PASSWORD,
            "new_password": new,
            "confirm": new,
        },
    )
    assert ok.status_code == 200 and "Password changed" in ok.text
    changes = [a for a in web.audit("admin.change_password") if a.success]
    assert [a.actor for a in changes] == ["faculty:ada.cruz"]
    assert sign_in(web.client(), "ada.cruz", new).status_code == 303
    assert sign_in(web.client(), "ada.cruz", FACULTY_PASSWORD).status_code == 401


def test_insight_draws_requests_per_day_and_exports_csv_for_administrators_only(web: Web) -> None:
    ids = web.ids  # type: ignore[attr-defined]
    for _ in range(3):
        _pending(web, ids["ada"], ids["maria"])
    admin = web.client()
    sign_in(admin, ADMIN_USER, ADMIN_PASSWORD)
    page = admin.get("/web/admin/insight?days=7")
    assert page.status_code == 200
    assert 'id="requests-chart"' in page.text and "<rect" in page.text
    assert ": 3</title>" in page.text  # today's bar holds the three requests
    assert "style=" not in page.text and "<script" not in page.text  # the CSP allows neither
    csv = admin.get("/web/admin/insight/requests_per_day.csv?days=7")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("day,requests")
    assert web.audit("analytics.export")[0].actor == f"admin:{ADMIN_USER}"
    assert admin.get("/web/admin/insight/nope.csv").status_code == 404
    faculty_account(web.engine, ids["ada"], "ada.cruz")
    ada = web.client()
    sign_in(ada, "ada.cruz", FACULTY_PASSWORD)
    assert ada.get("/web/admin/insight").status_code == 403
    assert ada.get("/web/admin/insight/requests_per_day.csv").status_code == 403


def test_unknown_pages_and_bad_values_get_html_pages_and_the_api_keeps_json(web: Web) -> None:
    client = web.client()
    missing = client.get("/web/nowhere")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "unsafe-inline" not in missing.headers["content-security-policy"]
    faculty_account(web.engine, web.ids["ada"], "ada.cruz")  # type: ignore[attr-defined]
    sign_in(client, "ada.cruz", FACULTY_PASSWORD)
    bad = client.get("/web/faculty/history?page=-1")
    assert bad.status_code == 400 and "bad value" in bad.text
    api = client.get("/api/v1/nowhere")
    assert api.status_code == 404 and api.json()["error"] == "not_found"
    wrong_method = client.delete("/api/v1/faculty")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["allow"]
    api_bad = client.get("/api/v1/consultations?limit=0")
    assert api_bad.status_code in (401, 422) and "error" in api_bad.json()
