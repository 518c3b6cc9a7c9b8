"""The kiosk window: header, screens, card routing and auto-logout."""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QWindow
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..api.errors import KioskError
from ..api.schemas import AdminSession, FacultyView, StudentView
from .admin import AdminArea
from .context import KioskContext
from .keyboard import OnScreenKeyboard
from .login import AdminLoginScreen, LoginScreen
from .student import DashboardScreen, MyConsultationsScreen, RequestFormScreen
from .widgets import button, load_stylesheet, repolish

logger = logging.getLogger(__name__)

KIOSK_SIZE = (1024, 600)
# How often the inactivity countdown is re-evaluated.
INACTIVITY_TICK_MS = 250
# A routine failover to the standby server takes about 3 s: for this long an outage of the
# central system reads "Reconnecting…"; only one that lasts asks for an administrator.
OUTAGE_CALM_MS = 20_000
RECONNECTING = "Reconnecting to the central system…"
UNAVAILABLE = "Central system unavailable, retrying. Please call an administrator."

_ACTIVITY_EVENTS = frozenset(
    {
        QEvent.Type.MouseButtonPress,
        QEvent.Type.KeyPress,
        QEvent.Type.TouchBegin,
        QEvent.Type.TouchUpdate,
        QEvent.Type.Wheel,
    }
)


