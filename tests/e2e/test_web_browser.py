"""The web dashboard in a real browser: Debian's headless Chromium (Selenium + chromedriver)
against a real ``consultease server`` process, a real Mosquitto, a kiosk API client and a
firmware-mode desk unit, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select
from sqlalchemy.orm import Session

from central_system.api.client import ApiClient
from central_system.models import Consultation, Faculty, utcnow
from faculty_desk_unit.desk import DeskUnit
from tests.brokers import MosquittoBroker
from tests.server_helpers import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    admin_client,
    create_admin,
    db_engine,
    enroll,
    running_server,
)
from tests.web import browser

if os.environ.get("CONSULTEASE_TEST_REQUIRE_BROWSER") and not browser.available():
    raise RuntimeError(
        "CONSULTEASE_TEST_REQUIRE_BROWSER is set but chromium/chromedriver are missing"
    )
pytestmark = pytest.mark.skipif(
    not browser.available(),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)

CARD = "04A1B2C3"
FACULTY_PASSWORD = "Lecture-Hall-Lamp-42"
MESSAGE = "Could we go over question 3 of the problem set?"


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    with browser.chromium() as d:
        yield d


def _wait(driver: WebDriver, css: str, timeout: float = 15.0):
    return WebDriverWait(
        driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
    ).until(lambda d: d.find_element(By.CSS_SELECTOR, css))


def _text(driver: WebDriver, css: str, timeout: float = 15.0) -> str:
    """The element's text, read again if the live queue swapped it meanwhile."""
    found: list[str] = []

    def read(d: WebDriver) -> bool:
        found.append(d.find_element(By.CSS_SELECTOR, css).text)
        return True

    WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.05,
        ignored_exceptions=[StaleElementReferenceException, NoSuchElementException],
    ).until(read)
    return found[-1]


def _click(driver: WebDriver, css: str, timeout: float = 15.0) -> None:
    """Click, again if the live queue swapped the element between finding and clicking it."""

    def click(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.05,
        ignored_exceptions=[StaleElementReferenceException, NoSuchElementException],
    ).until(click)


def _sign_in(driver: WebDriver, url: str, username: str, password: str) -> None:
    driver.get(url + "/web/login")
    user = driver.find_element(By.ID, "username")
    user.clear()
    user.send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()


def _sign_out(driver: WebDriver) -> None:
    driver.find_element(By.CSS_SELECTOR, "header form button").click()
    WebDriverWait(driver, 10).until(lambda d: "/web/login" in d.current_url)


def test_admin_invites_faculty_who_answers_a_kiosk_request_live_and_the_desk_sees_it(
    db_url: str, broker: MosquittoBroker, tmp_path: Path, driver: WebDriver
) -> None:
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        url = server.url
        create_admin(engine)
        admin_api = admin_client(url)
        admin_api.register_student("Maria Santos", "2021-00001", "CS", CARD)
        kiosk = ApiClient(url, enroll(engine, "lobby-1"))

        # The administrator adds a faculty member and invites them.
        _sign_in(driver, url, ADMIN_USER, ADMIN_PASSWORD)
        WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/web/admin"))
        driver.get(url + "/web/admin/faculty")
        driver.find_element(By.ID, "faculty-name").send_keys("Dr. Ada Cruz")
        driver.find_element(By.ID, "faculty-department").send_keys("Computer Science")
        driver.find_element(By.ID, "faculty-email").send_keys("ada@example.edu")
        driver.find_element(By.ID, "faculty-add").click()
        _wait(driver, "p.notice")
        with Session(engine) as s:
            fid = s.scalar(select(Faculty.id).where(Faculty.name == "Dr. Ada Cruz"))
        assert fid is not None
        driver.find_element(By.ID, f"invite-{fid}").click()
        link = _wait(driver, "#invite-link").text.strip()
        assert link.startswith(url + "/web/invite?code=cei_")
        _sign_out(driver)

        # The faculty member sets a password with the link and signs in.
        driver.get(link)
        assert _wait(driver, "#invite-username").text == "ada"
        driver.find_element(By.ID, "password").send_keys(FACULTY_PASSWORD)
        driver.find_element(By.ID, "confirm").send_keys(FACULTY_PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#invite-form button").click()
        _wait(driver, "p.notice")
        _sign_in(driver, url, "ada", FACULTY_PASSWORD)
        WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/web/faculty"))
        WebDriverWait(driver, 15).until(
            lambda d: d.find_element(By.ID, "live-state").text.startswith("Live:")
        )
        driver.execute_script("window.__sameDocument = 1;")

        # A firmware-mode desk comes online; a kiosk sends the request.
        desk = DeskUnit(fid, "Dr. Ada Cruz", "127.0.0.1", broker.port, mode="firmware").start()
        try:
            assert desk.wait_connected(10)
            deadline = time.monotonic() + 20
            while not kiosk.faculty_member(fid).can_request and time.monotonic() < deadline:
                time.sleep(0.1)
            created = kiosk.create_consultation(CARD, fid, MESSAGE, "CS101")
            assert desk.wait_for_request(15, created.id) is not None

            # It appears on the open page without a reload.
            item = _text(driver, f"#request-{created.id}", 15)
            assert "Maria Santos" in item and "CS" in item and "question 3" in item
            assert driver.execute_script("return window.__sameDocument;") == 1

            # Accepting in the browser: the desk drops it, the kiosk sees it accepted.
            _click(driver, f"#accept-{created.id}")
            _wait(driver, f"#complete-{created.id}")
            assert desk.wait_for(lambda d: d._find(created.id) is None, 15), desk.queue
            assert desk.stats.cancellations == 1
            assert kiosk.consultation(CARD, created.id).status == "accepted"
            assert [c.status for c in kiosk.my_consultations(CARD)] == ["accepted"]
        finally:
            desk.stop()

        # Another faculty member's consultation cannot be opened by URL.
        other = admin_api.save_faculty(None, "Dr. Ben Reyes", "Math", "ben@example.edu")
        with Session(engine) as s:
            theirs = Consultation(
                student_id=admin_api.students()[0].id,
                faculty_id=other.id,
                message="Ben's student asks",
                status="pending",
                created_at=utcnow(),
            )
            s.add(theirs)
            s.commit()
            theirs_id = theirs.id
        driver.get(f"{url}/web/faculty/consultations/{theirs_id}")
        assert "No consultation" in _wait(driver, "#error-message").text
        assert "Ben's student asks" not in driver.page_source

        # A form whose CSRF token was removed is refused.
        driver.get(url + "/web/faculty")
        _wait(driver, "#set-available")
        # Removed and submitted in one script: the live queue may swap the form at any time.
        driver.execute_script(
            "var b = document.getElementById('set-available');"
            "b.form.querySelector('input[name=csrf]').remove(); b.form.requestSubmit(b);"
        )
        assert "did not come from this site" in _text(driver, "#error-message")
        with Session(engine) as s:
            assert s.scalar(select(Faculty.manual_status).where(Faculty.id == fid)) is None

        # Lockout: five wrong passwords, then even the right one is refused.
        driver.get(url + "/web/faculty")
        _sign_out(driver)
        for _ in range(5):
            _sign_in(driver, url, "ada", "Not-The-Password-1")
            _wait(driver, "p.error")
        _sign_in(driver, url, "ada", FACULTY_PASSWORD)
        assert "locked" in _wait(driver, "p.error").text
        assert driver.current_url.endswith("/web/login")
