"""Sub-commands of the ``consultease`` CLI, one module each, and the helper they share."""

from __future__ import annotations

import signal
from collections.abc import Callable


def install_signal_handlers(on_signal: Callable[[], object]) -> None:
    """Run ``on_signal()`` on SIGINT/SIGTERM (clean shutdown under systemd)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: on_signal())
