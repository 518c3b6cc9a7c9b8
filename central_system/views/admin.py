"""The admin area: faculty, students (card registration by tap), desks, consultations, audit, system."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..api.errors import KioskError
from ..api.schemas import AdminSession, FacultyView, StudentView
from .context import KioskContext
from .widgets import button, fmt_time


def _error_text(err: BaseException) -> str:
    return str(err) if isinstance(err, KioskError) else f"Failed: {err.__class__.__name__}: {err}"


def _table(headers: list[str], name: str) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setObjectName(name)
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.verticalHeader().setVisible(False)
    t.verticalHeader().setDefaultSectionSize(40)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    return t


def _fill(table: QTableWidget, rows: list[list[Any]]) -> None:
    table.setRowCount(len(rows))
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            table.setItem(r, c, QTableWidgetItem("" if value is None else str(value)))


class FacultyTab(QWidget):
    """Faculty CRUD."""

    def __init__(self, area: AdminArea) -> None:
        super().__init__()
        self.area = area
        self.views: list[FacultyView] = []
        self.editing: int | None = None
        layout = QHBoxLayout(self)
        self.table = _table(["Name", "Department", "Email", "Status"], "facultyTable")
        layout.addWidget(self.table, 3)
        form_box = QVBoxLayout()
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setObjectName("facultyNameEdit")
        self.department = QLineEdit()
        self.department.setObjectName("facultyDeptEdit")
        self.email = QLineEdit()
        self.email.setObjectName("facultyEmailEdit")
        form.addRow("Name", self.name)
        form.addRow("Department", self.department)
        form.addRow("Email", self.email)
        form_box.addLayout(form)
        self.message = QLabel("")
        self.message.setObjectName("fieldError")
        self.message.setWordWrap(True)
        form_box.addWidget(self.message)
        row = QHBoxLayout()
        self.new_button = button("New", "facultyNew", "secondary")
        self.save_button = button("Save", "facultySave")
        self.delete_button = button("Delete", "facultyDelete", "danger")
        row.addWidget(self.new_button)
        row.addWidget(self.save_button)
        row.addWidget(self.delete_button)
        form_box.addLayout(row)
        form_box.addStretch(1)
        layout.addLayout(form_box, 2)
        self.table.itemSelectionChanged.connect(self._selected)
        self.new_button.clicked.connect(self._new)
        self.save_button.clicked.connect(self._save)
        self.delete_button.clicked.connect(self._delete)
        self._new()

    def refresh(self) -> None:
        """Reload the faculty list."""
        self.area.ctx.run(lambda b: b.list_faculty(), self._loaded, self._failed)

    def _loaded(self, views: list[FacultyView]) -> None:
        self.views = views
        _fill(self.table, [[v.name, v.department, v.email or "", v.availability] for v in views])

    def _failed(self, err: BaseException) -> None:
        self.message.setText(_error_text(err))

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.views):
            return
        v = self.views[rows[0].row()]
        self.editing = v.id
        self.name.setText(v.name)
        self.department.setText(v.department)
        self.email.setText(v.email or "")
        self.delete_button.setEnabled(True)

    def _new(self) -> None:
        self.editing = None
        self.table.clearSelection()
        for field in (self.name, self.department, self.email):
            field.clear()
        self.delete_button.setEnabled(False)

    def _save(self) -> None:
        name, dept, email = self.name.text(), self.department.text(), self.email.text().strip()
        if not name.strip():
            self.message.setText("A name is required.")
            return
        fid, admin = self.editing, self.area.username

        def done(view: FacultyView) -> None:
            self.message.setText(f"Saved {view.name}.")
            self._new()
            self.refresh()

        self.message.setText("Saving…")
        self.area.ctx.run(
            lambda b: b.save_faculty(fid, name, dept, email or None, admin), done, self._failed
        )

    def _delete(self) -> None:
        if self.editing is None:
            return
        fid, admin = self.editing, self.area.username

        def done(_: object) -> None:
            self.message.setText("Deleted.")
            self._new()
            self.refresh()

        self.area.ctx.run(lambda b: b.delete_faculty(fid, admin), done, self._failed)


class StudentsTab(QWidget):
    """Students; a new student's card is registered by tapping it on the reader."""

    def __init__(self, area: AdminArea) -> None:
        super().__init__()
        self.area = area
        self.views: list[StudentView] = []
        self.captured_uid: str | None = None
        self.waiting_for_card = False
        layout = QHBoxLayout(self)
        self.table = _table(["Name", "Student no.", "Department", "Card UID"], "studentTable")
        layout.addWidget(self.table, 3)
        box = QVBoxLayout()
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setObjectName("studentNameEdit")
        self.number = QLineEdit()
        self.number.setObjectName("studentNumberEdit")
        self.department = QLineEdit()
        self.department.setObjectName("studentDeptEdit")
        form.addRow("Name", self.name)
        form.addRow("Student no.", self.number)
        form.addRow("Department", self.department)
        box.addLayout(form)
        self.card_label = QLabel("Card: not tapped yet")
        self.card_label.setObjectName("cardUidLabel")
        box.addWidget(self.card_label)
        self.tap_button = button("Tap card to register", "tapCardButton", "secondary")
        box.addWidget(self.tap_button)
        self.message = QLabel("")
        self.message.setObjectName("fieldError")
        self.message.setWordWrap(True)
        box.addWidget(self.message)
        row = QHBoxLayout()
        self.register_button = button("Register", "registerStudentButton")
        self.delete_button = button("Delete", "studentDelete", "danger")
        row.addWidget(self.register_button)
        row.addWidget(self.delete_button)
        box.addLayout(row)
        box.addStretch(1)
        layout.addLayout(box, 2)
        self.tap_button.clicked.connect(self.wait_for_card)
        self.register_button.clicked.connect(self._register)
        self.delete_button.clicked.connect(self._delete)

    def refresh(self) -> None:
        """Reload the student list."""
        self.area.ctx.run(lambda b: b.list_students(), self._loaded, self._failed)

    def _loaded(self, views: list[StudentView]) -> None:
        self.views = views
        _fill(self.table, [[v.name, v.student_id, v.department, v.rfid_uid] for v in views])

    def _failed(self, err: BaseException) -> None:
        self.message.setText(_error_text(err))

    def wait_for_card(self) -> None:
        """The next card tap fills the card field instead of logging anyone in."""
        self.waiting_for_card = True
        self.card_label.setText("Card: waiting for a tap on the reader…")

    def card_tapped(self, uid: str) -> bool:
        """Take ``uid`` if waiting for a card; returns True when it was consumed."""
        if not self.waiting_for_card:
            return False
        self.waiting_for_card = False
        self.captured_uid = uid
        self.card_label.setText(f"Card: {uid}")
        return True

    def _register(self) -> None:
        if not self.captured_uid:
            self.message.setText("Tap the student's card first.")
            return
        if not self.name.text().strip() or not self.number.text().strip():
            self.message.setText("Name and student number are required.")
            return
        args = (self.name.text(), self.number.text(), self.department.text(), self.captured_uid)
        admin = self.area.username

        def done(view: StudentView) -> None:
            self.message.setText(f"Registered {view.name} ({view.rfid_uid}).")
            for field in (self.name, self.number, self.department):
                field.clear()
            self.captured_uid = None
            self.card_label.setText("Card: not tapped yet")
            self.refresh()

        self.message.setText("Registering…")
        self.area.ctx.run(lambda b: b.register_student(*args, admin), done, self._failed)

    def _delete(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.views):
            self.message.setText("Select a student first.")
            return
        pk, admin = self.views[rows[0].row()].id, self.area.username
        self.area.ctx.run(
            lambda b: b.delete_student(pk, admin), lambda _: self.refresh(), self._failed
        )


