"""Student screens: the faculty dashboard, the request form and "My consultations"."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..api.errors import KioskError, OutcomeUnknownError
from ..api.schemas import ConsultationView, FacultyView, QueueView, StudentView
from .context import KioskContext
from .widgets import StatusPill, button, fmt_time, repolish, title

MESSAGE_MIN = 10
MESSAGE_MAX = 500
COURSE_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 \-]{0,15}$")
# Bursts of presence changes (200 desks flapping) are folded into one reload this often.
REFRESH_COALESCE_MS = 250
ALL_DEPARTMENTS = "All departments"
# The kiosk shows a student's most recent requests; older ones are history.
MY_CONSULTATIONS_SHOWN = 20
# Rows placed per event-loop turn on "My consultations" (the first screenful in two turns).
# Each row re-styles a status pill (~1 ms of Qt-thread time, several ms of wall time when
# the service's threads compete for the GIL): two per turn keep a 60 Hz frame on time.
ROWS_PER_SLICE = 2
# Faculty cards re-styled per event-loop turn when many desks change at once (same reason).
CARDS_PER_SLICE = 3
# Queue positions, wait estimates and waiting counts are re-read at most this often while
# requests are answered, cancelled or expire (one worker call per burst, issue 12).
QUEUE_REFRESH_MS = 300
EXPIRED_TEXT = "Nobody answered in time: this request expired. You can send a new one."


def _queue_timer(parent: QWidget, slot: object) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(QUEUE_REFRESH_MS)
    timer.timeout.connect(slot)
    return timer


def _error_text(err: BaseException) -> str:
    if isinstance(err, KioskError):
        return str(err)
    return f"Something went wrong ({err.__class__.__name__}). Please try again."


class FacultyCard(QFrame):
    """One faculty member: name, department, live availability, request button."""

    request_clicked = Signal(int)

    def __init__(self, view: FacultyView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("facultyCard")
        self.setMinimumHeight(150)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 12, 14, 12)
        self.name_label = QLabel()
        self.name_label.setObjectName("facultyName")
        self.name_label.setWordWrap(True)
        self.dept_label = QLabel()
        self.dept_label.setObjectName("facultyDept")
        self.pill = StatusPill()
        self.waiting_label = QLabel("")
        self.waiting_label.setObjectName("waitingCount")
        self.waiting = 0
        row = QHBoxLayout()
        row.addWidget(self.pill)
        row.addWidget(self.waiting_label)
        row.addStretch(1)
        self.request_button = button("Request", "requestButton")
        row.addWidget(self.request_button)
        layout.addWidget(self.name_label)
        layout.addWidget(self.dept_label)
        layout.addStretch(1)
        layout.addLayout(row)
        self.view = view
        self.request_button.clicked.connect(lambda: self.request_clicked.emit(self.view.id))
        self.update_view(view, force=True)

    def update_view(self, view: FacultyView, force: bool = False) -> None:
        """Show ``view``; untouched widgets stay untouched (cheap when nothing changed)."""
        if not force and view == self.view:
            return
        self.view = view
        self.setProperty("facultyId", view.id)
        self.name_label.setText(view.name)
        self.dept_label.setText(view.department or " ")
        self.pill.set_status(view.availability)
        self.request_button.setEnabled(view.can_request)

    def set_waiting(self, count: int) -> None:
        """Show how many requests wait in this faculty member's queue."""
        if count == self.waiting and self.waiting_label.text():
            return
        self.waiting = count
        self.waiting_label.setText(f"{count} waiting" if count else "No one waiting")


