"""``consultease server`` stopped by SIGTERM while kiosks hold the event stream open.

The stream never ends by itself, so uvicorn used to wait out its graceful-shutdown
bound and then log "Cancel N running task(s), timeout graceful shutdown exceeded" at
ERROR on every normal stop (and the kiosk's own server child did so each time the
kiosk closed). The server ends its streams when it begins to stop: the clients see
the stream end and the log holds nothing that looks like an error (issue 9).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from central_system.api.client import ApiClient
from central_system.api.schemas import Event
from tests.brokers import MosquittoBroker
from tests.server_helpers import ServerProcess, db_engine, enroll

KIOSKS = 3


def test_sigterm_ends_the_event_streams_and_logs_no_error(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'consultease.db'}"
    server = ServerProcess(db_url, broker.port, tmp_path).start()
    ended: list[str] = []
    events: list[list[Event]] = [[] for _ in range(KIOSKS)]
    try:
        server.wait_role("active")
        with db_engine(db_url) as engine:
            clients = [ApiClient(server.url, enroll(engine, f"kiosk-{i}")) for i in range(KIOSKS)]

        def listen(i: int) -> None:
            try:
                for event in clients[i].events():
                    events[i].append(event)
                ended.append("end")  # the server closed the stream cleanly
            except Exception as err:  # a cut connection, not a finished response
                ended.append(f"error: {err!r}")

        for i in range(KIOSKS):
            threading.Thread(target=listen, args=(i,), daemon=True).start()
        deadline = time.monotonic() + 15
        while not all(events) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(events), "every kiosk's stream is open (its first event arrived)"

        # uvicorn re-raises the signal it caught once it has shut down: -15 is a clean
        # stop (systemd counts SIGTERM as a successful exit too).
        assert server.stop(timeout=30) in (0, -15), server.log()
        deadline = time.monotonic() + 10
        while len(ended) < KIOSKS and time.monotonic() < deadline:
            time.sleep(0.02)
        log = server.log()
        assert "graceful shutdown exceeded" not in log, log
        assert " ERROR " not in log and "Traceback" not in log, log
        assert ended == ["end"] * KIOSKS, (ended, log)
    finally:
        server.kill()
        with contextlib.suppress(Exception):
            for client in clients:
                client.close()