class SimpleTableTab(QWidget):
    """A read-only table with a Refresh button."""

    def __init__(
        self, area: AdminArea, headers: list[str], name: str, loader: Any, row: Any
    ) -> None:
        super().__init__()
        self.area, self.loader, self.row = area, loader, row
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.message = QLabel("")
        self.message.setObjectName("fieldError")
        top.addWidget(self.message, 1)
        refresh = button("Refresh", f"{name}Refresh", "secondary")
        refresh.clicked.connect(self.refresh)
        top.addWidget(refresh)
        layout.addLayout(top)
        self.table = _table(headers, name)
        layout.addWidget(self.table, 1)

    def refresh(self) -> None:
        """Reload on the worker."""
        self.area.ctx.run(self.loader, self._loaded, lambda e: self.message.setText(_error_text(e)))

    def _loaded(self, items: list[Any]) -> None:
        self.message.setText("" if items else "Nothing yet.")
        _fill(self.table, [self.row(i) for i in items])


class DesksTab(SimpleTableTab):
    """Desk units: liveness and diagnostics, plus broker credentials (provision, rotate, revoke)."""

    def __init__(self, area: AdminArea) -> None:
        super().__init__(
            area,
            ["Faculty", "Desk", "Presence", "Last heartbeat", "Diagnostics"],
            "deskTable",
            lambda b: b.list_desks(),
            _desk_row,
        )
        self.items: list[Any] = []
        actions = QHBoxLayout()
        for verb, text in (
            ("provision", "New credentials"),
            ("rotate", "New password"),
            ("revoke", "Revoke"),
        ):
            b = button(text, f"desk_{verb}", "secondary")
            b.clicked.connect(lambda _checked=False, v=verb: self._credentials(v))
            actions.addWidget(b)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.addLayout(actions)
        # Shown once, never stored: cleared on every refresh and when the admin leaves.
        self.secret = QLabel("")
        self.secret.setObjectName("deskSecret")
        self.secret.setWordWrap(True)
        self.secret.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.secret)

    def refresh(self) -> None:
        """Reload, and forget any configuration shown before."""
        self.secret.setText("")
        super().refresh()

    def _loaded(self, items: list[Any]) -> None:
        self.items = items
        super()._loaded(items)

    def _credentials(self, verb: str) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            self.message.setText("Select a desk unit first.")
            return
        fid, admin = self.items[rows[0].row()].faculty_id, self.area.username

        def done(text: str) -> None:
            self.message.setText("")
            self.secret.setText(text)

        self.area.ctx.run(
            lambda b: b.desk_credentials(verb, fid, admin),
            done,
            lambda e: self.message.setText(_error_text(e)),
        )