class DashboardScreen(QWidget):
    """Faculty cards with search and department filter; availability updates live."""

    request_faculty = Signal(object)  # FacultyView
    show_my_consultations = Signal()

    def __init__(self, ctx: KioskContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("page")
        self.cards: dict[int, FacultyCard] = {}
        self._updates: dict[int, FacultyView] = {}
        self._updating = False
        self._loading = False
        self._dirty = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(16, 10, 16, 10)
        top = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setObjectName("facultySearch")
        self.search.setPlaceholderText("Search faculty by name")
        self.search.setClearButtonEnabled(True)
        self.department = QComboBox()
        self.department.setObjectName("departmentFilter")
        self.department.addItem(ALL_DEPARTMENTS)
        self.department.setMinimumWidth(220)
        self.my_button = button("My consultations", "myConsultationsButton", "secondary")
        top.addWidget(self.search, 3)
        top.addWidget(self.department, 2)
        top.addWidget(self.my_button)
        outer.addLayout(top)
        self.empty_label = QLabel("")
        self.empty_label.setObjectName("tapHint")
        outer.addWidget(self.empty_label)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        holder = QWidget()
        holder.setObjectName("page")
        self.grid = QGridLayout(holder)
        self.grid.setSpacing(12)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.scroll_area.setWidget(holder)
        outer.addWidget(self.scroll_area, 1)
        self.search.textChanged.connect(self._apply_filter)
        self.department.currentIndexChanged.connect(self._apply_filter)
        self.my_button.clicked.connect(self.show_my_consultations.emit)
        self._coalesce = QTimer(self)
        self._coalesce.setSingleShot(True)
        self._coalesce.setInterval(REFRESH_COALESCE_MS)
        self._coalesce.timeout.connect(self.refresh)
        ctx.bridge.faculty_changed.connect(self._on_faculty_changed)
        self.waiting: dict[int, int] = {}
        self._waiting_timer = _queue_timer(self, self.refresh_waiting)
        self._waiting_loading = False
        ctx.bridge.consultations_changed.connect(self._on_consultation_changed)

    def refresh(self) -> None:
        """Reload every faculty member on the worker; at most one reload in flight."""
        if self._loading:
            self._dirty = True
            return
        self._loading = True
        self._dirty = False
        self.ctx.run(lambda b: b.list_faculty(), self._loaded, self._load_failed)
        self.refresh_waiting()

    def refresh_waiting(self) -> None:
        """Reload the waiting counts on the worker (at most one call in flight)."""
        if self._waiting_loading:
            self._waiting_timer.start()
            return
        self._waiting_loading = True
        self.ctx.run(lambda b: b.waiting_counts(), self._waiting_loaded, self._waiting_failed)

    def _on_consultation_changed(self, _changes: dict[int, str]) -> None:
        if not self._waiting_timer.isActive():
            self._waiting_timer.start()

    def _waiting_loaded(self, counts: dict[int, int]) -> None:
        self._waiting_loading = False
        self.waiting = dict(counts)
        for fid, card in self.cards.items():
            card.set_waiting(self.waiting.get(fid, 0))

    def _waiting_failed(self, _err: BaseException) -> None:
        self._waiting_loading = False  # the next change or refresh tries again

    def _on_faculty_changed(self, _faculty_id: int) -> None:
        if not self._coalesce.isActive():
            self._coalesce.start()

    def _load_failed(self, err: BaseException) -> None:
        self._loading = False
        self.empty_label.setText(_error_text(err))

    def _loaded(self, views: list[FacultyView]) -> None:
        self._loading = False
        self.set_faculty(views)
        if self._dirty:
            self._coalesce.start()

    def set_faculty(self, views: list[FacultyView]) -> None:
        """Show ``views``: changed cards are updated in place, a few per event-loop turn."""
        seen = {v.id for v in views}
        layout_changed = False
        for fid in [fid for fid in self.cards if fid not in seen]:
            self.cards.pop(fid).deleteLater()
            self._updates.pop(fid, None)
            layout_changed = True
        for view in views:
            card = self.cards.get(view.id)
            if card is None:
                card = FacultyCard(view)
                card.set_waiting(self.waiting.get(view.id, 0))
                card.request_clicked.connect(self._request)
                self.cards[view.id] = card
                layout_changed = True
            elif view != card.view:
                self._updates[view.id] = view
        if layout_changed:
            self._relayout([v.id for v in views])
            self._update_departments(views)
            self._apply_filter()
        if self._updates and not self._updating:
            self._updating = True
            self._apply_updates()

    def _apply_updates(self) -> None:
        # Re-styling a status pill costs ~0.5 ms: 200 flapping desks would stall the
        # Qt thread for tens of ms in one go, so cards change a slice at a time.
        for _ in range(min(CARDS_PER_SLICE, len(self._updates))):
            fid = next(iter(self._updates))
            view = self._updates.pop(fid)
            card = self.cards.get(fid)
            if card is not None:
                card.update_view(view)
        if self._updates:
            QTimer.singleShot(0, self._apply_updates)
        else:
            self._updating = False

    def _relayout(self, order: list[int]) -> None:
        while self.grid.count():
            self.grid.takeAt(0)
        for i, fid in enumerate(order):
            self.grid.addWidget(self.cards[fid], i // 3, i % 3)

    def _update_departments(self, views: list[FacultyView]) -> None:
        current = self.department.currentText()
        departments = sorted({v.department for v in views if v.department})
        self.department.blockSignals(True)
        self.department.clear()
        self.department.addItem(ALL_DEPARTMENTS)
        self.department.addItems(departments)
        index = self.department.findText(current)
        self.department.setCurrentIndex(max(0, index))
        self.department.blockSignals(False)

    def _apply_filter(self) -> None:
        needle = self.search.text().strip().lower()
        dept = self.department.currentText()
        shown = 0
        for card in self.cards.values():
            visible = (not needle or needle in card.view.name.lower()) and (
                dept == ALL_DEPARTMENTS or card.view.department == dept
            )
            card.setVisible(visible)
            shown += visible
        if not self.cards:
            self.empty_label.setText("No faculty members yet.")
        elif not shown:
            self.empty_label.setText("No faculty member matches your search.")
        else:
            self.empty_label.setText("")
        self.empty_label.setVisible(bool(self.empty_label.text()))

    def _request(self, faculty_id: int) -> None:
        card = self.cards.get(faculty_id)
        if card is not None and card.view.can_request:
            self.request_faculty.emit(card.view)

    def reset(self) -> None:
        """Clear the search (a new student starts fresh)."""
        self.search.clear()
        self.department.setCurrentIndex(0)


class RequestFormScreen(QWidget):
    """Message (10-500 characters, counted live), optional course code, then "sent"."""

    back_requested = Signal()
    show_my_consultations = Signal()

    def __init__(self, ctx: KioskContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("page")
        self.student: StudentView | None = None
        self.faculty: FacultyView | None = None
        self.sent: ConsultationView | None = None
        self.stack = QStackedWidget(self)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.stack)
        self.stack.addWidget(self._build_form())
        self.stack.addWidget(self._build_sent())
        self._queue_timer = _queue_timer(self, self._refresh_queue)
        ctx.bridge.consultations_changed.connect(self._on_consultation_changed)

    def _build_form(self) -> QWidget:
        page = QWidget()
        page.setObjectName("page")
        layout = QVBoxLayout(page)
        layout.setContentsMargins(30, 12, 30, 12)
        self.heading = title("")
        layout.addWidget(self.heading)
        layout.addWidget(QLabel("What would you like to discuss?"))
        self.message_edit = QPlainTextEdit()
        self.message_edit.setObjectName("messageEdit")
        self.message_edit.setPlaceholderText("Describe your question (10 to 500 characters)")
        # Small enough that the form fits above the on-screen keyboard (it grows without it).
        self.message_edit.setMinimumHeight(72)
        layout.addWidget(self.message_edit, 1)
        row = QHBoxLayout()
        self.message_error = QLabel("")
        self.message_error.setObjectName("fieldError")
        self.char_count = QLabel("")
        self.char_count.setObjectName("charCount")
        row.addWidget(self.message_error, 1)
        row.addWidget(self.char_count)
        layout.addLayout(row)
        course_row = QHBoxLayout()
        course_row.addWidget(QLabel("Course code (optional)"))
        self.course_edit = QLineEdit()
        self.course_edit.setObjectName("courseEdit")
        self.course_edit.setPlaceholderText("e.g. CS101")
        self.course_edit.setMaxLength(16)
        course_row.addWidget(self.course_edit, 1)
        layout.addLayout(course_row)
        self.course_error = QLabel("")
        self.course_error.setObjectName("fieldError")
        layout.addWidget(self.course_error)
        self.form_error = QLabel("")
        self.form_error.setObjectName("fieldError")
        self.form_error.setWordWrap(True)
        layout.addWidget(self.form_error)
        buttons = QHBoxLayout()
        self.back_button = button("Back", "requestBack", "secondary")
        self.send_button = button("Send request", "sendButton")
        buttons.addWidget(self.back_button)
        buttons.addStretch(1)
        buttons.addWidget(self.send_button)
        layout.addLayout(buttons)
        self.message_edit.textChanged.connect(self._validate)
        self.course_edit.textChanged.connect(self._validate)
        self.back_button.clicked.connect(self.back_requested.emit)
        self.send_button.clicked.connect(self._send)
        return page

    def _build_sent(self) -> QWidget:
        page = QWidget()
        page.setObjectName("page")
        layout = QVBoxLayout(page)
        layout.setContentsMargins(40, 30, 40, 30)
        layout.addStretch(1)
        self.sent_label = QLabel("")
        self.sent_label.setObjectName("sentLabel")
        self.sent_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.sent_label.setWordWrap(True)
        layout.addWidget(self.sent_label)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(QLabel("Status:"))
        self.sent_status = StatusPill("pending")
        self.sent_status.setObjectName("statusPill")
        row.addWidget(self.sent_status)
        row.addStretch(1)
        layout.addLayout(row)
        self.queue_label = QLabel("")
        self.queue_label.setObjectName("queueInfo")
        self.queue_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.queue_label.setWordWrap(True)
        layout.addWidget(self.queue_label)
        self.sent_hint = QLabel(
            "The status changes here when the faculty member answers at the desk."
        )
        self.sent_hint.setObjectName("tapHint")
        self.sent_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.sent_hint.setWordWrap(True)
        layout.addWidget(self.sent_hint)
        layout.addStretch(2)
        buttons = QHBoxLayout()
        self.done_button = button("Back to faculty list", "sentBack", "secondary")
        self.my_button = button("My consultations", "sentMyConsultations")
        buttons.addWidget(self.done_button)
        buttons.addStretch(1)
        buttons.addWidget(self.my_button)
        layout.addLayout(buttons)
        self.done_button.clicked.connect(self.back_requested.emit)
        self.my_button.clicked.connect(self.show_my_consultations.emit)
        return page

    def start(self, student: StudentView, faculty: FacultyView) -> None:
        """Open an empty form for ``faculty``."""
        self.student, self.faculty, self.sent = student, faculty, None
        self.heading.setText(f"Request a consultation with {faculty.name}")
        self.message_edit.clear()
        self.course_edit.clear()
        self.form_error.setText("")
        self.message_error.setText("")
        self.course_error.setText("")
        self.send_button.setEnabled(False)
        self._validate()
        self.stack.setCurrentIndex(0)

    def _validate(self) -> bool:
        """Live validation; messages appear next to the field concerned."""
        text = self.message_edit.toPlainText().strip()
        n = len(text)
        ok_message = MESSAGE_MIN <= n <= MESSAGE_MAX
        self.char_count.setText(f"{n} / {MESSAGE_MAX}")
        self.char_count.setProperty("valid", "true" if ok_message else "false")
        repolish(self.char_count)
        if n == 0:
            self.message_error.setText("")
        elif n < MESSAGE_MIN:
            self.message_error.setText(
                f"At least {MESSAGE_MIN} characters ({MESSAGE_MIN - n} more)."
            )
        elif n > MESSAGE_MAX:
            self.message_error.setText(
                f"At most {MESSAGE_MAX} characters ({n - MESSAGE_MAX} too many)."
            )
        else:
            self.message_error.setText("")
        course = self.course_edit.text().strip()
        ok_course = not course or bool(COURSE_CODE_RE.match(course))
        self.course_error.setText(
            "" if ok_course else "Letters, digits, spaces or dashes only (up to 16)."
        )
        ok = ok_message and ok_course
        self.send_button.setEnabled(ok)
        return ok

    def _send(self) -> None:
        if not self._validate() or self.student is None or self.faculty is None:
            return
        student_id, faculty_id = self.student.id, self.faculty.id
        message = self.message_edit.toPlainText().strip()
        course = self.course_edit.text().strip() or None
        self.send_button.setEnabled(False)
        self.form_error.setText("Sending…")
        self.ctx.run(
            lambda b: b.send_request(student_id, faculty_id, message, course),
            self._sent_ok,
            self._sent_failed,
        )

    def _sent_ok(self, view: ConsultationView) -> None:
        self.sent = view
        name = self.faculty.name if self.faculty else view.faculty_name
        self.sent_label.setText(f"Sent to {name}'s desk")
        self.sent_status.set_status(view.status)
        self.queue_label.setText("")
        self.form_error.setText("")
        self.stack.setCurrentIndex(1)
        self._refresh_queue()

    def _refresh_queue(self) -> None:
        """Re-read the sent request's place in the queue (worker), while it is pending."""
        sent = self.sent
        if sent is None or self.sent_status.status() != "pending":
            return
        cid = sent.id

        def shown(queue: QueueView | None) -> None:
            if self.sent is None or self.sent.id != cid:
                return  # another request (or student) since
            if queue is not None:
                name = self.faculty.name if self.faculty else sent.faculty_name
                self.queue_label.setText(queue.describe(name))
            elif self.sent_status.status() == "pending":
                self.queue_label.setText("")

        self.ctx.run(lambda b: b.queue_position(cid), shown, lambda _err: None)

    def _sent_failed(self, err: BaseException) -> None:
        if isinstance(err, OutcomeUnknownError):
            # The request may be saved (and on its way to the desk): sending it again
            # could make two. My consultations tells, once the kiosk is back.
            self.form_error.setText(
                "The kiosk lost its connection while sending. Your request may have been "
                "sent: open My consultations before sending it again."
            )
        else:
            self.form_error.setText(_error_text(err))
        self._validate()

    def _on_consultation_changed(self, changes: dict[int, str]) -> None:
        if self.sent is None:
            return
        status = changes.get(self.sent.id)
        if status:
            self.sent_status.set_status(status)
            if status != "pending":
                self.queue_label.setText(EXPIRED_TEXT if status == "expired" else "")
                return
        # Any other request answered, cancelled or expired may move this one up.
        if self.sent_status.status() == "pending" and not self._queue_timer.isActive():
            self._queue_timer.start()


class ConsultationRow(QFrame):
    """One of the student's consultations with its live status (reused across sessions)."""

    cancel_clicked = Signal(int)

    def __init__(self, view: ConsultationView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("consultationRow")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        text = QVBoxLayout()
        self.head = QLabel()
        self.head.setObjectName("rowHead")
        self.head.setTextFormat(Qt.TextFormat.PlainText)  # rich text layout is costly per row
        self.body = QLabel()
        self.body.setObjectName("facultyDept")
        self.body.setTextFormat(Qt.TextFormat.PlainText)
        self.when = QLabel()
        self.when.setObjectName("facultyDept")
        self.queue = QLabel()
        self.queue.setObjectName("queueInfo")
        self.queue.setTextFormat(Qt.TextFormat.PlainText)
        self.queue.setWordWrap(True)
        text.addWidget(self.head)
        text.addWidget(self.body)
        text.addWidget(self.when)
        text.addWidget(self.queue)
        layout.addLayout(text, 1)
        self.pill = StatusPill(view.status)
        layout.addWidget(self.pill)
        self.cancel_button = button("Cancel", "cancelButton", "danger")
        self.cancel_button.clicked.connect(lambda: self.cancel_clicked.emit(self.view.id))
        layout.addWidget(self.cancel_button)
        self.set_view(view)

    def set_view(self, view: ConsultationView) -> None:
        """Show ``view`` in this row."""
        self.view = view
        self.head.setText(f"{view.faculty_name}   {view.course_code or ''}".strip())
        snippet = view.message if len(view.message) <= 80 else view.message[:79] + "…"
        self.body.setText(snippet)
        when = fmt_time(view.created_at)
        self.when.setText(f"{when} · {view.note}" if view.note else when)
        self.when.setWordWrap(bool(view.note))
        self.pill.setProperty("consultationId", view.id)
        self.cancel_button.setEnabled(True)
        self.queue_text = ""
        self.queue.setText("")
        self.queue.setVisible(False)
        self.set_status(view.status)

    def set_status(self, status: str) -> None:
        """Show a new status; Cancel (and the queue position) only while pending."""
        self.pill.set_status(status)
        self.cancel_button.setVisible(status == "pending")
        if status == "expired":
            self._set_queue_text("Nobody answered in time: expired.")
        elif status != "pending":
            self._set_queue_text("")

    def set_queue(self, queue: QueueView | None) -> None:
        """Show the request's place in its queue (None: no longer waiting)."""
        if self.pill.status() != "pending":
            return
        self._set_queue_text(queue.describe(self.view.faculty_name) if queue else "")

    def _set_queue_text(self, text: str) -> None:
        if text != self.queue_text:
            self.queue_text = text
            self.queue.setText(text)
        self.queue.setVisible(bool(text))


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class MyConsultationsScreen(QWidget):
    """The student's requests; statuses change live when the faculty answers."""

    back_requested = Signal()

    def __init__(self, ctx: KioskContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("page")
        self.student: StudentView | None = None
        self.rows: dict[int, ConsultationRow] = {}
        self._pool: list[ConsultationRow] = []
        self._todo: list[ConsultationView] = []
        self._generation = 0
        outer = QVBoxLayout(self)
        outer.setContentsMargins(16, 10, 16, 10)
        top = QHBoxLayout()
        top.addWidget(title("My consultations"))
        top.addStretch(1)
        self.back_button = button("Back to faculty list", "myBack", "secondary")
        top.addWidget(self.back_button)
        outer.addLayout(top)
        self.info = QLabel("")
        self.info.setObjectName("fieldError")
        outer.addWidget(self.info)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        holder = QWidget()
        holder.setObjectName("page")
        self.list_layout = QVBoxLayout(holder)
        self.list_layout.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.scroll_area.setWidget(holder)
        outer.addWidget(self.scroll_area, 1)
        self.back_button.clicked.connect(self.back_requested.emit)
        self.queues: dict[int, QueueView] = {}
        self._queue_timer = _queue_timer(self, self.refresh_queues)
        ctx.bridge.consultations_changed.connect(self._on_changed)

    def refresh_queues(self) -> None:
        """Re-read the positions and wait estimates of the student's pending requests."""
        if self.student is None:
            return
        sid = self.student.id

        def shown(queues: dict[int, QueueView]) -> None:
            if self.student is None or self.student.id != sid:
                return
            self.queues = dict(queues)
            for cid, row in self.rows.items():
                row.set_queue(self.queues.get(cid))

        self.ctx.run(lambda b: b.queue_positions(sid), shown, lambda _err: None)

    def load(self, student: StudentView) -> None:
        """Show ``student``'s consultations (loaded on the worker)."""
        self.student = student
        sid = student.id
        self.info.setText("")
        self.ctx.run(
            lambda b: b.my_consultations(sid, MY_CONSULTATIONS_SHOWN), self._loaded, self._failed
        )

    def _loaded(self, views: list[ConsultationView]) -> None:
        """Show ``views`` newest first, a few rows per event-loop turn (rows are recycled)."""
        by_id = {v.id: v for v in views}
        for cid in [cid for cid in self.rows if cid not in by_id]:
            row = self.rows.pop(cid)
            row.hide()
            self._pool.append(row)
        while self.list_layout.count():
            self.list_layout.takeAt(0)
        self._todo = list(views)
        self._generation += 1
        self.info.setText("" if views else "You have not sent any requests yet.")
        self._place_rows(self._generation)
        if any(v.status == "pending" for v in views):
            self.refresh_queues()

    def _place_rows(self, generation: int) -> None:
        if generation != self._generation:
            return  # a newer load replaced this one
        batch, self._todo = self._todo[:ROWS_PER_SLICE], self._todo[ROWS_PER_SLICE:]
        for view in batch:
            row = self.rows.get(view.id)
            if row is None and self._pool:
                row = self._pool.pop()
            if row is None:
                row = ConsultationRow(view)
                row.cancel_clicked.connect(self._cancel)
            else:
                row.set_view(view)
            row.set_queue(self.queues.get(view.id))
            self.rows[view.id] = row
            self.list_layout.addWidget(row)
            row.show()
        if self._todo:
            # Let timers and touches run between slices; the first screenful comes first.
            QTimer.singleShot(0, lambda: self._place_rows(generation))

    def _failed(self, err: BaseException) -> None:
        self.info.setText(_error_text(err))

    def _on_changed(self, changes: dict[int, str]) -> None:
        unknown = False
        for consultation_id, status in changes.items():
            row = self.rows.get(consultation_id)
            if row is None:
                unknown = True
            elif status:
                row.set_status(status)  # from the event itself: no database round trip
        if unknown and self.student is not None and self.isVisible():
            self.load(self.student)  # a request made at another kiosk
            return
        # Any request answered, cancelled or expired may move the student's pending ones up.
        pending = any(r.pill.status() == "pending" for r in self.rows.values())
        if pending and self.isVisible() and not self._queue_timer.isActive():
            self._queue_timer.start()

    def _cancel(self, consultation_id: int) -> None:
        if self.student is None:
            return
        sid = self.student.id
        row = self.rows.get(consultation_id)
        if row is not None:
            row.cancel_button.setEnabled(False)

        def done(view: ConsultationView | None) -> None:
            if view is not None and view.id in self.rows:
                self.rows[view.id].set_status(view.status)

        def failed(err: BaseException) -> None:
            self.info.setText(_error_text(err))
            if row is not None:
                row.cancel_button.setEnabled(True)

        self.ctx.run(lambda b: b.cancel(consultation_id, sid), done, failed)

    def clear(self) -> None:
        """Forget the student's rows (logout)."""
        self.student = None
        self.queues = {}
        self._loaded([])
        self.info.setText("")
