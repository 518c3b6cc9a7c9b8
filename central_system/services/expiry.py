"""The expiry sweep: every few seconds, pending requests past their time expire.

A thin timer around :meth:`ConsultationController.expire_due`; the policy (how long,
the daily cut-off) lives in :class:`~central_system.controllers.queue_controller.ExpiryPolicy`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class ExpiryService:
    """Calls ``expire_due()`` every ``interval_s`` seconds on its own thread (and once at start)."""

    def __init__(self, expire_due: Callable[[], int], interval_s: float) -> None:
        self._expire_due = expire_due
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sweeps = 0

    def start(self) -> None:
        """Start the sweep thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="consultation-expiry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sweep thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def sweep(self) -> int:
        """One sweep now; returns how many requests expired (errors are logged, not raised)."""
        try:
            return self._expire_due()
        except Exception:
            logger.exception("expiry sweep failed")
            return 0
        finally:
            self.sweeps += 1

    def _run(self) -> None:
        self.sweep()
        while not self._stop.wait(self.interval_s):
            self.sweep()
