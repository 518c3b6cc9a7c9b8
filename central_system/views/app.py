"""Assembles the kiosk: bridge, task manager, backend and window on top of a built ``System``."""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

from PySide6.QtCore import QMessageLogContext, QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication

from ..kiosk.calls import KioskCalls
from ..services.rfid import RFIDReader
from .bridge import MqttBridge
from .context import KioskContext
from .main_window import KioskWindow, SimulatedReaderPanel
from .worker import TaskManager

logger = logging.getLogger(__name__)

# CPython's GIL switch interval while the kiosk runs (default 0.005 s).
KIOSK_GIL_SWITCH_INTERVAL_S = 0.001
# Generation-1 collections between two full collections (CPython's default is 10).
KIOSK_GC_FULL_THRESHOLD = 100


# Qt messages that tell a user nothing: the offscreen platform (headless demo, tests,
# screenshots) prints this for every window; it cannot pass size hints to a window manager
# it does not have, and needs none.
QT_NOISE: tuple[str, ...] = ("This plugin does not support propagateSizeHints()",)


def _qt_message(mode: QtMsgType, context: QMessageLogContext, message: str) -> None:
    """Drop :data:`QT_NOISE`; everything else goes to stderr as Qt would print it."""
    if message in QT_NOISE:
        return
    if _previous_handler is not None:
        _previous_handler(mode, context, message)
    else:
        sys.stderr.write(message + "\n")


_previous_handler: Any = None


def ensure_qapp(argv: list[str] | None = None) -> QApplication:
    """The process's QApplication (created once); Qt's noise messages are silenced."""
    global _previous_handler
    app = QApplication.instance()
    if app is None:
        _previous_handler = qInstallMessageHandler(_qt_message)
        app = QApplication(argv or ["consultease"])
    assert isinstance(app, QApplication)
    return app


class Kiosk:
    """The kiosk window wired to a running ``System`` and a card reader."""

    def __init__(
        self, system: Any, reader: RFIDReader, *, backend: KioskCalls | None = None
    ) -> None:
        """``Kiosk(None, reader, backend=ApiBackend…)`` is a client of the server's API
        (what ``consultease run`` and the demo do); ``Kiosk(system, reader)`` runs the
        controllers in this process (fast offscreen tests only, not a setting)."""
        if system is None and backend is None:
            raise ValueError("a Kiosk needs a system or a backend")
        self.system = system
        self.reader = reader
        self.bridge = MqttBridge()
        self.taskman = TaskManager()
        if backend is None:
            # Tests only: the controllers in this process (the one import of a controller
            # in views/, named in pyproject.toml's contract for the screens).
            from ..controllers.kiosk_facade import KioskBackend

            backend = KioskBackend(system)
            settings = system.settings
        else:
            settings = system.settings if system is not None else backend.settings  # type: ignore[attr-defined]
        self.backend: KioskCalls = backend
        self.ctx = KioskContext(self.backend, self.taskman, self.bridge, settings)
        self.window = KioskWindow(self.ctx)
        self.sim_panel: SimulatedReaderPanel | None = None
        # Reader and controller callbacks run on their own threads; the bridge queues them to Qt.
        self._remove_reader = reader.add_callback(self.bridge.on_card)
        self.backend.connect_events(self.bridge)
        reader.start()
        # Everything built so far (models, metadata, widgets) lives as long as the kiosk:
        # move it out of the collector's sight so a full collection, which holds the GIL
        # and so stalls the Qt thread, only walks what was allocated since.
        gc.collect()
        gc.freeze()
        # A full (generation 2) collection walks every live object allocated since the
        # freeze (10,000 publish handles in a burst) with the GIL held: 10-30 ms of frozen
        # screen. Run it ten times less often than CPython's default; the cheap young
        # collections (generations 0 and 1) keep their default pace.
        self._gc_threshold = gc.get_threshold()
        gc.set_threshold(self._gc_threshold[0], self._gc_threshold[1], KIOSK_GC_FULL_THRESHOLD)
        # The service's threads run Python too; hand the GIL back to the Qt thread sooner
        # than CPython's default 5 ms so a burst of MQTT work does not delay a touch.
        sys.setswitchinterval(KIOSK_GIL_SWITCH_INTERVAL_S)

    def show(self, fullscreen: bool = False) -> None:
        """Show the window (fullscreen on the kiosk's touchscreen)."""
        if fullscreen:
            self.window.showFullScreen()
        else:
            self.window.show()

    def show_simulated_reader(self, cards: list[tuple[str, str]]) -> SimulatedReaderPanel:
        """Demo only: the demo's cards in a panel inside the window, open at first."""
        self.sim_panel = SimulatedReaderPanel(self.reader, cards, self.window)
        self.sim_panel.set_open(True)
        return self.sim_panel

    def close(self) -> None:
        """Detach from the system and the reader, stop the worker, close the windows."""
        self.backend.disconnect_events()
        self._remove_reader()
        self.reader.stop()
        self.taskman.shutdown()
        gc.set_threshold(*self._gc_threshold)
        self.window.close()
