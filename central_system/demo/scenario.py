"""The demo's scripted headless scenario: it drives the kiosk window like a user would.

Card taps on the simulated reader, button clicks and typing in the kiosk's widgets,
a press on a simulated desk; each step waits (from a Qt timer, never blocking the Qt
thread) until the window shows its result. ``consultease demo --headless`` runs it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from .environment import DEMO_FACULTY, DEMO_STUDENTS, UNKNOWN_CARD, DemoEnvironment


@dataclass
class Step:
    """One scenario step: do ``action`` (non-blocking), then wait until ``until()`` holds."""

    name: str
    until: Callable[[], bool]
    action: Callable[[], None] | None = None
    done_note: Callable[[], str] | None = None


class Scenario(QObject):
    """Runs steps from a Qt timer, so the Qt thread never sleeps or waits; bounded by ``timeout_s``."""

    finished = Signal(bool)

    def __init__(
        self,
        steps: list[Step],
        timeout_s: float,
        log: Callable[[str], None] = print,
        poll_ms: int = 20,
        diagnose: Callable[[], str] | None = None,
    ) -> None:
        super().__init__()
        self.diagnose = diagnose
        self.steps = steps
        self.timeout_s = timeout_s
        self.log = log
        self.ok: bool | None = None
        self.timeline: list[tuple[float, str]] = []
        self._index = 0
        self._t0 = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._tick)

    def _note(self, text: str) -> None:
        elapsed = time.monotonic() - self._t0
        self.timeline.append((elapsed, text))
        self.log(f"[{time.strftime('%H:%M:%S')}  +{elapsed:7.3f} s] {text}")

    def start(self) -> None:
        """Begin with the first step."""
        self._t0 = time.monotonic()
        self._begin(0)
        self._timer.start()

    def _begin(self, index: int) -> None:
        self._index = index
        step = self.steps[index]
        self._note(f"→ {step.name}")
        if step.action is not None:
            step.action()

    def _tick(self) -> None:
        if self.ok is not None:
            return
        if time.monotonic() - self._t0 > self.timeout_s:
            extra = f" ({self.diagnose()})" if self.diagnose else ""
            self._finish(
                False,
                f"TIMEOUT after {self.timeout_s:.0f} s in: {self.steps[self._index].name}{extra}",
            )
            return
        step = self.steps[self._index]
        try:
            done = step.until()
        except Exception as err:  # a broken step fails the scenario, it does not hang it
            self._finish(False, f"FAILED in {step.name}: {err!r}")
            return
        if not done:
            return
        self._note(f"✓ {step.done_note() if step.done_note else step.name}")
        if self._index + 1 < len(self.steps):
            self._begin(self._index + 1)
        else:
            self._finish(True, "scenario complete")

    def _finish(self, ok: bool, text: str) -> None:
        self.ok = ok
        self._timer.stop()
        self._note(text)
        self.finished.emit(ok)


def visible_messages(window: Any) -> str:
    """Every visible error/info text of the kiosk window (for a failed scenario's report)."""
    from PySide6.QtWidgets import QLabel

    texts = [
        f"{label.objectName()}: {label.text()}"
        for label in window.findChildren(QLabel)
        if label.objectName() in ("fieldError", "loginMessage", "logoutWarning")
        and label.isVisible()
        and label.text()
    ]
    return "; ".join(texts) or "no message on screen"


def in_thread(fn: Callable[[], Any], name: str = "scenario-action") -> Callable[[], None]:
    """Wrap a blocking action (a desk button press) so it runs off the Qt thread."""

    def start() -> None:
        threading.Thread(target=fn, name=name, daemon=True).start()

    return start


def headless_steps(env: DemoEnvironment, kiosk: Any) -> list[Step]:
    """The scripted demo: unknown card refused, card tap, request, desk ACKNOWLEDGE, accepted."""
    win = kiosk.window
    student_name, _num, _dept, uid = DEMO_STUDENTS[0]
    faculty_name = DEMO_FACULTY[0][0]
    fid = env.faculty_ids[faculty_name]
    desk = env.desk(faculty_name)
    state: dict[str, Any] = {}

    def card() -> Any:
        return win.dashboard.cards.get(fid)

    def request_cid() -> int:
        sent = win.request_form.sent
        assert sent is not None
        return int(sent.id)

    def desk_has_request() -> bool:
        return any(str(r.cid) == str(request_cid()) for r in desk.queue)

    def row_status() -> str:
        row = win.my_consultations.rows.get(request_cid())
        return row.pill.status() if row is not None else ""

    def press_acknowledge(cid: int) -> None:
        # The desk's button press waits on the desk's own loop: keep it off the Qt thread.
        in_thread(lambda: state.setdefault("ack", desk.acknowledge(cid)))()

    def write_request() -> None:
        win.request_form.message_edit.setPlainText(
            "Could we go over the feedback on my project proposal, please?"
        )
        win.request_form.course_edit.setText("CS101")
        win.request_form.send_button.click()

    return [
        Step(
            "tap an unregistered card",
            lambda: "not registered" in win.login.message.text(),
            lambda: kiosk.reader.tap(UNKNOWN_CARD),
            lambda: f"refused: {win.login.message.text()!r}",
        ),
        Step(
            f"tap {student_name}'s card",
            lambda: (
                win.student is not None
                and win.current_screen() is win.dashboard
                and card() is not None
                and card().request_button.isEnabled()
            ),
            lambda: kiosk.reader.tap(uid),
            lambda: (
                f"logged in as {win.student.name}; {faculty_name} shows {card().view.availability}"
            ),
        ),
        Step(
            f"press Request for {faculty_name}",
            lambda: win.current_screen() is win.request_form,
            lambda: card().request_button.click(),
        ),
        Step(
            "type the message and course code, press Send",
            lambda: (
                win.request_form.sent is not None and win.request_form.stack.currentIndex() == 1
            ),
            write_request,
            lambda: (
                f"kiosk shows {win.request_form.sent_label.text()!r} "
                f"(consultation #{request_cid()}, {win.request_form.sent_status.status()})"
            ),
        ),
        Step(
            f"{faculty_name}'s desk receives the request",
            desk_has_request,
            None,
            lambda: f"desk queue: {[str(r.cid) for r in desk.queue]}",
        ),
        Step(
            "the faculty member presses ACKNOWLEDGE on the desk",
            lambda: win.request_form.sent_status.status() == "accepted",
            lambda: press_acknowledge(request_cid()),
            lambda: "kiosk shows the request as accepted",
        ),
        Step(
            "open My consultations",
            lambda: row_status() == "accepted",
            lambda: win.request_form.my_button.click(),
            lambda: f"My consultations: #{request_cid()} {row_status()}",
        ),
    ]
