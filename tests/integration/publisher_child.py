"""A central process for the crash test: publishes a paced burst and reports what is durable.

Prints ``P <n>`` for every message whose ``wait_persisted()`` returned True, in order.
``--count 0`` only starts the service (recovering the outbox) and waits to be killed or stopped.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from central_system import db as dbmod
from central_system.config import Settings
from central_system.services.async_mqtt_service import AsyncMQTTService


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--run-seconds", type=float, default=60.0)
    args = parser.parse_args()

    settings = Settings(
        mqtt_port=args.port, mqtt_client_id="crash-test-central", mqtt_reconnect_max_delay=1.0
    )
    service = AsyncMQTTService(settings, dbmod.init_db(args.db))
    service.start()
    print("STARTED", flush=True)
    handles = []
    done = threading.Event()

    def reporter() -> None:
        i = 0
        while not (done.is_set() and i >= len(handles)):
            if i < len(handles):
                if handles[i].wait_persisted(5):
                    sys.stdout.write(f"P {i}\n")
                    sys.stdout.flush()
                i += 1
            else:
                time.sleep(0.001)

    thread = threading.Thread(target=reporter, daemon=True)
    thread.start()
    start = time.perf_counter()
    for n in range(args.count):
        handles.append(service.publish_async(args.topic, {"n": n}))
        target = start + (n + 1) / args.rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    done.set()
    thread.join()
    print("BURST_DONE", flush=True)
    deadline = time.monotonic() + args.run_seconds
    while time.monotonic() < deadline and service.queue_size:
        time.sleep(0.05)
    print(f"DRAINED {service.queue_size}", flush=True)
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
