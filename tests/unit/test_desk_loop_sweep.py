"""The desk simulator's loop gives every desk its keepalive call, a slice per iteration (issue 15).

One sweep over 10,000 desks in a single iteration held every desk's traffic up for
over 100 ms once a second, and the benchmark counted that as the central system's
latency.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from faculty_desk_unit.loop import MISC_SLICE, NetworkLoop


class _Desk:
    def __init__(
        self, loop: NetworkLoop, calls: Counter[int], done: threading.Event, n: int
    ) -> None:
        self.loop, self.calls, self.done, self.n = loop, calls, done, n

    def handle_read(self) -> None: ...

    def handle_write(self) -> None: ...

    def handle_misc(self) -> None:
        self.calls[self.loop.iterations] += 1
        self.calls[-1] += 1  # every call, whatever the iteration
        if self.calls[-1] >= self.n:
            self.done.set()


def test_every_endpoint_is_swept_at_most_a_slice_per_iteration() -> None:
    n = 5 * MISC_SLICE + 7
    loop = NetworkLoop("sweep-test").start()
    calls: Counter[int] = Counter()
    done = threading.Event()
    try:
        desks = [_Desk(loop, calls, done, n) for _ in range(n)]
        loop.run_sync(lambda: [loop.add_endpoint(d) for d in desks])
        assert done.wait(10), f"only {calls[-1]} of {n} desks got their keepalive call"
        time.sleep(0.05)
    finally:
        loop.stop()
    per_iteration = {it: count for it, count in calls.items() if it >= 0}
    assert sum(per_iteration.values()) >= n
    assert max(per_iteration.values()) <= MISC_SLICE
    assert len(per_iteration) >= n // MISC_SLICE
