"""The kiosk backend used by ``benchmarks/ui_responsiveness.py``.

It is the kiosk's own :class:`KioskBackend` plus the few calls the benchmark needs
to load the system (publish a burst, echo it back to the UI, seed faculty). It runs
wherever the kiosk's backend runs: in the kiosk process (``--backend thread``) or
in the backend's child process (``--backend process``, what ``consultease run`` does).
"""

from __future__ import annotations

from typing import Any

from central_system.views.backend import KioskBackend


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
