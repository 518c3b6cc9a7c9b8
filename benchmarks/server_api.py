"""The server under kiosk load: API latency, event fan-out, server RSS (issue 9, "Numbers").

Real processes: Mosquitto, one ``consultease server`` (SQLite by default, ``--pg URL``
for PostgreSQL), and client processes playing the kiosks.

``--client kiosk`` (the default) plays them as the kiosk talks: each kiosk is a thread
with its own :class:`ApiClient` (``http.client``, kept-alive connections: about 1 ms of
client CPU per call measured here over a whole client process, httpx about 3 ms), and
the latency recorded is the ``ApiClient`` call as the kiosk's worker sees it (answer
decoded and validated). A real kiosk is one Pi each; here the
20 share ``--client-procs`` processes, 4 by default, 5 kiosk threads each: in one
process a thread whose answer has arrived can wait for the interpreter lock behind the
others (up to the 5 ms switch interval when one is busy), while 20 processes would put
20 interpreters on the 2 cores beside the server. At about 45 calls/s per process and
~1 ms each a process's lock is busy ~5 % of the time, so two of its kiosks seldom
collide. ``--client httpx`` keeps the earlier clients exactly (asyncio coroutines on
httpx, ``--client-procs 1`` by default) so earlier figures stay comparable; their client
CPU and event-loop queueing land inside the measured latency.

  (1) 20 kiosk clients at once, each making the kiosk's calls in a loop at a
      touchscreen's pace (a card tap, the faculty list, waiting counts, My
      consultations, and a request every fifth round) for ``--seconds``; p50/p99/max
      per call and overall. Target: p99 <= 10 ms on loopback.
  (2) 50 event-stream subscribers; a desk's presence changes (MQTT, as a real desk
      sends it) ``--changes`` times; for each change, the time from the desk's
      publish to the event's arrival at each subscriber. Target: p99 <= 100 ms.
  (3) The server's RSS after the load.
  (4) The baseline (``--no-baseline`` skips it): the same clients, same pacing, against
      ``benchmarks/_baseline_app.py``, a bare ASGI app on uvicorn with the server's
      settings that answers the same paths with the real server's answers (recorded
      after (3)) and no database; its p50/p99 and the server/baseline ratios show how
      much of the p99 is the machine (loopback, scheduling on the shared cores, the
      clients' CPU) and how much is ConsultEase. It runs after the server and the
      broker have stopped, so it has the machine they had.

    flock /tmp/consultease-bench.lock .venv/bin/python benchmarks/server_api.py [--pg URL] [--client kiosk|httpx] [--no-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402  (plays the desk)
import psutil  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from central_system import topics  # noqa: E402
from central_system.api.client import ApiClient  # noqa: E402
from central_system.api.errors import (  # noqa: E402
    KioskError,
    OutcomeUnknownError,
    UnavailableError,
)
from central_system.api.transport import Response  # noqa: E402
from tests.brokers import MosquittoBroker  # noqa: E402
from tests.server_helpers import (  # noqa: E402
    ServerProcess,
    admin_client,
    bring_online,
    create_admin,
    db_engine,
    enroll,
)

KIOSKS = 20
SUBSCRIBERS = 50
FACULTY = 10
# A kiosk's pace: a touch every 100 ms at most (people tap, they do not loop).
KIOSK_PAUSE_S = 0.1
MESSAGE = "Benchmark request, please."
# The paths the kiosks call (the baseline app answers these).
STUDENT, FACULTY_LIST, WAITING, MINE, CREATE = (
    "/api/v1/students/me",
    "/api/v1/faculty",
    "/api/v1/faculty/waiting",
    "/api/v1/students/me/consultations",
    "/api/v1/consultations",
)
BASELINE_APP = Path(__file__).resolve().parent / "_baseline_app.py"

Latencies = dict[str, list[float]]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def line(name: str, ms: list[float]) -> str:
    """One printed row of p50/p99/max in ms."""
    return f"  {name:<22} n={len(ms):>5}  p50 {pct(ms, 0.5):6.2f}  p99 {pct(ms, 0.99):6.2f}  max {max(ms):7.2f} ms"


def reset_pg(url: str) -> None:
    """An empty schema on the benchmark's PostgreSQL database."""
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()


