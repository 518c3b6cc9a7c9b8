"""The kiosk's on-screen keyboard, offscreen: it types into the focused field, and only there."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from central_system.views.keyboard import (
    BACKSPACE,
    ENTER,
    HIDE,
    SHIFT,
    SPACE,
    TO_LETTERS,
    TO_SYMBOLS,
    OnScreenKeyboard,
)
from tests.qt_touch import touch


class Window(QWidget):
    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        self.line = QLineEdit()
        self.text = QPlainTextEdit()
        self.readonly = QLineEdit("fixed")
        self.readonly.setReadOnly(True)
        self.button = QPushButton("Send")
        for w in (self.line, self.text, self.readonly, self.button):
            layout.addWidget(w)
        self.keyboard = OnScreenKeyboard(self)
        layout.addWidget(self.keyboard)


@pytest.fixture
def win(qtbot: Any) -> Window:
    w = Window()
    qtbot.addWidget(w)
    w.show()
    w.activateWindow()
    qtbot.waitExposed(w)
    return w


def tap(qtbot: Any, kb: OnScreenKeyboard, label: str) -> None:
    """Touch a key."""
    touch(qtbot, kb.keys[label])


def focus(qtbot: Any, widget: QWidget) -> None:
    """Touch a field (the press gives it the focus)."""
    touch(qtbot, widget)
    qtbot.waitUntil(widget.hasFocus, timeout=5000)


def test_touching_a_text_field_shows_it_and_keys_type_there(qtbot: Any, win: Window) -> None:
    kb = win.keyboard
    assert win.line.hasFocus() and not kb.isVisible()  # focus alone (window shown) does not
    focus(qtbot, win.line)
    qtbot.waitUntil(kb.isVisible, timeout=5000)
    for label in ("h", "i", SPACE, SHIFT, "a", "b"):
        tap(qtbot, kb, label)
    assert win.line.text() == "hi Ab"  # Shift makes one capital, then lets go
    assert not kb.shifted
    tap(qtbot, kb, BACKSPACE)
    assert win.line.text() == "hi A"
    assert win.line.hasFocus()  # the keys never take the focus

    tap(qtbot, kb, TO_SYMBOLS)
    assert kb.symbols
    for label in ("1", "&", "@", "\\"):
        tap(qtbot, kb, label)
    assert win.line.text() == "hi A1&@\\"
    assert kb.keys["&"].text() == "&&"  # shown as "&", not taken as a mnemonic
    tap(qtbot, kb, TO_LETTERS)
    assert not kb.symbols and "q" in kb.keys


def test_enter_submits_a_line_and_breaks_a_paragraph(qtbot: Any, win: Window) -> None:
    kb = win.keyboard
    submitted: list[str] = []
    win.line.returnPressed.connect(lambda: submitted.append(win.line.text()))
    focus(qtbot, win.line)
    tap(qtbot, kb, "o")
    tap(qtbot, kb, ENTER)
    assert submitted == ["o"]
    focus(qtbot, win.text)
    for label in ("a", ENTER, "b"):
        tap(qtbot, kb, label)
    assert win.text.toPlainText() == "a\nb"


def test_it_hides_for_buttons_read_only_fields_and_the_hide_key(qtbot: Any, win: Window) -> None:
    kb = win.keyboard
    focus(qtbot, win.line)
    qtbot.waitUntil(kb.isVisible, timeout=5000)
    tap(qtbot, kb, HIDE)
    assert not kb.isVisible() and win.line.hasFocus()
    touch(qtbot, win.line)  # touching the field that still has the focus brings it back
    qtbot.waitUntil(kb.isVisible, timeout=5000)
    tap(qtbot, kb, HIDE)
    focus(qtbot, win.text)
    qtbot.waitUntil(kb.isVisible, timeout=5000)
    focus(qtbot, win.button)
    qtbot.waitUntil(lambda: not kb.isVisible(), timeout=5000)
    focus(qtbot, win.readonly)
    assert not kb.isVisible()
    kb.press("x")  # nothing editable has the focus: nothing is typed anywhere
    assert win.readonly.text() == "fixed" and win.line.text() == "" and win.text.toPlainText() == ""


def test_a_touchscreen_touch_shows_it(qtbot: Any, win: Window) -> None:
    """A touch event (what eglfs delivers on the Pi), not only a mouse click, brings the keys up."""
    from PySide6.QtTest import QTest

    handle = win.windowHandle()
    device = QTest.createTouchDevice()
    where = win.text.mapTo(win, win.text.rect().center())
    QTest.touchEvent(handle, device).press(0, where, handle).commit()
    QTest.touchEvent(handle, device).release(0, where, handle).commit()
    qtbot.waitUntil(win.keyboard.isVisible, timeout=5000)
    assert win.text.hasFocus()
