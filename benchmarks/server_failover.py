"""Failover: SIGKILL the active server under a steady stream of requests; time, loss, duplicates.

Two ``consultease server`` processes on one PostgreSQL database and a Mosquitto.
Two kiosks (ApiClient with both URLs, one thread each) send consultation requests
back to back (50 ms apart) to four faculty members whose desks are online; a
desk-side subscriber (paho, its own connection) reads each desk's ``/messages``
topic, what the deployed firmware reads (contract 1.1, at QoS 1 as the firmware
subscribes). A fifth client calls the faculty list every 50 ms. In each round,
after ``--stream-s`` seconds of requests, the active server is SIGKILLed:

* failover time: from the kill to the first successful call answered by the other
  server (target <= 10 s);
* requests answered with success in the round, and how many of them reached their
  desk (all must);
* duplicates at the desk: requests whose ``CID:`` text the desk received more than
  once. The relay is at-least-once: a row leaves the outbox only after the broker's
  PUBACK/PUBCOMP and a batched delete (every 0.25 s), and the new active server
  publishes every row it finds. So the messages in flight at the kill (the desk
  messages in ``mqtt_outbox`` right after it, read before the standby can take
  over) bound the duplicates; a duplicate outside them is printed as "not in flight".

The killed server is started again and becomes the standby of the next round.

    flock /tmp/consultease-bench.lock .venv/bin/python benchmarks/server_failover.py --pg URL [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.server_api import reset_pg  # noqa: E402
from central_system import topics  # noqa: E402
from central_system.api.client import ApiClient  # noqa: E402
from central_system.api.errors import KioskError, OutcomeUnknownError  # noqa: E402
from central_system.config import Settings  # noqa: E402
from central_system.db import normalize_database_url  # noqa: E402
from tests.brokers import MosquittoBroker  # noqa: E402
from tests.mqtt_probe import Probe, publish_raw  # noqa: E402
from tests.server_helpers import (  # noqa: E402
    ServerProcess,
    admin_client,
    bring_online,
    create_admin,
    db_engine,
    enroll,
)

MESSAGE = "Please help me with the failover benchmark."
KIOSKS = 2
FACULTY = 4
# Fresh students each round: a student may have at most 3 pending requests per faculty member.
CARDS_PER_ROUND = 32
HEARTBEAT_S = 15.0  # desks send one about every 30 s (contract 2.3); offline after 90 s of silence
_CID = re.compile(rb"CID:(\d+) ")


class Stream:
    """Kiosks sending requests back to back; what each request got."""

    def __init__(self, urls: str, tokens: list[str], cards: list[str], fids: list[int]) -> None:
        self.urls, self.tokens, self.cards, self.fids = urls, tokens, cards, fids
        self.succeeded: dict[int, int] = {}  # consultation id -> faculty id
        self.outcome_unknown = 0
        self.refused: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start one thread per kiosk."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._kiosk, args=(token, i), daemon=True)
            for i, token in enumerate(self.tokens)
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop the kiosks (each finishes the call it is in)."""
        self._stop.set()
        for t in self._threads:
            t.join(20)

    def _kiosk(self, token: str, offset: int) -> None:
        client = ApiClient(self.urls, token, timeout=10.0)
        n = offset
        while not self._stop.is_set():
            card = self.cards[n % len(self.cards)]
            fid = self.fids[(n // len(self.cards)) % len(self.fids)]
            n += len(self.tokens)
            try:
                made = client.create_consultation(card, fid, MESSAGE)
                with self.lock:
                    self.succeeded[made.id] = fid
            except OutcomeUnknownError:
                with self.lock:
                    self.outcome_unknown += 1
            except KioskError as err:
                with self.lock:
                    self.refused[f"{type(err).__name__}: {str(err)[:50]}"] += 1
                time.sleep(0.2)
            time.sleep(0.05)
        client.close()


def heartbeats(port: int, fids: list[int], stop: threading.Event) -> None:
    """Keep the desks online: a heartbeat each (uptime growing: no reboot, no re-send)."""
    booted = time.monotonic() - 3600.0
    while not stop.wait(HEARTBEAT_S):
        for fid in fids:
            uptime = int((time.monotonic() - booted) * 1000)
            payload = {"faculty_id": fid, "uptime": uptime, "presence_status": "AVAILABLE"}
            publish_raw(port, topics.faculty_heartbeat_topic(fid), json.dumps(payload), qos=0)


def desk_counts(desk: Probe, messages: dict[str, int]) -> Counter[tuple[int, int]]:
    """(faculty id, consultation id) -> copies the desks received on ``/messages``."""
    counts: Counter[tuple[int, int]] = Counter()
    for m in list(desk.messages):
        match = _CID.match(m.payload)
        if m.topic in messages and match:
            counts[(messages[m.topic], int(match.group(1)))] += 1
    return counts


def in_flight_at_kill(engine: Engine, messages: dict[str, int]) -> tuple[int, set[int]]:
    """All outbox rows now, and the consultation ids of the desk messages among them."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT topic, payload FROM mqtt_outbox")).all()
    cids = set()
    for row in rows:
        match = _CID.match(bytes(row.payload))
        if row.topic in messages and match:
            cids.add(int(match.group(1)))
    return len(rows), cids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", required=True, help="a PostgreSQL URL (its schema is emptied)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--stream-s", type=float, default=3.0, help="seconds of requests before each kill"
    )
    args = parser.parse_args()
    args.pg = normalize_database_url(args.pg)  # postgresql:// means psycopg 3, as for the server
    reset_pg(args.pg)
    tmp = Path(tempfile.mkdtemp(prefix="consultease-failover-"))
    broker = MosquittoBroker().start()
    servers = [
        ServerProcess(args.pg, broker.port, tmp, client_id=f"central-{n}", name=n) for n in "ab"
    ]
    grace = Settings.model_fields["server_takeover_grace_s"].default
    snapshot_engine = create_engine(args.pg)
    stop_heartbeats = threading.Event()
    desk: Probe | None = None
    try:
        servers[0].start().wait_role("active")
        servers[1].start().wait_role("standby")
        urls = ",".join(s.url for s in servers)
        with db_engine(args.pg) as engine:
            create_admin(engine)
            token = enroll(engine, "bench")
            tokens = [enroll(engine, f"kiosk-{i}") for i in range(KIOSKS)]
        admin = admin_client(urls)
        fids = [admin.save_faculty(None, f"Dr. F{i}", "CS", None).id for i in range(FACULTY)]
        cards = [f"04B1{i:04X}" for i in range(CARDS_PER_ROUND * args.rounds)]
        for i, card in enumerate(cards):
            admin.register_student(f"Student {i}", f"2022-{i:05d}", "CS", card)
        for fid in fids:
            bring_online(admin, broker.port, fid)
        admin.close()
        threading.Thread(
            target=heartbeats, args=(broker.port, fids, stop_heartbeats), daemon=True
        ).start()
        messages = {topics.faculty_messages_topic(fid): fid for fid in fids}
        desk = Probe(broker.port, list(messages), qos=1)
        client = ApiClient(urls, token, timeout=5.0)
        print(
            f"failover benchmark: PostgreSQL, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f}; {KIOSKS} kiosks sending requests to {FACULTY} desks, "
            f"{args.stream_s:g} s before each kill",
            flush=True,
        )
        times: list[float] = []
        totals: Counter[str] = Counter()
        seen_duplicates: set[tuple[int, int]] = set()
        for rnd in range(args.rounds):
            active = next(s for s in servers if (s.health() or {}).get("role") == "active")
            other = next(s for s in servers if s is not active)
            client.faculty()
            round_cards = cards[rnd * CARDS_PER_ROUND : (rnd + 1) * CARDS_PER_ROUND]
            stream = Stream(urls, tokens, round_cards, fids)
            stream.start()
            time.sleep(args.stream_s)
            with snapshot_engine.connect():
                pass  # connected before the kill: the snapshot is one query
            t0 = time.monotonic()
            active.kill()
            outbox_rows, in_flight = in_flight_at_kill(snapshot_engine, messages)
            snapshot_s = time.monotonic() - t0
            while True:
                try:
                    client.faculty()
                    if client.active_url == other.url:
                        break
                except KioskError:
                    pass
                if time.monotonic() - t0 > 60:
                    raise SystemExit("no failover within 60 s")
                time.sleep(0.05)
            took = time.monotonic() - t0
            times.append(took)
            time.sleep(1.0)  # the kiosks carry on: requests answered by the new active server
            stream.stop()
            with stream.lock:
                answered = {(fid, cid) for cid, fid in stream.succeeded.items()}
            deadline = time.monotonic() + 30
            while not answered <= set(desk_counts(desk, messages)) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # a late copy would arrive within this
            counts = desk_counts(desk, messages)
            reached = len(answered & set(counts))
            duplicates = {key for key, n in counts.items() if n > 1} - seen_duplicates
            seen_duplicates |= duplicates
            stray = {cid for _fid, cid in duplicates} - in_flight
            valid = "" if snapshot_s < grace else " (read too late to be sure)"
            print(
                f"  round {rnd + 1}: SIGKILL -> first successful call on the other server: "
                f"{took:.2f} s; {len(answered)} requests answered with success, {reached} reached "
                f"their desk, {len(answered) - reached} missing; duplicates at the desk: "
                f"{len(duplicates)} (each received {sorted({counts[k] for k in duplicates})} "
                f"times), in flight at the kill: {len(in_flight)} desk messages "
                f"({outbox_rows} outbox rows, read {snapshot_s * 1000:.0f} ms after the kill"
                f"{valid}), duplicates not in flight: {len(stray)}; outcome unknown "
                f"{stream.outcome_unknown}, refused {dict(stream.refused)}",
                flush=True,
            )
            totals.update(
                answered=len(answered),
                reached=reached,
                duplicates=len(duplicates),
                in_flight=len(in_flight),
                stray=len(stray),
            )
            active.start().wait_role("standby")  # back as the standby of the next round
        print(f"failover s: max {max(times):.2f}, mean {sum(times) / len(times):.2f}", flush=True)
        print(
            f"requests answered with success: {totals['answered']}, reached their desk: "
            f"{totals['reached']}; duplicates at the desk: {totals['duplicates']} "
            f"(in flight at the kills: {totals['in_flight']}; not in flight: {totals['stray']})",
            flush=True,
        )
        client.close()
    finally:
        stop_heartbeats.set()
        if desk is not None:
            desk.close()
        snapshot_engine.dispose()
        for s in servers:
            s.stop()
        broker.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