async def kiosk_loop(
    url: str, token: str, card: str, fids: list[int], seconds: float, out: dict[str, list[float]]
) -> None:
    """One kiosk's calls, paced, for ``seconds``."""
    headers = {"Authorization": f"Bearer {token}"}
    student = {**headers, "X-Card-UID": card}
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        await client.get("/api/v1/faculty", headers=headers)  # connect before measuring
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            calls = [
                ("tap (students/me)", "GET", "/api/v1/students/me", student, None),
                ("faculty list", "GET", "/api/v1/faculty", headers, None),
                ("waiting counts", "GET", "/api/v1/faculty/waiting", headers, None),
                ("my consultations", "GET", "/api/v1/students/me/consultations", student, None),
            ]
            if n % 5 == 4:
                body = {"faculty_id": random.choice(fids), "message": "Benchmark request, please."}
                calls.append(("send request", "POST", "/api/v1/consultations", student, body))
            for name, method, path, h, body in calls:
                t0 = time.perf_counter()
                r = await client.request(method, path, headers=h, json=body)
                ms = (time.perf_counter() - t0) * 1000
                if r.status_code < 500:
                    out.setdefault(name, []).append(ms)
                else:
                    out.setdefault("5xx", []).append(ms)
                await asyncio.sleep(KIOSK_PAUSE_S * random.uniform(0.5, 1.5))
            n += 1


class LastStatus:
    """The HTTP status of an ``ApiClient``'s last answer (0: none came).

    ``ApiClient`` raises a :class:`KioskError` for every error answer, and the bare class
    both for a 400 the API names (a rule such as "3 pending requests with one faculty
    member") and for a 500's plain text: the status tells them apart. The client's
    transport is wrapped (a private attribute, for this benchmark only).
    """

    def __init__(self, client: ApiClient) -> None:
        self.status = 0
        transport = client._http
        send = transport.request

        def request(*args: Any, **kwargs: Any) -> Response:
            answer = send(*args, **kwargs)
            self.status = answer.status
            return answer

        transport.request = request  # type: ignore[method-assign]


def is_server_error(err: KioskError, status: int) -> bool:
    """What the httpx clients count as "5xx": a 5xx answer, a standby, or no answer at all.

    The 4xx (``ApiClient``'s other errors) count as answers, as the httpx clients count them.
    """
    return isinstance(err, UnavailableError | OutcomeUnknownError) or status >= 500


def kiosk_thread(
    url: str, token: str, card: str, fids: list[int], seconds: float, out: Latencies
) -> None:
    """One kiosk as the real one talks: its own ``ApiClient``, paced, for ``seconds``."""
    client = ApiClient(url, token)
    last = LastStatus(client)
    try:
        client.faculty()  # connect before measuring
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            calls: list[tuple[str, Callable[[], object]]] = [
                ("tap (students/me)", partial(client.student, card)),
                ("faculty list", client.faculty),
                ("waiting counts", client.waiting_counts),
                ("my consultations", partial(client.my_consultations, card)),
            ]
            if n % 5 == 4:
                fid = random.choice(fids)
                calls.append(
                    ("send request", partial(client.create_consultation, card, fid, MESSAGE))
                )
            for name, call in calls:
                key = name
                last.status = 0
                t0 = time.perf_counter()
                try:
                    call()
                except KioskError as err:
                    if is_server_error(err, last.status):
                        key = "5xx"
                        # what it was: the count alone does not tell a 500 from no answer
                        print(f"  {name}: {last.status} {type(err).__name__}: {err}", flush=True)
                ms = (time.perf_counter() - t0) * 1000
                out.setdefault(key, []).append(ms)
                time.sleep(KIOSK_PAUSE_S * random.uniform(0.5, 1.5))
            n += 1
    finally:
        client.close()


