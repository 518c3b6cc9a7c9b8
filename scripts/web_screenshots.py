"""Every page of the web dashboard at 1280×800 (laptop) and 390×844 (phone) into
docs/screenshots/web/, from a real server, Mosquitto and Debian's headless Chromium.

.venv/bin/python scripts/web_screenshots.py [--out docs/screenshots/web]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selenium.webdriver.common.by import By  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from central_system.api.client import ApiClient  # noqa: E402
from central_system.controllers.admin_controller import AdminController  # noqa: E402
from central_system.controllers.web_accounts import WebAccounts  # noqa: E402
from central_system.models import Consultation, utcnow  # noqa: E402
from faculty_desk_unit.desk import DeskUnit  # noqa: E402
from tests.brokers import MosquittoBroker  # noqa: E402
from tests.server_helpers import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    admin_client,
    create_admin,
    db_engine,
    enroll,
    running_server,
)
from tests.web import browser  # noqa: E402

SIZES = {"laptop": (1280, 800), "phone": (390, 844)}
# A fresh random password each run (the policy's own generator): nothing to leak or reuse.
FACULTY_PASSWORD = AdminController.generate_password()
FACULTY = [
    ("Dr. Ada Cruz", "Computer Science", "ada@example.edu"),
    ("Dr. Ben Reyes", "Mathematics", "ben@example.edu"),
    ("Prof. Carla Lim", "Electrical Engineering", "carla@example.edu"),
    ("Dr. Dan Uy", "Physics", "dan@example.edu"),
]
STUDENTS = [
    ("Maria Santos", "2021-00001", "04A1B2C3"),
    ("Juan Dela Cruz", "2021-00002", "04A1B2C4"),
    ("Liza Mendoza", "2021-00003", "04A1B2C5"),
    ("Paolo Garcia", "2021-00004", "04A1B2C6"),
]
REQUESTS = [
    (
        0,
        "CS 101",
        "Could we go over question 3 of the problem set? I am stuck on recursion.",
        "pending",
        14,
    ),
    (1, "CS 201", "I would like feedback on my project proposal before Friday.", "pending", 6),
    (2, None, "Quick question about the lab schedule next week.", "pending", 2),
    (
        3,
        "CS 101",
        "Thank you for the help with pointers last time; one more question.",
        "accepted",
        40,
    ),
    (0, "CS 150", "Can I get my midterm paper back?", "completed", 300),
    (1, "CS 101", "Is the deadline for homework 2 moving?", "busy", 900),
    (2, "CS 201", "Request for a recommendation letter.", "declined", 2000),
    (3, None, "Question on grading.", "expired", 5000),
]


def seed(url: str, engine) -> tuple[int, int]:
    """Faculty, students, a faculty account, a kiosk and consultations in every state."""
    create_admin(engine)
    api = admin_client(url)
    faculty = [api.save_faculty(None, *f) for f in FACULTY]
    students = [api.register_student(n, sid, "CS", card) for n, sid, card in STUDENTS]
    enroll(engine, "lobby-1")
    enroll(engine, "library-2")
    ApiClient(url, enroll(engine, "cafeteria")).faculty()
    accounts = WebAccounts(engine)
    accounts.accept(
        accounts.invite(faculty[0].id, "ada", actor="admin:root-admin").code, FACULTY_PASSWORD
    )
    now = utcnow()
    with Session(engine) as s:
        for student, course, message, status, age_min in REQUESTS:
            created = now - timedelta(minutes=age_min)
            c = Consultation(
                student_id=students[student].id,
                faculty_id=faculty[0].id,
                message=message,
                course_code=course,
                status=status,
                created_at=created,
            )
            if status != "pending":
                c.answered_at = created + timedelta(minutes=3)
                c.answer_s = 180.0
                if status in ("accepted", "completed"):
                    c.accepted_at = c.answered_at
            s.add(c)
        s.commit()
        first = s.query(Consultation.id).order_by(Consultation.id).first()
    assert first is not None
    return faculty[0].id, int(first[0])


def sign_in(driver, url: str, username: str, password: str) -> None:
    driver.get(url + "/web/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    time.sleep(0.5)


def shoot(driver, out: Path, name: str, size: str) -> None:
    time.sleep(0.4)  # the live queue's first refresh
    path = out / f"{name}-{size}.png"
    driver.save_screenshot(str(path))
    print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def main() -> int:
    """Start everything, seed, and save two PNGs per page."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "web")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not browser.available():
        print("needs Debian's chromium and chromium-driver", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="consultease-shots-") as tmp:
        broker = MosquittoBroker().start()
        db_url = f"sqlite:///{Path(tmp) / 'consultease.db'}"
        try:
            with (
                running_server(db_url, broker.port, Path(tmp)) as server,
                db_engine(db_url) as engine,
            ):
                url = server.url
                fid, cid = seed(url, engine)
                desk = DeskUnit(fid + 1, "Dr. Ben Reyes", "127.0.0.1", broker.port).start()
                desk.wait_connected(10)
                time.sleep(1.0)
                invite = WebAccounts(engine).invite(fid + 2, "carla", actor="admin:root-admin")
                for size, (width, height) in SIZES.items():
                    with browser.chromium(width, height) as driver:
                        driver.get(url + "/web/login")
                        shoot(driver, args.out, "login", size)
                        driver.get(url + f"/web/invite?code={invite.code}")
                        shoot(driver, args.out, "invite", size)
                        sign_in(driver, url, ADMIN_USER, ADMIN_PASSWORD)
                        for page in (
                            "",
                            "/faculty",
                            "/students",
                            "/desks",
                            "/consultations",
                            "/kiosks",
                            "/audit",
                            "/insight",
                        ):
                            driver.get(url + "/web/admin" + page)
                            shoot(
                                driver, args.out, "admin-" + (page.strip("/") or "overview"), size
                            )
                        driver.get(url + "/web/password")
                        shoot(driver, args.out, "password", size)
                        driver.find_element(By.CSS_SELECTOR, "header form button").click()
                        time.sleep(0.3)
                        sign_in(driver, url, "ada", FACULTY_PASSWORD)
                        driver.get(url + "/web/faculty")
                        shoot(driver, args.out, "faculty-queue", size)
                        driver.get(url + "/web/faculty/history")
                        shoot(driver, args.out, "faculty-history", size)
                        driver.get(url + f"/web/faculty/consultations/{cid}")
                        shoot(driver, args.out, "faculty-consultation", size)
                        driver.get(url + "/web/admin")
                        shoot(driver, args.out, "forbidden", size)
                desk.stop()
        finally:
            broker.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
