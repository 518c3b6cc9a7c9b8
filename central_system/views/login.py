"""The login screens: "tap your card" for students and username/password for admins."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from .widgets import button, repolish, title


class LoginScreen(QWidget):
    """Students log in by tapping their card; there is no field to type a UID into."""

    admin_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("page")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(40, 30, 40, 30)
        layout.addStretch(2)
        heading = QLabel("Tap your card")
        heading.setObjectName("tapTitle")
        heading.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint = QLabel("Hold your student ID card against the reader to request a consultation.")
        hint.setObjectName("tapHint")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setWordWrap(True)
        self.message = QLabel("")
        self.message.setObjectName("loginMessage")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.hide()
        layout.addWidget(heading)
        layout.addSpacing(10)
        layout.addWidget(hint)
        layout.addSpacing(20)
        layout.addWidget(self.message)
        layout.addStretch(3)
        row = QHBoxLayout()
        row.addStretch(1)
        self.admin_button = button("Admin", "adminButton", "secondary")
        self.admin_button.clicked.connect(self.admin_requested.emit)
        row.addWidget(self.admin_button)
        layout.addLayout(row)

    def show_message(self, text: str, kind: str = "info") -> None:
        """Show a message under the title (``kind`` is info or error)."""
        self.message.setText(text)
        self.message.setProperty("kind", kind)
        repolish(self.message)
        self.message.setVisible(bool(text))

    def clear_message(self) -> None:
        """Hide the message."""
        self.show_message("")


class AdminLoginScreen(QWidget):
    """Username and password for administrators."""

    login_requested = Signal(str, str)
    new_password_chosen = Signal(str)
    back_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("page")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(200, 30, 200, 30)
        outer.addWidget(title("Administrator login"))
        outer.addSpacing(16)
        self.username = QLineEdit()
        self.username.setObjectName("adminUsername")
        self.username.setPlaceholderText("Username")
        self.password = QLineEdit()
        self.password.setObjectName("adminPassword")
        self.password.setPlaceholderText("Password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm = QLineEdit()
        self.confirm.setObjectName("adminPasswordConfirm")
        self.confirm.setPlaceholderText("Repeat the new password")
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm.hide()
        self.error = QLabel("")
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.changing = False
        outer.addWidget(self.username)
        outer.addSpacing(8)
        outer.addWidget(self.password)
        outer.addWidget(self.confirm)
        outer.addWidget(self.error)
        row = QHBoxLayout()
        self.back_button = button("Back", "adminBack", "secondary")
        self.login_button = button("Log in", "adminLoginButton")
        row.addWidget(self.back_button)
        row.addStretch(1)
        row.addWidget(self.login_button)
        outer.addLayout(row)
        outer.addStretch(1)
        self.back_button.clicked.connect(self.back_requested.emit)
        self.login_button.clicked.connect(self._submit)
        self.password.returnPressed.connect(self._submit)
        self.confirm.returnPressed.connect(self._submit)

    def require_new_password(self, message: str) -> None:
        """Switch to "choose a new password" (a temporary password must be replaced first)."""
        self.changing = True
        self.username.setEnabled(False)
        self.password.clear()
        self.password.setPlaceholderText("New password")
        self.confirm.clear()
        self.confirm.show()
        self.login_button.setText("Set password")
        self.login_button.setEnabled(True)
        self.error.setText(message)
        self.password.setFocus()

    def _submit(self) -> None:
        if self.changing:
            if self.password.text() != self.confirm.text():
                self.error.setText("The two passwords differ.")
                return
            if not self.password.text():
                self.error.setText("Choose a new password.")
                return
            self.error.setText("Saving…")
            self.login_button.setEnabled(False)
            self.new_password_chosen.emit(self.password.text())
            return
        user = self.username.text().strip()
        if not user or not self.password.text():
            self.error.setText("Enter your username and password.")
            return
        self.error.setText("Checking…")
        self.login_button.setEnabled(False)
        self.login_requested.emit(user, self.password.text())

    def show_error(self, text: str) -> None:
        """Show why the login failed and allow another try."""
        self.error.setText(text)
        self.password.clear()
        self.confirm.clear()
        self.login_button.setEnabled(True)

    def reset(self) -> None:
        """Clear every field (never keep a password around) and leave password-change mode."""
        self.changing = False
        self.username.setEnabled(True)
        self.username.clear()
        self.password.clear()
        self.password.setPlaceholderText("Password")
        self.confirm.clear()
        self.confirm.hide()
        self.login_button.setText("Log in")
        self.error.setText("")
        self.login_button.setEnabled(True)
