"""A touch in offscreen Qt tests: a click delivered to the window, as a finger's is.

QTest's widget overload sends straight to the widget and skips the window, where the
kiosk watches input (auto-logout, the on-screen keyboard).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt


def touch(qtbot: Any, widget: Any) -> None:
    """Press and release at the centre of ``widget``, through its top-level window."""
    win = widget.window()
    qtbot.mouseClick(
        win.windowHandle(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        widget.mapTo(win, widget.rect().center()),
    )