class InactivityMonitor(QObject):
    """Counts down from the last touch; warns, then asks for logout."""

    warn = Signal(int)  # seconds left
    clear_warning = Signal()
    timed_out = Signal()

    def __init__(self, timeout_s: float, warning_s: float, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.timeout_s = float(timeout_s)
        self.warning_s = float(warning_s)
        self._last = time.monotonic()
        self._active = False
        self._warning = False
        self._timer = QTimer(self)
        self._timer.setInterval(INACTIVITY_TICK_MS)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        """Begin counting (a session started)."""
        self._active = True
        self.touch()
        self._timer.start()

    def stop(self) -> None:
        """Stop counting (no session)."""
        self._active = False
        self._timer.stop()
        if self._warning:
            self._warning = False
            self.clear_warning.emit()

    def touch(self) -> None:
        """The user did something: restart the countdown."""
        self._last = time.monotonic()
        if self._warning:
            self._warning = False
            self.clear_warning.emit()

    def watch(self, window: QWidget) -> None:
        """Count input to ``window`` and to every window that gets focus later (popups, dialogs)."""
        window.winId()  # creates the native window now, so its QWindow exists to be filtered
        handle = window.windowHandle()
        if handle is not None:
            handle.installEventFilter(self)
        app = QGuiApplication.instance()
        if isinstance(app, QGuiApplication):
            app.focusWindowChanged.connect(self._watch_window)

    def _watch_window(self, window: QWindow | None) -> None:
        # Installing the same filter twice is harmless (Qt keeps one).
        if window is not None:
            window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self._active and event.type() in _ACTIVITY_EVENTS:
            self.touch()
        return False

    def _tick(self) -> None:
        if not self._active:
            return
        left = self.timeout_s - (time.monotonic() - self._last)
        if left <= 0:
            self.stop()
            self.timed_out.emit()
        elif left <= self.warning_s:
            self._warning = True
            self.warn.emit(int(left + 0.999))


class KioskWindow(QMainWindow):
    """The kiosk: login, student screens and the admin area in one stacked widget."""

    def __init__(self, ctx: KioskContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.student: StudentView | None = None
        self.admin: AdminSession | None = None
        self.setWindowTitle("ConsultEase")
        self.resize(*KIOSK_SIZE)
        self.setStyleSheet(load_stylesheet())
        central = QWidget()
        central.setObjectName("page")
        root = QVBoxLayout(central)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(0)
        root.addWidget(self._build_header())
        self.warning = QLabel("")
        self.warning.setObjectName("logoutWarning")
        self.warning.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.warning.hide()
        root.addWidget(self.warning)
        self.stack = QStackedWidget()
        root.addWidget(self.stack, 1)
        # Docked under the screens; shown while a text field has focus (a touchscreen has no keys).
        self.keyboard: OnScreenKeyboard | None = None
        if getattr(ctx.settings, "kiosk_onscreen_keyboard", True):
            self.keyboard = OnScreenKeyboard(self)
            root.addWidget(self.keyboard)
            self.keyboard.shown_for.connect(self._keep_visible)
        self.setCentralWidget(central)

        self._pages: dict[QWidget, QScrollArea] = {}
        self.login = LoginScreen()
        self.admin_login = AdminLoginScreen()
        self.dashboard = DashboardScreen(ctx)
        self.request_form = RequestFormScreen(ctx)
        self.my_consultations = MyConsultationsScreen(ctx)
        self.admin_area = AdminArea(ctx)
        for screen in (
            self.login,
            self.admin_login,
            self.dashboard,
            self.request_form,
            self.my_consultations,
            self.admin_area,
        ):
            # Each screen scrolls when it does not fit (the on-screen keyboard takes the
            # bottom third of a 600 px screen); without the keyboard nothing scrolls.
            page = QScrollArea()
            page.setObjectName("screenScroll")
            page.setWidgetResizable(True)
            page.setFrameShape(QFrame.Shape.NoFrame)
            page.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            page.setWidget(screen)
            self._pages[screen] = page
            self.stack.addWidget(page)

        self.login.admin_requested.connect(self.show_admin_login)
        self.admin_login.back_requested.connect(self.logout)
        self.admin_login.login_requested.connect(self._admin_login)
        self.admin_login.new_password_chosen.connect(self._change_admin_password)
        self._pending_admin: tuple[AdminSession, str] | None = None
        self.dashboard.request_faculty.connect(self.show_request_form)
        self.dashboard.show_my_consultations.connect(self.show_my_consultations)
        self.request_form.back_requested.connect(self.show_dashboard)
        self.request_form.show_my_consultations.connect(self.show_my_consultations)
        self.my_consultations.back_requested.connect(self.show_dashboard)

        settings = ctx.settings
        self.inactivity = InactivityMonitor(
            settings.kiosk_inactivity_timeout_s, settings.kiosk_logout_warning_s, self
        )
        self.inactivity.warn.connect(self._show_warning)
        self.inactivity.clear_warning.connect(self.warning.hide)
        self.inactivity.timed_out.connect(self._timed_out)
        # Watch the kiosk's top-level windows, not the whole application: input from the
        # touchscreen reaches a window before any widget, while an application-wide Python
        # filter ran (and took the GIL) for every paint, timer and layout event of every
        # widget, thousands a second with 200 faculty cards: that made the Qt thread wait.
        self.inactivity.watch(self)

        ctx.bridge.card_tapped.connect(self.on_card)
        ctx.bridge.mqtt_state_changed.connect(self._set_mqtt_state)
        self._set_mqtt_state(ctx.backend.mqtt_state)
        self.show_login()

    # ------------------------------------------------------------------ header

    def _build_header(self) -> QWidget:
        header = QWidget()
        header.setObjectName("header")
        header.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        header.setFixedHeight(64)
        row = QHBoxLayout(header)
        row.setContentsMargins(16, 6, 16, 6)
        app_title = QLabel("ConsultEase")
        app_title.setObjectName("appTitle")
        row.addWidget(app_title)
        row.addSpacing(20)
        self.user_label = QLabel("")
        self.user_label.setObjectName("userLabel")
        row.addWidget(self.user_label, 1)
        self.mqtt_label = QLabel("")
        self.mqtt_label.setObjectName("mqttState")
        row.addWidget(self.mqtt_label)
        self.logout_button = button("Log out", "logoutButton")
        self.logout_button.clicked.connect(self.logout)
        row.addWidget(self.logout_button)
        self.header_row = row  # the demo puts its card reader's button here
        self.header = header
        self._outage_timer = QTimer(self)
        self._outage_timer.setSingleShot(True)
        self._outage_timer.timeout.connect(self._outage_lasts)
        self._outage_long = False
        return header

    def _set_mqtt_state(self, state: str) -> None:
        text = {
            "connected": "Desks: connected",
            "connecting": "Desks: connecting…",
            "disconnected": "Desks: reconnecting…",
            # The service stopped retrying: only an administrator can fix the credentials.
            "auth_failed": "Desks: broker refused the kiosk's login. Please call an administrator.",
            "stopped": "Desks: offline",
            # Another server uses this kiosk's database (kiosk.local_server, docs 10a):
            # a setting to change, so no "retrying"; the child's line in the log names the
            # setting, a public screen only asks for an administrator.
            "backend_refused": "Not set up: this kiosk must be connected to the central "
            "server. Please call an administrator.",
            # The kiosk's own server child died and is being restarted (kiosk.local_server).
            "backend_down": "Central system restarting… Please wait a moment.",
            "starting": "Starting…",
            # The details are in the log: a public screen shows no internals.
            "backend_failed": UNAVAILABLE if self._outage_long else RECONNECTING,
        }.get(state, f"Desks: {state}")
        if state != "backend_failed":
            self._outage_timer.stop()
            self._outage_long = False
        elif not self._outage_long and not self._outage_timer.isActive():
            self._outage_timer.start(OUTAGE_CALM_MS)  # the reader repeats the state: once
        self.mqtt_label.setText(text)
        self.mqtt_label.setProperty("state", state)
        repolish(self.mqtt_label)

    def _outage_lasts(self) -> None:
        """The central system has been unreachable for OUTAGE_CALM_MS: ask for help."""
        self._outage_long = True
        if self.mqtt_label.property("state") == "backend_failed":
            self.mqtt_label.setText(UNAVAILABLE)

    # ------------------------------------------------------------------ navigation

    def current_screen(self) -> QWidget | None:
        """The screen on show."""
        page = self.stack.currentWidget()
        return page.widget() if isinstance(page, QScrollArea) else page

    def _show_screen(self, screen: QWidget) -> None:
        if self.keyboard is not None:
            self.keyboard.hide()  # a new screen starts without keys (the request form asks again)
        self.stack.setCurrentWidget(self._pages[screen])

    def _keep_visible(self, field: QWidget) -> None:
        """Scroll the focused field into view above the on-screen keyboard."""
        page = self.stack.currentWidget()
        if isinstance(page, QScrollArea) and page.isAncestorOf(field):
            page.ensureWidgetVisible(field, 10, 10)

    def show_login(self, message: str = "", kind: str = "info") -> None:
        """The "tap your card" screen."""
        self.user_label.setText("")
        self.logout_button.hide()
        if self.keyboard is not None:
            self.keyboard.hide()
        self.login.show_message(message, kind)
        self._show_screen(self.login)

    def show_admin_login(self) -> None:
        """Username/password screen (a session: it times out too)."""
        self.admin_login.reset()
        self.logout_button.hide()
        self._show_screen(self.admin_login)
        self.inactivity.start()
        self.admin_login.username.setFocus()

    def show_dashboard(self) -> None:
        """The faculty dashboard of the logged-in student."""
        if self.student is None:
            self.show_login()
            return
        self._show_screen(self.dashboard)
        self.dashboard.refresh()

    def show_request_form(self, faculty: FacultyView) -> None:
        """The request form for ``faculty``."""
        if self.student is None:
            return
        self.request_form.start(self.student, faculty)
        self._show_screen(self.request_form)
        # The student came here to type: the message field and the keys are ready.
        self.request_form.message_edit.setFocus()
        if self.keyboard is not None:
            self.keyboard.show_for(self.request_form.message_edit)

    def show_my_consultations(self) -> None:
        """The student's consultations."""
        if self.student is None:
            return
        self.my_consultations.load(self.student)
        self._show_screen(self.my_consultations)

    # ------------------------------------------------------------------ sessions

    def on_card(self, uid: str) -> None:
        """Route a card tap: admin registration, else login (on the login screen only)."""
        if self.admin is not None and self.current_screen() is self.admin_area:
            if self.admin_area.card_tapped(uid):
                self.inactivity.touch()
            return
        if self.student is not None or self.current_screen() is not self.login:
            return  # someone is using the kiosk; a stray tap does not switch users
        self.login.show_message("Checking your card…", "info")
        self.ctx.run(lambda b: b.login_by_card(uid), self._card_checked, self._card_failed)

    def _card_checked(self, student: StudentView | None) -> None:
        if student is None:
            self.login.show_message(
                "This card is not registered. Please ask the office to register your card.",
                "error",
            )
            return
        self.student = student
        self.user_label.setText(f"{student.name}  ·  {student.student_id}")
        self.logout_button.show()
        self.login.clear_message()
        self.dashboard.reset()
        self.inactivity.start()
        self.show_dashboard()

    def _card_failed(self, err: BaseException) -> None:
        logger.error("card lookup failed: %s", err)
        self.login.show_message(
            "The card could not be checked right now. Please try again.", "error"
        )

    def _admin_login(self, username: str, password: str) -> None:
        def ok(session: AdminSession) -> None:
            if session.must_change_password:
                self._pending_admin = (session, password)
                self.admin_login.require_new_password(
                    "Your password is temporary: choose a new one to continue."
                )
                return
            self._open_admin(session)

        def failed(err: BaseException) -> None:
            text = str(err) if isinstance(err, KioskError) else "Login failed. Please try again."
            self.admin_login.show_error(text)

        self.ctx.run(lambda b: b.admin_login(username, password), ok, failed)

    def _change_admin_password(self, new_password: str) -> None:
        if self._pending_admin is None:
            return
        session, current = self._pending_admin

        def ok(_: object) -> None:
            self._pending_admin = None
            self._open_admin(session)

        def failed(err: BaseException) -> None:
            text = str(err) if isinstance(err, KioskError) else "The password could not be changed."
            self.admin_login.error.setText(text)
            self.admin_login.login_button.setEnabled(True)

        self.ctx.run(
            lambda b: b.change_admin_password(session.username, current, new_password), ok, failed
        )

    def _open_admin(self, session: AdminSession) -> None:
        self.admin = session
        self.admin_login.reset()
        self.user_label.setText(f"Administrator: {session.username}")
        self.logout_button.show()
        self._show_screen(self.admin_area)
        self.admin_area.open(session)
        self.inactivity.start()

    def logout(self, message: str = "") -> None:
        """End any session and return to "tap your card"."""
        self.student = None
        self.admin = None
        self._pending_admin = None  # forget a temporary password that was never replaced
        self.inactivity.stop()
        self.warning.hide()
        self.admin_area.close_session()
        self.admin_login.reset()
        self.my_consultations.clear()
        self.show_login(message if isinstance(message, str) else "")

    def _show_warning(self, seconds: int) -> None:
        self.warning.setText(f"No activity: logging out in {seconds} s. Touch the screen to stay.")
        self.warning.show()

    def _timed_out(self) -> None:
        self.logout("You were logged out after a period of inactivity.")

    def closeEvent(self, event: Any) -> None:
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self.inactivity)
        super().closeEvent(event)


class SimulatedReaderPanel(QFrame):
    """Demo only: the demo's cards on a simulated reader, inside the kiosk window.

    A "Card reader" button in the header opens the panel over the top-right corner of
    the screens; tapping a card closes it. Being part of the kiosk window, it is on
    screen wherever the window is (a separate window opened beside a 1024 px wide
    kiosk lands off a 1024x600 screen).
    """

    MARGIN = 8
    WIDTH = 340

    def __init__(self, reader: Any, cards: list[tuple[str, str]], window: KioskWindow) -> None:
        super().__init__(window)
        self.window_ = window
        self.setObjectName("simReader")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        heading = QLabel("Simulated card reader (demo)")
        heading.setObjectName("simReaderTitle")
        layout.addWidget(heading)
        layout.addWidget(QLabel("Tap a card:"))
        self.card_buttons: list[Any] = []
        for label, uid in cards:
            b = button(label, None, "secondary")
            b.setProperty("uid", uid)
            b.clicked.connect(lambda _=False, u=uid: self._tap(reader, u))
            layout.addWidget(b)
            self.card_buttons.append(b)
        self.toggle = button("Card reader", "simReaderToggle", "secondary")
        self.toggle.setToolTip("Demo: tap a student card on a simulated reader")
        self.toggle.clicked.connect(lambda: self.set_open(not self.isVisible()))
        # In the header, left of the broker state: always reachable, covers nothing.
        window.header_row.insertWidget(window.header_row.indexOf(window.mqtt_label), self.toggle)
        self.toggle.show()  # added to a window that may already be on screen
        window.installEventFilter(self)
        self.hide()

    def set_open(self, open_: bool) -> None:
        """Show the cards over the screens (or hide them)."""
        if open_:
            self.place()
            self.show()
            self.raise_()
        else:
            self.hide()

    def place(self) -> None:
        """Anchor to the window's top-right corner, under the header, inside the window."""
        win = self.window_
        self.setFixedWidth(min(self.WIDTH, win.width() - 2 * self.MARGIN))
        self.adjustSize()
        top = win.header.mapTo(win, QPoint(0, win.header.height())).y() + self.MARGIN
        height = min(self.sizeHint().height(), max(0, win.height() - top - self.MARGIN))
        self.setGeometry(win.width() - self.width() - self.MARGIN, top, self.width(), height)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window_ and event.type() == QEvent.Type.Resize and self.isVisible():
            self.place()
        return False

    def _tap(self, reader: Any, uid: str) -> None:
        reader.tap(uid)
        self.hide()  # the screen the card leads to is not covered
