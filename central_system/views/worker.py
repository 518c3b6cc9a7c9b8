"""The kiosk's task manager: controller calls run on one background thread, never on Qt's.

Modelled on Anki's ``aqt.taskman``: ``run(fn, on_success, on_failure)`` submits
``fn`` to a single worker thread (one thread serialises database access), and the
result comes back to the Qt thread through a queued signal, where the callback
runs. Nothing on the Qt thread ever waits on a future.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

logger = logging.getLogger(__name__)

SuccessCallback = Callable[[Any], None]
FailureCallback = Callable[[BaseException], None]
_Done = tuple[Future[Any], SuccessCallback | None, FailureCallback | None]

# Qt-thread time one batch of callbacks may take before yielding to the event loop.
DELIVER_BUDGET_S = 0.002


class TaskManager(QObject):
    """Runs callables on one worker thread; delivers results on the Qt thread."""

    _finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kiosk-worker")
        self._pending = 0
        self._lock = threading.Lock()
        self._closed = False
        # Finished tasks wait here; one queued signal wakes the Qt thread for all of them
        # (one signal per task made 200 quick tasks post 200 Qt events carrying Python
        # objects, and the Qt thread stalled for tens of ms, issue 4).
        self._done: deque[_Done] = deque()
        self._wake_scheduled = False
        self._finished.connect(self._deliver_all, Qt.ConnectionType.QueuedConnection)

    @property
    def pending(self) -> int:
        """Tasks submitted whose callback has not run yet."""
        return self._pending

    def run(
        self,
        fn: Callable[[], Any],
        on_success: SuccessCallback | None = None,
        on_failure: FailureCallback | None = None,
    ) -> None:
        """Run ``fn()`` on the worker; then ``on_success(result)`` or ``on_failure(exc)`` on the Qt thread."""
        if self._closed:
            return
        with self._lock:
            self._pending += 1
        future = self._executor.submit(fn)
        # The done-callback runs on the worker thread; the signal hops to the Qt thread.
        future.add_done_callback(lambda f: self._emit_finished(f, on_success, on_failure))

    def _emit_finished(
        self,
        future: Future[Any],
        on_success: SuccessCallback | None,
        on_failure: FailureCallback | None,
    ) -> None:
        if self._closed:
            return
        with self._lock:
            self._done.append((future, on_success, on_failure))
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        with contextlib.suppress(RuntimeError):  # the QObject is gone (shutdown)
            self._finished.emit()

    def _deliver_all(self) -> None:
        """Run the waiting callbacks in order, yielding to the event loop every ~2 ms."""
        deadline = time.monotonic() + DELIVER_BUDGET_S
        while True:
            with self._lock:
                if not self._done:
                    self._wake_scheduled = False
                    return
                item = self._done.popleft()
            self._deliver(item)
            if time.monotonic() >= deadline:
                break
        QTimer.singleShot(0, self._deliver_all)

    def _deliver(self, item: _Done) -> None:
        future, on_success, on_failure = item
        with self._lock:
            self._pending -= 1
        try:
            if future.cancelled():
                return
            err = future.exception()  # the future is done: this does not wait
            if err is not None:
                if on_failure is not None:
                    on_failure(err)
                else:
                    logger.error("background task failed", exc_info=err)
            elif on_success is not None:
                on_success(future.result())
        except RuntimeError as err:
            # A callback touching a widget that was deleted meanwhile (logout during a task).
            logger.debug("task callback skipped: %s", err)
        except Exception:
            logger.exception("task callback failed")

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting work; let the running task finish (bounded), drop queued ones."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        for thread in list(getattr(self._executor, "_threads", ())):
            thread.join(timeout)