def _desk_row(d: Any) -> list[Any]:
    hb = d.heartbeat or {}
    diag = d.diagnostics or {}
    health = ", ".join(f"{k}={hb[k]}" for k in ("wifi_rssi", "free_heap", "uptime") if k in hb) or (
        json.dumps(diag)[:60] if diag else "-"
    )
    return [
        d.faculty_name,
        "online" if d.online else "OFFLINE",
        d.status,
        fmt_time(d.last_heartbeat_at or d.last_seen),
        health,
    ]


class SystemTab(QWidget):
    """MQTT connection, backlog and counters; database backup."""

    SHOWN = (
        ("state", "MQTT state"),
        ("broker", "Broker"),
        ("protocol", "Protocol"),
        ("queue_size", "Backlog (queue size)"),
        ("inflight", "In flight"),
        ("messages_published", "Published"),
        ("messages_received", "Received"),
        ("dropped_messages", "Dropped"),
        ("reconnects", "Reconnects"),
        ("last_error", "Last error"),
        ("database", "Database"),
        ("backend", "Central system"),
    )

    def __init__(self, area: AdminArea) -> None:
        super().__init__()
        self.area = area
        layout = QVBoxLayout(self)
        grid = QGridLayout()
        self.values: dict[str, QLabel] = {}
        # One statistic per row: a long value (the database URL) gets the full width.
        for i, (key, label) in enumerate(self.SHOWN):
            grid.addWidget(QLabel(label), i, 0)
            value = QLabel("-")
            value.setObjectName(f"stat_{key}")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(value, i, 1)
            self.values[key] = value
        grid.setColumnStretch(1, 1)
        layout.addLayout(grid)
        self.message = QLabel("")
        self.message.setObjectName("fieldError")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        layout.addStretch(1)
        row = QHBoxLayout()
        self.refresh_button = button("Refresh", "systemRefresh", "secondary")
        self.backup_button = button("Back up database", "backupButton")
        self.backup_button.setEnabled(False)
        row.addWidget(self.refresh_button)
        row.addStretch(1)
        row.addWidget(self.backup_button)
        layout.addLayout(row)
        self.refresh_button.clicked.connect(self.refresh)
        self.backup_button.clicked.connect(self._backup)

    def refresh(self) -> None:
        """Reload the statistics on the worker."""
        self.area.ctx.run(
            lambda b: (b.system_stats(), b.backup_available()),
            self._loaded,
            lambda e: self.message.setText(_error_text(e)),
        )

    def _loaded(self, result: tuple[dict[str, Any], bool]) -> None:
        stats, backup_ok = result
        for key, label in self.values.items():
            value = stats.get(key)
            label.setText("-" if value in (None, "") else str(value)[:60])
        self.backup_button.setEnabled(backup_ok)
        self.backup_button.setToolTip("" if backup_ok else "backup is not installed")

    def _backup(self) -> None:
        admin = self.area.username
        self.message.setText("Backing up…")
        self.area.ctx.run(
            lambda b: b.backup(admin),
            lambda where: self.message.setText(f"Backup written: {where}"),
            lambda e: self.message.setText(_error_text(e)),
        )


