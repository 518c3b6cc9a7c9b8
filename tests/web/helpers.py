"""The web dashboard in-process: a real CentralServer (SQLite or PostgreSQL, real Mosquitto)
behind Starlette's TestClient, and the steps every web test takes (sign in, invite, forms)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from central_system.config import Settings
from central_system.controllers.admin_controller import AdminController
from central_system.controllers.web_accounts import WebAccounts
from central_system.models import AuditLog, Faculty, Student
from central_system.server.app import create_app
from central_system.server.central import CentralServer

ADMIN_USER = "root-admin"
ADMIN_PASSWORD = "Correct-Horse-Battery-9"
FACULTY_PASSWORD = "Lecture-Hall-Lamp-42"
CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass
class Web:
    """A running server and what the tests need of it."""

    server: CentralServer
    app: Any

    @property
    def engine(self) -> Engine:
        return self.server.system.engine  # type: ignore[no-any-return]

    def client(self, **kw: Any) -> TestClient:
        return TestClient(self.app, follow_redirects=False, **kw)

    def audit(self, action: str) -> list[AuditLog]:
        with Session(self.engine) as s:
            return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


@contextlib.contextmanager
def running_web(settings: Settings) -> Iterator[Web]:
    """A CentralServer made active on ``settings`` with the web mounted; stopped afterwards."""
    server = CentralServer(settings)
    app = create_app(server)
    with TestClient(app):  # runs the lifespan (binds the event hub to the loop)
        server.start()
        deadline = time.monotonic() + 60
        while server.role != "active" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.role == "active", server.start_error
        try:
            yield Web(server, app)
        finally:
            server.stop()


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = CSRF_RE.search(html)
    assert match, html[:500]
    return match.group(1)


def sign_in(client: TestClient, username: str, password: str) -> Any:
    """Open the login page, then post the form with its token; the answer."""
    page = client.get("/web/login")
    assert page.status_code == 200
    return client.post(
        "/web/login",
        data={"csrf": csrf_of(page.text), "username": username, "password": password},
    )


def seed(engine: Engine) -> dict[str, int]:
    """The first administrator, two faculty members and a student."""
    AdminController(db=engine).create_first_admin(ADMIN_USER, ADMIN_PASSWORD)
    with Session(engine) as s:
        ada = Faculty(name="Dr. Ada Cruz", department="CS", email="ada@example.edu")
        ben = Faculty(name="Dr. Ben Reyes", department="Math", email="ben@example.edu")
        maria = Student(
            name="Maria Santos", student_id="2021-00001", department="CS", rfid_uid="04A1B2C3"
        )
        s.add_all([ada, ben, maria])
        s.commit()
        return {"ada": ada.id, "ben": ben.id, "maria": maria.id}


def faculty_account(engine: Engine, faculty_id: int, username: str) -> None:
    """Invite and accept at once (the controller's path; the browser test does it by hand)."""
    accounts = WebAccounts(engine)
    invite = accounts.invite(faculty_id, username, actor="admin:test")
    accounts.accept(invite.code, FACULTY_PASSWORD)
