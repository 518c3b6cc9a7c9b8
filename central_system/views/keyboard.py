"""The kiosk's on-screen keyboard: a touchscreen has no keys.

A student writes the request message and an administrator logs in at the kiosk
itself, usually with no keyboard attached. :class:`OnScreenKeyboard` is docked
under the screens and appears when a text field is touched (or a screen asks for
it, :meth:`OnScreenKeyboard.show_for`), and hides when the focus moves to anything
else. Its keys never take focus: each press is delivered to the focused field
as the key event a physical keyboard would send, so validation, character counts
and Enter-to-submit work unchanged. Two layers: letters (Shift for one capital)
and digits/symbols (``?123``).

It never types into anything but a text field, and it never sees a card: the RFID
reader is grabbed by evdev and its digits go to the reader, not to Qt.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QGridLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTextEdit,
    QWidget,
)

BACKSPACE = "⌫"
ENTER = "⏎"
SHIFT = "⇧"
SPACE = "space"
HIDE = "Hide"
TO_SYMBOLS = "?123"
TO_LETTERS = "ABC"

# Each row: (label, column span). Eleven columns.
_LETTERS: list[list[tuple[str, int]]] = [
    [*((c, 1) for c in "qwertyuiop"), (BACKSPACE, 1)],
    [*((c, 1) for c in "asdfghjkl'"), (ENTER, 1)],
    [(SHIFT, 1), *((c, 1) for c in "zxcvbnm,.?")],
    [(TO_SYMBOLS, 2), ("@", 1), (SPACE, 5), ("-", 1), (HIDE, 2)],
]
_SYMBOLS: list[list[tuple[str, int]]] = [
    [*((c, 1) for c in "1234567890"), (BACKSPACE, 1)],
    [*((c, 1) for c in "!#$%&*()/:"), (ENTER, 1)],
    [*((c, 1) for c in '_=+;"<>[]~'), ("\\", 1)],
    [(TO_LETTERS, 2), ("@", 1), (SPACE, 5), ("-", 1), (HIDE, 2)],
]

TEXT_INPUTS = (QLineEdit, QPlainTextEdit, QTextEdit, QAbstractSpinBox)


def is_text_input(widget: QWidget | None) -> bool:
    """A widget the keyboard types into (an editable text field)."""
    if widget is None or not isinstance(widget, TEXT_INPUTS):
        return False
    if isinstance(widget, (QLineEdit, QPlainTextEdit, QTextEdit)):
        return not widget.isReadOnly()
    return True


class OnScreenKeyboard(QWidget):
    """Touch keys that type into the focused text field of ``window``."""

    #: the text field the keyboard was shown for (after layout: scroll it into view)
    shown_for = Signal(QWidget)

    def __init__(self, window: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("keyboard")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._window = window
        self._shift = False
        self._symbols = False
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(6, 6, 6, 6)
        self._grid.setSpacing(4)
        self.keys: dict[str, QPushButton] = {}
        self._build()
        self.hide()
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.focusChanged.connect(self._focus_changed)
        # Touches reach the window before any widget: watching the window (a few events
        # per touch) finds a touch on a text field even when it already had the focus, and
        # a screen that merely puts the focus in its search box does not pop the keys up.
        window.winId()  # creates the native window, so its QWindow exists to be filtered
        handle = window.windowHandle()
        if handle is not None:
            handle.installEventFilter(self)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        while (item := self._grid.takeAt(0)) is not None:
            widget = item.widget()
            if widget is not None:
                widget.deleteLater()
        self.keys = {}
        for r, row in enumerate(_SYMBOLS if self._symbols else _LETTERS):
            col = 0
            for label, span in row:
                key = QPushButton(self._key_text(label))
                key.setObjectName("key")
                key.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the text field keeps the focus
                key.setAutoRepeat(label == BACKSPACE)
                key.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
                if label in (SHIFT, TO_SYMBOLS, TO_LETTERS, HIDE, ENTER, BACKSPACE):
                    key.setProperty("special", True)
                if label == SHIFT:
                    key.setCheckable(True)
                    key.setChecked(self._shift)
                key.clicked.connect(lambda _=False, k=label: self.press(k))
                self._grid.addWidget(key, r, col, 1, span)
                self.keys[label] = key
                col += span

    def _caption(self, label: str) -> str:
        if self._shift and len(label) == 1 and label.isalpha():
            return label.upper()
        return label

    def _key_text(self, label: str) -> str:
        # A button shows "&" only as "&&" (a single one marks a mnemonic).
        return self._caption(label).replace("&", "&&")

    def _relabel(self) -> None:
        for label, key in self.keys.items():
            key.setText(self._key_text(label))
            if label == SHIFT:
                key.setChecked(self._shift)

    # ------------------------------------------------------------------ typing

    @property
    def shifted(self) -> bool:
        """The next letter will be a capital."""
        return self._shift

    @property
    def symbols(self) -> bool:
        """The digits/symbols layer is shown."""
        return self._symbols

    def target(self) -> QWidget | None:
        """The focused text field of the kiosk's window, if any."""
        widget = QApplication.focusWidget()
        if is_text_input(widget) and widget is not None and widget.window() is self._window:
            return widget
        return None

    def press(self, label: str) -> None:
        """What a tap on the key ``label`` does."""
        if label == SHIFT:
            self._shift = not self._shift
            self._relabel()
            return
        if label in (TO_SYMBOLS, TO_LETTERS):
            self._symbols = label == TO_SYMBOLS
            self._shift = False
            self._build()
            return
        if label == HIDE:
            self.hide()
            return
        target = self.target()
        if target is None:
            return
        if label == BACKSPACE:
            self._send(target, Qt.Key.Key_Backspace, "")
        elif label == ENTER:
            self._send(target, Qt.Key.Key_Return, "\r")
        else:
            text = " " if label == SPACE else self._caption(label)
            self._send(target, Qt.Key.Key_unknown, text)
            if self._shift:
                self._shift = False  # one capital, as on a phone
                self._relabel()

    @staticmethod
    def _send(target: QWidget, key: Qt.Key, text: str) -> None:
        for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            QApplication.sendEvent(
                target, QKeyEvent(kind, key, Qt.KeyboardModifier.NoModifier, text)
            )

    # ------------------------------------------------------------------ show / hide

    def show_for(self, field: QWidget) -> None:
        """Show the keyboard for ``field`` and scroll it into view (a screen that starts typing)."""
        self.show()
        # After the layout has made room for the keyboard.
        QTimer.singleShot(0, lambda: self.shown_for.emit(field))

    def _focus_changed(self, _old: QWidget | None, new: QWidget | None) -> None:
        if new is not None and new.window() is self._window and not is_text_input(new):
            self.hide()  # focus moved to a button or a list: nothing to type into

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """A touch released on a text field shows the keyboard for it (the window's events only)."""
        if event.type() == QEvent.Type.MouseButtonRelease and isinstance(event, QMouseEvent):
            widget = self._window.childAt(event.position().toPoint())
            while widget is not None and not is_text_input(widget):
                if widget is self:
                    return False  # a key: it types, it does not re-show
                widget = widget.parentWidget()
            if widget is not None:
                self.show_for(widget)
        return False