# The insight tab's ranges (days; 1 is "today") and reports, in the order offered.
INSIGHT_RANGES = ((1, "Today"), (7, "Last 7 days"), (30, "Last 30 days"), (90, "Last 90 days"))
INSIGHT_REPORTS = (
    ("answer_times_by_faculty", "Per faculty member"),
    ("answer_times_by_department", "Per department"),
    ("requests_per_day", "Requests per day"),
    ("busiest_hours", "Busiest hours"),
    ("requests_by_hour_of_week", "Hour of the week"),
    ("outcomes", "Outcomes"),
    ("desk_uptime_by_faculty", "Desk uptime per faculty member"),
    ("desk_uptime_by_department", "Desk uptime per department"),
)


def _cell(column: str, value: Any) -> str:
    """A report value as the admin reads it: rates in %, answer times in minutes."""
    if value is None:
        return "-"
    if column == "answer_rate":
        return f"{value:.0%}"
    if column == "uptime_pct":
        return f"{value:.1f} %"
    if column.endswith("_s"):
        return f"{value / 60:.1f} min"
    return str(value)


def insight_summary(tables: dict[str, Any]) -> str:
    """One paragraph from the outcomes, busiest-hours and desk-uptime reports."""
    outcomes = tables["outcomes"].as_dicts()[0]
    desks = desk_summary(tables.get("desk_uptime_by_faculty"))
    if not outcomes["requests"]:
        return " ".join(p for p in ("No requests in this period.", desks) if p)
    parts = [
        f"{outcomes['requests']} requests, {outcomes['answered']} answered "
        f"(answer rate {_cell('answer_rate', outcomes['answer_rate'])}), "
        f"{outcomes['expired']} expired, {outcomes['cancelled']} cancelled, "
        f"{outcomes['pending']} still waiting.",
        f"Time to first answer: median {_cell('x_s', outcomes['median_answer_s'])}, "
        f"90th percentile {_cell('x_s', outcomes['p90_answer_s'])}.",
    ]
    busiest = tables["busiest_hours"].rows[:3]
    if busiest:
        slots = ", ".join(f"{day} {hour:02d}:00 ({n})" for day, hour, n in busiest)
        parts.append(f"Busiest: {slots}.")
    if desks:
        parts.append(desks)
    return " ".join(parts)


def desk_summary(table: Any) -> str:
    """One sentence on the desks: mean uptime, disconnections, the least available desk."""
    if table is None or not table.rows:
        return ""
    rows = [r for r in table.as_dicts() if r["uptime_pct"] is not None]
    if not rows:
        return ""
    mean = sum(r["uptime_pct"] for r in rows) / len(rows)
    drops = sum(r["disconnections"] for r in rows)
    never = sum(1 for r in rows if not r["uptime_pct"] and r["longest_outage_s"] is None)
    worst = min(rows, key=lambda r: (r["uptime_pct"], -r["disconnections"]))
    text = f"Desks: {mean:.1f} % uptime on average, {drops} disconnections"
    if never:
        text += f", {never} never connected"
    if worst["uptime_pct"] < 100.0:
        text += f"; lowest: {worst['faculty']} ({_cell('uptime_pct', worst['uptime_pct'])})"
    return text + "."


