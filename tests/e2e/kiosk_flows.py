"""What the kiosk e2e tests do with a real offscreen kiosk: tap in, send a request."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

WAIT_MS = 30_000
CARD = "04A1B2C3"


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    """Poll ``pred`` off the Qt loop until it holds or ``timeout`` s pass (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def tap_in(qtbot: Any, kiosk: Any, card: str, faculty_id: int) -> None:
    """Tap ``card``; wait for the dashboard with ``faculty_id``'s card on it."""
    win = kiosk.window
    kiosk.reader.tap(card)
    qtbot.waitUntil(
        lambda: win.current_screen() is win.dashboard and faculty_id in win.dashboard.cards,
        timeout=WAIT_MS,
    )


def open_request_form(qtbot: Any, kiosk: Any, faculty_id: int, message: str) -> Any:
    """From the dashboard: Request on ``faculty_id``'s card, type ``message``; the form."""
    win = kiosk.window
    card = win.dashboard.cards[faculty_id]
    qtbot.waitUntil(lambda: card.request_button.isEnabled(), timeout=WAIT_MS)
    card.request_button.click()
    qtbot.waitUntil(lambda: win.current_screen() is win.request_form, timeout=WAIT_MS)
    win.request_form.message_edit.setPlainText(message)
    return win.request_form


def send_request(qtbot: Any, kiosk: Any, faculty_id: int, message: str) -> int:
    """From the dashboard: send ``message`` to ``faculty_id``; the new consultation's id."""
    form = open_request_form(qtbot, kiosk, faculty_id, message)
    form.send_button.click()
    qtbot.waitUntil(lambda: form.sent is not None, timeout=WAIT_MS)
    return int(form.sent.id)


def sign_in_admin(qtbot: Any, kiosk: Any, username: str, password: str) -> Any:
    """From the start screen, sign in as an administrator; returns the admin area."""
    win = kiosk.window
    win.login.admin_button.click()
    win.admin_login.username.setText(username)
    win.admin_login.password.setText(password)
    win.admin_login.login_button.click()
    qtbot.waitUntil(lambda: win.current_screen() is win.admin_area, timeout=WAIT_MS)
    return win.admin_area
