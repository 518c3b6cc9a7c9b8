"""The MQTT service's inbound queue: arrival order, newest-wins coalescing per topic, a hard bound.

The network thread puts every received message here and the dispatch thread
takes them out for the handlers. A burst (every desk reconnecting after a broker
restart, or the broker replaying every retained presence when the central system
reconnects) must neither lose a message that changes something nor grow memory
without limit. So:

* A message whose subscriptions allow it (desk presence, heartbeats: state that a
  newer report replaces) is *coalescible*: while an older message on the same
  topic is still waiting, the new one takes its place in the queue (the slot
  keeps its position, so a desk that reports often is never pushed back) and the
  older one is counted as superseded, unless a message from the same sender (its
  *group*: one desk's topics) arrived after the older one. Then the new one waits
  in arrival order too: the handlers see each sender's messages in the order it
  sent them (a desk's heartbeat never overtakes its own presence report, which
  would make its ``uptime`` seem to go backwards: a reboot that never happened).
* Every other message (a desk's ACKNOWLEDGE or BUSY) waits in arrival order and
  is never replaced or dropped.
* :meth:`InboundQueue.full` tells the network thread to stop reading from the
  broker when ``max_messages`` or ``max_bytes`` is reached; it reads again once
  the queue is below nine tenths of both. Nothing is dropped here: the rest of
  the burst waits in the kernel's socket buffer and at the broker (TCP
  back-pressure).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar


class _Sized(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


M = TypeVar("M", bound=_Sized)

_RESUME_FRACTION: Final = 0.9


@dataclass(slots=True)
class Waiting(Generic[M]):
    """One place in the queue: the message, and how many older ones on its topic it replaced."""

    message: M
    coalescible: bool
    group: Hashable
    superseded: int = 0


def parent_level(topic: str) -> str:
    """The default group: the topic without its last level (``d/1/status`` -> ``d/1``)."""
    return topic.rpartition("/")[0]


class InboundQueue(Generic[M]):
    """Thread-safe FIFO with in-place coalescing per topic; see the module docstring."""

    def __init__(
        self,
        max_messages: int,
        max_bytes: int,
        group_of: Callable[[str], Hashable] = parent_level,
    ) -> None:
        """``group_of(topic)`` names the sender whose messages keep their order."""
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("the inbound queue bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.group_of = group_of
        self._lock = threading.Lock()
        self._order: deque[Waiting[M]] = deque()
        self._by_topic: dict[str, Waiting[M]] = {}  # the newest waiting message of a topic
        self._last_of: dict[Hashable, Waiting[M]] = {}  # the newest waiting message of a group
        self._bytes = 0
        self._paused = False

    def __len__(self) -> int:
        return len(self._order)

    @property
    def bytes(self) -> int:
        """Payload bytes waiting."""
        return self._bytes

    def put(self, message: M, coalescible: bool) -> bool:
        """Queue ``message``; True when it superseded a waiting message on the same topic."""
        group = self.group_of(message.topic)
        with self._lock:
            if coalescible:
                waiting = self._by_topic.get(message.topic)
                # In its place only when nothing from the same sender came after it.
                if waiting is not None and self._last_of.get(group) is waiting:
                    self._bytes += len(message.payload) - len(waiting.message.payload)
                    waiting.message = message
                    waiting.superseded += 1
                    return True
                waiting = Waiting(message, True, group)
                self._by_topic[message.topic] = waiting
            else:
                waiting = Waiting(message, False, group)
            self._order.append(waiting)
            self._last_of[group] = waiting
            self._bytes += len(message.payload)
            return False

    def take(self, limit: int) -> list[Waiting[M]]:
        """Up to ``limit`` waiting messages, oldest place first."""
        out: list[Waiting[M]] = []
        with self._lock:
            order, by_topic, last_of = self._order, self._by_topic, self._last_of
            while order and len(out) < limit:
                waiting = order.popleft()
                topic = waiting.message.topic
                if waiting.coalescible and by_topic.get(topic) is waiting:
                    del by_topic[topic]
                if last_of.get(waiting.group) is waiting:
                    del last_of[waiting.group]
                self._bytes -= len(waiting.message.payload)
                out.append(waiting)
        return out

    def full(self) -> bool:
        """Whether the reader should pause now (with hysteresis: resume below 90 % of both bounds)."""
        count, size = len(self._order), self._bytes
        if self._paused:
            self._paused = (
                count > self.max_messages * _RESUME_FRACTION
                or size > self.max_bytes * _RESUME_FRACTION
            )
        else:
            self._paused = count >= self.max_messages or size >= self.max_bytes
        return self._paused

    @property
    def paused(self) -> bool:
        """The last answer of :meth:`full`."""
        return self._paused