def _kiosk_threads(
    url: str, tokens: list[str], cards: list[str], fids: list[int], seconds: float
) -> Latencies:
    outs: list[Latencies] = [{} for _ in tokens]
    threads = [
        threading.Thread(target=kiosk_thread, args=(url, token, card, fids, seconds, part))
        for token, card, part in zip(tokens, cards, outs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return merge(outs)


def merge(parts: list[Latencies]) -> Latencies:
    """The latencies of several clients, by call."""
    out: Latencies = {}
    for part in parts:
        for name, ms in part.items():
            out.setdefault(name, []).extend(ms)
    return out


def run_kiosks(
    mode: str, url: str, tokens: list[str], cards: list[str], fids: list[int], seconds: float
) -> tuple[Latencies, float]:
    """Some of the kiosks, in this process: (latencies by call, this process's CPU seconds)."""
    out: Latencies = {}
    before = resource.getrusage(resource.RUSAGE_SELF)
    if mode == "kiosk":
        out = _kiosk_threads(url, tokens, cards, fids, seconds)
    else:

        async def kiosks() -> None:
            await asyncio.gather(
                *(
                    kiosk_loop(url, token, card, fids, seconds, out)
                    for token, card in zip(tokens, cards, strict=True)
                )
            )

        asyncio.run(kiosks())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu


def kiosks_in_processes(
    mode: str,
    url: str,
    tokens: list[str],
    cards: list[str],
    fids: list[int],
    seconds: float,
    procs: int,
) -> tuple[Latencies, float]:
    """The kiosks shared among ``procs`` client processes (1: this process)."""
    if procs <= 1:
        return run_kiosks(mode, url, tokens, cards, fids, seconds)
    jobs = [(mode, url, tokens[i::procs], cards[i::procs], fids, seconds) for i in range(procs)]
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        results = pool.starmap(run_kiosks, jobs)
    return merge([part for part, _cpu in results]), sum(cpu for _part, cpu in results)


def report_load(
    title: str, out: Latencies, seconds: float, client_cpu_s: float, server_cpu_s: float
) -> list[float]:
    """Print one load's figures; every call's latency."""
    print(title, flush=True)
    every: list[float] = []
    for name, ms in sorted(out.items()):
        print(line(name, ms), flush=True)
        every.extend(ms)
    print(line("all calls", every), flush=True)
    n = max(1, len(every))
    print(
        f"  {len(every) / seconds:.0f} calls/s; 5xx/errors: {len(out.get('5xx', []))}; server "
        f"CPU {server_cpu_s * 1000 / n:.2f} ms per call ({server_cpu_s / seconds:.2f} of a "
        f"core); clients' CPU {client_cpu_s * 1000 / n:.2f} ms per call "
        f"({client_cpu_s / seconds:.2f} of a core)",
        flush=True,
    )
    return every


def record_answers(url: str, token: str, card: str, fid: int) -> dict[str, Any]:
    """The real server's answer to each path the kiosks call: the baseline app's bodies."""
    client = ApiClient(url, token)
    try:
        mine = client.request("GET", MINE, card_uid=card, params={"limit": 50})
        created = mine[0] if mine else None  # a request's answer is the new consultation
        if created is None:
            body = {"faculty_id": fid, "message": MESSAGE, "course_code": None}
            created = client.request("POST", CREATE, body=body, card_uid=card)
        return {
            STUDENT: client.request("GET", STUDENT, card_uid=card),
            FACULTY_LIST: client.request("GET", FACULTY_LIST),
            WAITING: client.request("GET", WAITING),
            MINE: mine,
            CREATE: created,
        }
    finally:
        client.close()


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_answering(url: str, timeout: float = 20.0) -> None:
    """Return once ``url`` answers the faculty list (the baseline app has started)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with httpx.Client(base_url=url, timeout=2.0) as client:
                if client.get(FACULTY_LIST).status_code == 200:
                    return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the baseline app at {url} did not answer in {timeout:.0f} s")
        time.sleep(0.1)


def run_baseline(
    args: argparse.Namespace,
    tokens: list[str],
    cards: list[str],
    fids: list[int],
    answers: dict[str, Any],
    tmp: Path,
) -> list[float]:
    """(4) The same kiosk load against the baseline app; every call's latency."""
    bodies = tmp / "baseline-answers.json"
    bodies.write_text(json.dumps(answers))
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, str(BASELINE_APP), "--port", str(port), "--bodies", str(bodies)]
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_answering(url)
        proc = psutil.Process(app.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        load0 = os.getloadavg()[0]
        out, client_cpu_s = kiosks_in_processes(
            args.client, url, tokens, cards, fids, args.seconds, args.client_procs
        )
        cpu_s = sum(proc.cpu_times()[:2]) - cpu0
        return report_load(
            f"(4) baseline: the same load against a bare uvicorn app with fixed answers "
            f"(load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after):",
            out,
            args.seconds,
            client_cpu_s,
            cpu_s,
        )
    finally:
        app.terminate()
        app.wait(timeout=10)


async def subscriber(
    url: str, token: str, ready: asyncio.Event, got: list[tuple[int, float]], count: list[int]
) -> None:
    """One event-stream subscriber: records (faculty id, arrival time) of faculty events."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60.0)) as client,
        client.stream("GET", "/api/v1/events", headers=headers) as r,
    ):
        count[0] += 1
        if count[0] == SUBSCRIBERS:
            ready.set()
        async for raw in r.aiter_lines():
            if raw.startswith("data:"):
                data = json.loads(raw[5:])
                now = time.perf_counter()
                for event in data if isinstance(data, list) else [data]:  # a batch, or one
                    if event.get("kind") == "faculty":
                        got.append((int(event["id"]), now))


async def fan_out(
    url: str, token: str, mqtt_port: int, fids: list[int], changes: int
) -> list[float]:
    """Publish presence changes; the delay from each publish to each subscriber's event."""
    ready = asyncio.Event()
    got: list[tuple[int, float]] = []
    count = [0]
    tasks = [
        asyncio.create_task(subscriber(url, token, ready, got, count)) for _ in range(SUBSCRIBERS)
    ]
    await asyncio.wait_for(ready.wait(), 30)
    await asyncio.sleep(0.5)
    delays: list[float] = []
    fid = fids[0]
    # One desk connection made beforehand: the delay starts at the publish itself.
    desk = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    desk.connect("127.0.0.1", mqtt_port, 30)
    desk.loop_start()
    for i in range(changes):
        got.clear()
        status = "AWAY" if i % 2 == 0 else "AVAILABLE"
        payload = json.dumps(
            {"faculty_id": fid, "present": status == "AVAILABLE", "status": status}
        ).encode()
        t0 = time.perf_counter()
        desk.publish(topics.faculty_status_topic(fid), payload, qos=0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len([g for g in got if g[0] == fid]) < SUBSCRIBERS:
            await asyncio.sleep(0.005)
        arrivals = [t for f, t in got if f == fid][:SUBSCRIBERS]
        if len(arrivals) < SUBSCRIBERS:
            print(
                f"  change {i}: only {len(arrivals)} of {SUBSCRIBERS} subscribers got it",
                flush=True,
            )
        delays.extend((t - t0) * 1000 for t in arrivals)
        await asyncio.sleep(0.3)
    desk.loop_stop()
    desk.disconnect()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg", default=None, help="a PostgreSQL URL to use (its schema is emptied)"
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument(
        "--client",
        choices=("kiosk", "httpx"),
        default="kiosk",
        help="kiosk: a thread per kiosk with its own ApiClient, as the kiosk talks; "
        "httpx: asyncio + httpx coroutines (the earlier clients, for comparable figures)",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=None,
        help="processes the 20 kiosk clients run in (1: this one; 2+: separate processes, so "
        "the clients' own CPU does not queue behind one interpreter); default 4 for "
        "--client kiosk, 1 for --client httpx",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip (4), the same load against benchmarks/_baseline_app.py",
    )
    args = parser.parse_args()
    if args.client_procs is None:
        args.client_procs = 4 if args.client == "kiosk" else 1
    tmp = Path(tempfile.mkdtemp(prefix="consultease-serverbench-"))
    if args.pg:
        reset_pg(args.pg)
        db_url = args.pg
    else:
        db_url = f"sqlite:///{tmp / 'consultease.db'}"
    broker = MosquittoBroker().start()
    server = ServerProcess(db_url, broker.port, tmp, client_id=f"bench-{uuid.uuid4().hex[:6]}")
    server.env["CONSULTEASE_LOG_LEVEL"] = "WARNING"
    server.start()
    try:
        server.wait_role("active")
        with db_engine(db_url) as engine:
            create_admin(engine)
            tokens = [enroll(engine, f"bench-{i}") for i in range(KIOSKS)]
        admin = admin_client(server.url)
        fids = [admin.save_faculty(None, f"Dr. Bench {i}", "CS", None).id for i in range(FACULTY)]
        cards = [f"B0{i:06X}" for i in range(KIOSKS)]
        for i, card in enumerate(cards):
            admin.register_student(f"Student {i}", f"B-{i:05d}", "CS", card)
        for fid in fids:
            bring_online(admin, broker.port, fid)
        proc = psutil.Process(server.proc.pid)
        rss_idle = proc.memory_info().rss / 2**20
        db = "PostgreSQL" if args.pg else "SQLite"
        print(
            f"server API benchmark: {db}, {KIOSKS} kiosks, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )

        # (1) 20 kiosks
        cpu0 = sum(proc.cpu_times()[:2])
        load0 = os.getloadavg()[0]
        out, client_cpu_s = kiosks_in_processes(
            args.client, server.url, tokens, cards, fids, args.seconds, args.client_procs
        )
        cpu_s = sum(proc.cpu_times()[:2]) - cpu0
        every = report_load(
            f"(1) {KIOSKS} kiosk clients ({args.client}) for {args.seconds:.0f} s in "
            f"{max(1, args.client_procs)} client process(es) (load average {load0:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after):",
            out,
            args.seconds,
            client_cpu_s,
            cpu_s,
        )

        # (2) fan-out
        delays = asyncio.run(fan_out(server.url, tokens[0], broker.port, fids, args.changes))
        print(f"(2) one change to {SUBSCRIBERS} subscribers, {args.changes} changes:", flush=True)
        print(line("desk publish -> event", delays), flush=True)

        rss = proc.memory_info().rss / 2**20
        print(
            f"(3) server RSS: {rss_idle:.0f} MiB idle after start, {rss:.0f} MiB after the load",
            flush=True,
        )
        print(f"api p99 ms: {pct(every, 0.99):.2f}", flush=True)
        print(f"fan-out p99 ms: {pct(delays, 0.99):.2f}", flush=True)
        answers = record_answers(server.url, tokens[0], cards[0], fids[0])
    finally:
        server.stop()
        broker.cleanup()
    if not args.no_baseline:
        # (4) with the server and the broker stopped: the baseline gets the machine they had
        base = run_baseline(args, tokens, cards, fids, answers, tmp)
        print(
            f"server / baseline: p50 {pct(every, 0.5) / pct(base, 0.5):.1f}x, "
            f"p99 {pct(every, 0.99) / pct(base, 0.99):.1f}x",
            flush=True,
        )
        print(f"baseline api p99 ms: {pct(base, 0.99):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
