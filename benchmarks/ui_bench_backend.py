"""The kiosk backend used by ``benchmarks/ui_responsiveness.py``.

It is the kiosk's own :class:`KioskBackend` plus the few calls the benchmark needs
to load the system (publish a burst, echo it back to the UI, seed faculty). It runs
wherever the kiosk's backend runs: in the kiosk process (``--backend thread``) or
in the backend's child process (``--backend process``, what ``consultease run`` does).
"""

from __future__ import annotations

import os
from typing import Any

from central_system.controllers.kiosk_facade import KioskBackend


class BenchBackend(KioskBackend):
    """``KioskBackend`` with the benchmark's load generators."""

    def __init__(self, system: Any) -> None:
        super().__init__(system)
        self._bridge: Any = None
        self._unsubscribe: Any = None

    def connect_events(self, bridge: Any) -> None:
        super().connect_events(bridge)
        self._bridge = bridge

    def bench_seed(
        self, faculty_names: list[str], department: str, student: tuple[str, str, str]
    ) -> dict[str, Any]:
        """Create faculty members and one student with a card; their ids."""
        fac = self._controller("faculty")
        ids = [fac.create_faculty(name=n, department=department).id for n in faculty_names]
        name, number, uid = student
        sid = None
        if student[0]:
            sid = (
                self._controller("student")
                .create_student(name=name, student_id=number, rfid_uid=uid)
                .id
            )
        return {"faculty": ids, "student": sid}

    def bench_echo(self, topic: str) -> None:
        """Every message on ``topic`` becomes a consultation event for the UI (the bridge path)."""
        bridge = self._bridge

        def handler(message: Any) -> None:
            bridge.on_consultation(message.json()["i"], "pending")

        self._unsubscribe = self.system.mqtt.subscribe(topic, handler, qos=1)

    def bench_unecho(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def bench_publish(self, topic: str, start: int, count: int) -> int:
        """Publish ``count`` QoS 1 messages through the service (outbox, as the UI's requests go)."""
        mqtt = self.system.mqtt
        for i in range(start, start + count):
            mqtt.publish_async(topic, {"i": i}, qos=1)
        return count

    def bench_desks_online(self, faculty_ids: list[int]) -> int:
        """How many of ``faculty_ids`` have their desk online."""
        return sum(
            1 for fid in faculty_ids if (v := self.get_faculty(fid)) is not None and v.desk_online
        )

    def bench_available(self, faculty_ids: list[int]) -> bool:
        """Every one of ``faculty_ids`` is shown available."""
        return all(
            (v := self.get_faculty(fid)) is not None and v.can_request for fid in faculty_ids
        )


class ServerBenchBackend(BenchBackend):
    """In a ``consultease server`` child (``--backend server``): echo the benchmark's topic.

    The kiosk has no MQTT connection in that design, so it cannot ask for the echo: the
    topic comes in ``CONSULTEASE_BENCH_ECHO_TOPIC`` and every message on it becomes a
    consultation event on the server's event stream.
    """

    def connect_events(self, bridge: Any) -> None:
        super().connect_events(bridge)
        topic = os.environ.get("CONSULTEASE_BENCH_ECHO_TOPIC")
        if topic:
            self.bench_echo(topic)


class ServerBenchClient:
    """The kiosk's ``ApiBackend`` plus the benchmark's calls, made through the API."""

    def __init__(self, backend: Any, echo_topic: str, mqtt_port: int) -> None:
        import subprocess
        import sys

        self._backend = backend
        self.echo_topic = echo_topic
        # The load generator: a publisher process the kiosk's worker feeds ranges to (the
        # kiosk itself holds no MQTT connection in this design).
        script = (
            "import sys, paho.mqtt.client as m\n"
            "from paho.mqtt.enums import CallbackAPIVersion as V\n"
            "c = m.Client(V.VERSION2); c.connect('127.0.0.1', int(sys.argv[1])); c.loop_start()\n"
            "for line in sys.stdin:\n"
            "    a, n = map(int, line.split())\n"
            "    for i in range(a, a + n):\n"
            "        c.publish(sys.argv[2], '{\"i\": %d}' % i, qos=1)\n"
        )
        self._publisher = subprocess.Popen(
            [sys.executable, "-c", script, str(mqtt_port), echo_topic],
            stdin=subprocess.PIPE,
            text=True,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def close(self) -> None:
        if self._publisher.stdin is not None:
            self._publisher.stdin.close()
        self._publisher.wait(10)
        self._backend.close()

    def bench_seed(
        self, faculty_names: list[str], department: str, student: tuple[str, str, str]
    ) -> dict[str, Any]:
        b = self._backend
        ids = [b.save_faculty(None, n, department, None, "bench").id for n in faculty_names]
        sid = None
        if student[0]:
            sid = b.register_student(student[0], student[1], "", student[2], "bench").id
        return {"faculty": ids, "student": sid}

    def bench_echo(self, topic: str) -> None:
        if topic != self.echo_topic:
            raise ValueError("the server echoes only the topic it was started with")

    def bench_unecho(self) -> None:
        return None

    def bench_publish(self, topic: str, start: int, count: int) -> int:
        assert self._publisher.stdin is not None
        self._publisher.stdin.write(f"{start} {count}\n")
        self._publisher.stdin.flush()
        return count

    def bench_desks_online(self, faculty_ids: list[int]) -> int:
        return sum(
            1
            for fid in faculty_ids
            if (v := self._backend.get_faculty(fid)) is not None and v.desk_online
        )

    def bench_available(self, faculty_ids: list[int]) -> bool:
        return all(
            (v := self._backend.get_faculty(fid)) is not None and v.can_request
            for fid in faculty_ids
        )
