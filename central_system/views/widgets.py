"""Small shared widgets and helpers of the kiosk screens."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QWidget

STYLESHEET_PATH = Path(__file__).with_name("kiosk.qss")


def load_stylesheet() -> str:
    """The kiosk's one QSS stylesheet."""
    return STYLESHEET_PATH.read_text(encoding="utf-8")


def repolish(widget: QWidget) -> None:
    """Re-apply the stylesheet after a dynamic property changed."""
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)


class StatusPill(QLabel):
    """A coloured label for a faculty availability or a consultation status."""

    def __init__(self, status: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusPill")
        self.set_status(status)

    def set_status(self, status: str) -> None:
        """Show ``status`` (and colour it through the ``status`` property)."""
        if self.property("status") == status and self.text():
            return
        self.setProperty("status", status)
        self.setText(status.capitalize() if status else "")
        if self.testAttribute(Qt.WidgetAttribute.WA_WState_Polished):
            repolish(self)  # not yet polished: the first polish reads the property anyway

    def status(self) -> str:
        """The status shown."""
        return str(self.property("status") or "")


def button(text: str, name: str | None = None, style: str | None = None) -> QPushButton:
    """A touch-sized push button."""
    b = QPushButton(text)
    if name:
        b.setObjectName(name)
    if style:
        b.setProperty("flat-style", style)
    return b


def title(text: str) -> QLabel:
    """A screen title."""
    label = QLabel(text)
    label.setObjectName("screenTitle")
    return label


def fmt_time(value: datetime | None) -> str:
    """A local, short time for tables (``-`` when unknown)."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