class InsightTab(QWidget):
    """Analytics for a date range: a summary, one report as a table, CSV export (issue 12)."""

    def __init__(self, area: AdminArea) -> None:
        super().__init__()
        self.area = area
        self.tables: dict[str, Any] = {}
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.range_box = QComboBox()
        self.range_box.setObjectName("insightRange")
        for days, label in INSIGHT_RANGES:
            self.range_box.addItem(label, days)
        self.range_box.setCurrentIndex(2)
        self.report_box = QComboBox()
        self.report_box.setObjectName("insightReport")
        for name, label in INSIGHT_REPORTS:
            self.report_box.addItem(label, name)
        self.export_button = button("Export CSV", "insightExport", "secondary")
        top.addWidget(self.range_box, 1)
        top.addWidget(self.report_box, 1)
        top.addWidget(self.export_button)
        layout.addLayout(top)
        self.summary = QLabel("")
        self.summary.setObjectName("insightSummary")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.message = QLabel("")
        self.message.setObjectName("fieldError")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.table = _table([""], "insightTable")
        layout.addWidget(self.table, 1)
        self.range_box.currentIndexChanged.connect(lambda _i: self.refresh())
        self.report_box.currentIndexChanged.connect(lambda _i: self._show())
        self.export_button.clicked.connect(self._export)

    @property
    def days(self) -> int:
        """The chosen range in days (1: today)."""
        return int(self.range_box.currentData())

    def refresh(self) -> None:
        """Reload every report for the chosen range on the worker."""
        days = self.days
        self.message.setText("")
        self.area.ctx.run(
            lambda b: b.analytics(days),
            self._loaded,
            lambda e: self.message.setText(_error_text(e)),
        )

    def _loaded(self, tables: dict[str, Any]) -> None:
        self.tables = tables
        self.summary.setText(insight_summary(tables))
        self._show()

    def _show(self) -> None:
        table = self.tables.get(str(self.report_box.currentData()))
        if table is None:
            return
        self.table.clear()
        self.table.setColumnCount(len(table.columns))
        self.table.setHorizontalHeaderLabels([c.replace("_", " ") for c in table.columns])
        _fill(
            self.table,
            [[_cell(c, v) for c, v in zip(table.columns, row, strict=True)] for row in table.rows],
        )

    def _export(self) -> None:
        report, days, admin = str(self.report_box.currentData()), self.days, self.area.username
        self.area.ctx.run(
            lambda b: b.export_analytics(report, days, admin),
            lambda where: self.message.setText(f"CSV written: {where}"),
            lambda e: self.message.setText(_error_text(e)),
        )


class AdminArea(QWidget):
    """Tabs for everything an administrator manages."""

    logout_requested = Signal()

    def __init__(self, ctx: KioskContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("page")
        self.session: AdminSession | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("adminTabs")
        self.faculty_tab = FacultyTab(self)
        self.students_tab = StudentsTab(self)
        self.desks_tab = DesksTab(self)
        self.consultations_tab = SimpleTableTab(
            self,
            ["#", "Student", "Faculty", "Course", "Status", "Created"],
            "consultationTable",
            lambda b: b.list_consultations(),
            lambda c: [
                c.id,
                c.student_name,
                c.faculty_name,
                c.course_code or "",
                c.status,
                fmt_time(c.created_at),
            ],
        )
        self.audit_tab = SimpleTableTab(
            self,
            ["Time", "Actor", "Action", "Target", "OK", "Details"],
            "auditTable",
            lambda b: b.list_audit(),
            lambda a: [
                fmt_time(a.created_at),
                a.actor,
                a.action,
                a.target or "",
                "yes" if a.success else "NO",
                a.details,
            ],
        )
        self.system_tab = SystemTab(self)
        self.insight_tab = InsightTab(self)
        for widget, label in (
            (self.faculty_tab, "Faculty"),
            (self.students_tab, "Students"),
            (self.desks_tab, "Desk units"),
            (self.consultations_tab, "Consultations"),
            (self.insight_tab, "Insight"),
            (self.audit_tab, "Audit log"),
            (self.system_tab, "System"),
        ):
            self.tabs.addTab(widget, label)
        layout.addWidget(self.tabs)
        self.tabs.currentChanged.connect(lambda _i: self.refresh_current())

    @property
    def username(self) -> str:
        """The logged-in administrator's name."""
        return self.session.username if self.session else "unknown"

    def open(self, session: AdminSession) -> None:
        """Show the area for ``session``; every tab loads on the worker."""
        self.session = session
        self.tabs.setCurrentIndex(0)
        for tab in self._tabs():
            tab.refresh()

    def _tabs(self) -> list[Any]:
        return [
            self.faculty_tab,
            self.students_tab,
            self.desks_tab,
            self.consultations_tab,
            self.insight_tab,
            self.audit_tab,
            self.system_tab,
        ]

    def refresh_current(self) -> None:
        """Reload the visible tab."""
        if self.session is not None:
            self._tabs()[self.tabs.currentIndex()].refresh()

    def card_tapped(self, uid: str) -> bool:
        """A card tap while the admin area is open (student registration)."""
        return self.students_tab.card_tapped(uid)

    def close_session(self) -> None:
        """Forget the administrator."""
        self.session = None
        self.desks_tab.secret.setText("")
        self.students_tab.waiting_for_card = False
        self.students_tab.captured_uid = None
