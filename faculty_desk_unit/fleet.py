"""Many simulated desk units in one process, sharing one network thread."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

from . import protocol
from .desk import DeskStats, DeskUnit, Mode
from .loop import NetworkLoop, TimerHandle
from .protocol import DeskRequest

logger = logging.getLogger(__name__)

# Flapping never touches more than this share of the fleet at once (load tests, not chaos).
FLAP_FRACTION = 0.1
# A Wi-Fi blip lasts this long (seconds, uniform); a long outage outlasts the 90 s of contract 3.
BLIP_S = (0.2, 3.0)
LONG_OUTAGE_S = (95.0, 110.0)
# At each flap, the chance that one desk has a long outage, and that one desk reboots.
LONG_OUTAGE_CHANCE = 0.1
REBOOT_CHANCE = 0.3


class DeskFleet:
    """``count`` desks (faculty ids ``first_faculty_id``…) on one ``NetworkLoop``.

    ``auto_ack`` acknowledges every request after that many seconds; ``flap_interval``
    toggles the presence of a random tenth of the fleet that often (a desk that
    went away comes back at the next flap) and, with ``flap_links``, drops the
    Wi-Fi of another tenth for a blip (``BLIP_S``), now and then one desk's for a
    long outage (``LONG_OUTAGE_S``), and now and then reboots one desk.
    """

    def __init__(
        self,
        count: int,
        host: str = "127.0.0.1",
        port: int = 1883,
        mode: Mode = "firmware",
        *,
        heartbeat_interval: float = protocol.FIRMWARE_HEARTBEAT_INTERVAL_S,
        first_faculty_id: int = 1,
        faculty_ids: Sequence[int] | None = None,
        names: Callable[[int], str] | None = None,
        username: str | None = None,
        password: str | None = None,
        auto_ack: float | None = None,
        flap_interval: float | None = None,
        flap_links: bool = True,
        long_outage_s: tuple[float, float] = LONG_OUTAGE_S,
        connect_spread: float = 0.0,
        stagger_heartbeats: bool = True,
        on_request: Callable[[DeskUnit, DeskRequest], None] | None = None,
        reconnect_max_delay: float = 30.0,
    ) -> None:
        if count < 0:
            raise ValueError("count must be >= 0")
        ids = (
            list(faculty_ids)
            if faculty_ids is not None
            else [first_faculty_id + i for i in range(count)]
        )
        self.loop = NetworkLoop(name="desk-fleet")
        self.auto_ack = auto_ack
        self.flap_interval = flap_interval
        self.flap_links = flap_links
        self.long_outage_s = long_outage_s
        self.connect_spread = connect_spread
        self._user_on_request = on_request
        self._flap_timer: TimerHandle | None = None
        self._lock = threading.Lock()
        self.desks: list[DeskUnit] = []
        for fid in ids:
            name = names(fid) if names else f"Faculty {fid}"
            self.desks.append(
                DeskUnit(
                    fid,
                    name,
                    host,
                    port,
                    mode,
                    heartbeat_interval,
                    username,
                    password,
                    loop=self.loop,
                    reconnect_max_delay=reconnect_max_delay,
                    # Desks booted at different times heartbeat at different phases.
                    heartbeat_phase=random.uniform(0, heartbeat_interval)
                    if stagger_heartbeats
                    else heartbeat_interval,
                    on_request=self._on_request,
                )
            )
        self.by_faculty = {desk.faculty_id: desk for desk in self.desks}

    def __len__(self) -> int:
        return len(self.desks)

    def start(self) -> DeskFleet:
        """Start the shared loop and boot every desk (spread over ``connect_spread`` seconds)."""
        self.loop.start()
        for desk in self.desks:
            delay = random.uniform(0, self.connect_spread) if self.connect_spread > 0 else 0.0
            self.loop.call_later(delay, desk.start)
        if self.flap_interval:
            self._flap_timer = self.loop.call_later(self.flap_interval, self._flap)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect every desk and stop the loop."""
        if self._flap_timer is not None:
            self._flap_timer.cancel()

        def stop_all() -> None:
            for desk in self.desks:
                if desk._started:
                    desk._shutdown_in_loop()
                    desk._started = False

        try:
            self.loop.run_sync(stop_all, timeout)
        except Exception:
            logger.exception("fleet shutdown failed")
        self.loop.stop(timeout)

    def calm(self, timeout: float = 10.0) -> None:
        """Stop flapping and bring every faculty member back (desks reconnect on their own)."""
        if self._flap_timer is not None:
            self._flap_timer.cancel()
            self._flap_timer = None

        def present_all() -> None:
            for desk in self.desks:
                if not desk.present:
                    desk._set_present_in_loop(True, None)

        self.loop.run_sync(present_all, timeout)

    def deliveries(self) -> dict[str, int]:
        """How often each consultation id was put on a desk, over the fleet."""
        total: dict[str, int] = {}
        for desk in self.desks:
            for cid, count in desk.deliveries.items():
                total[cid] = total.get(cid, 0) + count
        return total

    def connected_count(self) -> int:
        """Desks between CONNACK and link loss."""
        return sum(1 for desk in self.desks if desk.connected)

    def wait_all_connected(self, timeout: float = 30.0) -> bool:
        """Wait until every desk is connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected_count() == len(self.desks):
                return True
            time.sleep(0.05)
        return self.connected_count() == len(self.desks)

    def totals(self) -> dict[str, int]:
        """Every ``DeskStats`` counter summed over the fleet."""
        total = asdict(DeskStats())
        for desk in self.desks:
            for key, value in asdict(desk.stats).items():
                total[key] += value
        total["connected"] = self.connected_count()
        total["queued"] = sum(len(desk.queue) for desk in self.desks)
        return total

    def stats_line(self) -> str:
        """One human-readable line of fleet counters."""
        t = self.totals()
        return (
            f"desks {t['connected']}/{len(self.desks)} connected | requests {t['requests_received']} "
            f"(queued {t['queued']}, dropped away {t['requests_dropped_away']}, full {t['requests_dropped_full']}) "
            f"| responses {t['responses_sent']} | cancellations {t['cancellations']} "
            f"| heartbeats {t['heartbeats_sent']} | reconnects {max(0, t['connects'] - len(self.desks))}"
            f" | reboots {t['reboots']} | copies shown {t['copies_shown']}"
        )

    # ------------------------------------------------------------------ loop thread

    def _on_request(self, desk: DeskUnit, request: DeskRequest) -> None:
        if self.auto_ack is not None:
            self.loop.call_later(self.auto_ack, desk._respond, protocol.ACKNOWLEDGE, request.cid)
        if self._user_on_request is not None:
            self._user_on_request(desk, request)

    def _flap(self) -> None:
        assert self.flap_interval is not None
        self._flap_timer = self.loop.call_later(self.flap_interval, self._flap)
        away = [desk for desk in self.desks if not desk.present]
        for desk in away:
            desk._set_present_in_loop(True, None)
        candidates = [desk for desk in self.desks if desk.connected and desk not in away]
        k = min(len(candidates), max(1, int(len(self.desks) * FLAP_FRACTION)))
        chosen = random.sample(candidates, k)
        for desk in chosen:
            desk._set_present_in_loop(False, None)
        if not self.flap_links:
            return
        rest = [desk for desk in candidates if desk not in chosen]
        for desk in random.sample(rest, min(len(rest), k)):
            desk._kill_in_loop(random.uniform(*BLIP_S))
        connected = [desk for desk in self.desks if desk.connected]
        if connected and random.random() < LONG_OUTAGE_CHANCE:
            random.choice(connected)._kill_in_loop(random.uniform(*self.long_outage_s))
        if connected and random.random() < REBOOT_CHANCE:
            random.choice(connected)._reboot_in_loop(random.uniform(*BLIP_S))
