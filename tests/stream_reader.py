"""An event stream (server-sent events) read in a thread until it ends: for tests that the
server ends a stream when its caller loses access (the API's and the web pages')."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any


class StreamReader(threading.Thread):
    """Reads the stream ``open_stream()`` opens (an httpx streaming response) until it
    ends; when it ended, its status and what it sent. Started and open on return."""

    def __init__(self, open_stream: Callable[[], AbstractContextManager[Any]]) -> None:
        super().__init__(daemon=True)
        self.open_stream = open_stream
        self.opened = threading.Event()
        self.status: int | None = None
        self.chunks: list[str] = []
        self.ended_at: float | None = None
        self.error: Exception | None = None
        self.start()
        assert self.opened.wait(15), "the stream never opened"
        assert self.status == 200, self.status

    def run(self) -> None:
        try:
            with self.open_stream() as r:
                self.status = r.status_code
                for chunk in r.iter_text():
                    self.chunks.append(chunk)
                    self.opened.set()
        except Exception as err:  # the test reads it
            self.error = err
        finally:
            self.ended_at = time.monotonic()
            self.opened.set()

    def ended_within(self, seconds: float, since: float) -> float:
        """How long after ``since`` (a monotonic time) it ended; fails past ``seconds``."""
        self.join(max(0.0, since + seconds - time.monotonic()))
        assert self.ended_at is not None, f"the stream is still open after {seconds} s"
        assert self.error is None, self.error
        took = self.ended_at - since
        assert took <= seconds, took
        return took

    def keeps_going(self, seconds: float) -> None:
        """Still open ``seconds`` later, and it heard something meanwhile (keepalives)."""
        seen = len(self.chunks)
        time.sleep(seconds)
        assert self.is_alive() and self.ended_at is None
        assert len(self.chunks) > seen
