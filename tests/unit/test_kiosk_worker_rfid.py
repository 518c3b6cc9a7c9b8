"""The kiosk's task manager and the RFID readers (no network)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from central_system.services.rfid import (
    InvalidUIDError,
    SimulatedRFIDReader,
    UidAssembler,
    create_reader,
    normalize_uid,
)


def test_task_runs_on_the_worker_and_result_arrives_on_the_qt_thread(qtbot: Any) -> None:
    from central_system.views.worker import TaskManager

    tm = TaskManager()
    seen: dict[str, Any] = {}

    def work() -> int:
        seen["worker"] = threading.current_thread()
        return 42

    def ok(result: int) -> None:
        seen["result"] = result
        seen["callback"] = threading.current_thread()

    tm.run(work, ok)
    qtbot.waitUntil(lambda: "result" in seen, timeout=10_000)
    assert seen["result"] == 42
    assert seen["worker"] is not threading.main_thread()
    assert seen["callback"] is threading.main_thread()
    assert tm.pending == 0
    tm.shutdown()


def test_task_failure_goes_to_the_failure_callback(qtbot: Any) -> None:
    from central_system.views.worker import TaskManager

    tm = TaskManager()
    errors: list[BaseException] = []

    def boom() -> None:
        raise ValueError("nope")

    tm.run(boom, lambda _r: pytest.fail("success called"), errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=10_000)
    assert isinstance(errors[0], ValueError) and str(errors[0]) == "nope"
    tm.shutdown()


def test_tasks_run_in_submission_order_on_one_thread(qtbot: Any) -> None:
    from central_system.views.worker import TaskManager

    tm = TaskManager()
    order: list[int] = []
    threads: set[int] = set()

    def job(i: int) -> int:
        threads.add(threading.get_ident())
        return i

    for i in range(20):
        tm.run(lambda i=i: job(i), order.append)
    qtbot.waitUntil(lambda: len(order) == 20, timeout=10_000)
    assert order == list(range(20))
    assert len(threads) == 1  # one worker serialises database access
    tm.shutdown()


@pytest.mark.parametrize(
    ("raw", "uid"),
    [
        ("04:a1:b2:c3", "04A1B2C3"),
        (" deadbeef ", "DEADBEEF"),
        ("0x1A2B3C", "1A2B3C"),
        ("12-34-56", "123456"),
    ],
)
def test_uids_are_normalised_like_the_student_controller(raw: str, uid: str) -> None:
    from central_system.controllers.student_controller import normalize_rfid_uid

    assert normalize_uid(raw) == uid == normalize_rfid_uid(raw)


@pytest.mark.parametrize("raw", ["", "12", "XYZ123", "1" * 65])
def test_bad_uids_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidUIDError):
        normalize_uid(raw)


def test_simulated_reader_delivers_normalised_uids_and_drops_garbage() -> None:
    reader = SimulatedRFIDReader()
    got: list[str] = []
    remove = reader.add_callback(got.append)
    reader.tap("ab:cd:ef:01")
    reader.tap("not a card")
    assert got == ["ABCDEF01"]
    remove()
    reader.tap("ABCDEF02")
    assert got == ["ABCDEF01"]


def test_keyboard_wedge_digits_are_assembled_until_enter() -> None:
    asm = UidAssembler(max_gap_s=1.0)
    keys = ["KEY_0", "KEY_4", "KEY_A", "KEY_KP1", "KEY_LEFTSHIFT", "KEY_B"]
    assert all(asm.feed(k, now=0.01 * i) is None for i, k in enumerate(keys))
    assert asm.feed("KEY_ENTER", now=0.1) == "04A1B"
    # A stale partial read (a gap longer than a reader ever takes) is discarded.
    asm.feed("KEY_9", now=1.0)
    assert asm.feed("KEY_1", now=5.0) is None
    assert asm.feed("KEY_KPENTER", now=5.01) == "1"
    assert asm.feed("KEY_ENTER", now=5.02) is None


def test_without_a_device_the_reader_is_simulated() -> None:
    assert isinstance(create_reader(None), SimulatedRFIDReader)


def test_installed_pyside_keeps_refcounts_of_none_and_bools(qtbot: Any) -> None:
    """PySide6 6.12.0 on CPython 3.11 decrefs the returned None/True on every call: the kiosk aborts."""
    import sys

    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        changed = Signal(int)

    emitter = Emitter()
    got: list[int] = []
    emitter.changed.connect(got.append)
    before_true, before_none = sys.getrefcount(True), sys.getrefcount(None)
    for i in range(2000):
        emitter.changed.emit(i)  # Signal.emit returns a bool
        emitter.setObjectName("emitter")  # returns None
    assert len(got) == 2000
    # Other threads may hold a few more or fewer references meanwhile; a leak is 2000.
    assert sys.getrefcount(True) > before_true - 500
    assert sys.getrefcount(None) > before_none - 500


def test_bridge_delivers_bursts_in_order_and_merges_repeats(qtbot: Any) -> None:
    from central_system.views.bridge import MqttBridge

    bridge = MqttBridge(budget_ms=1.0)
    seen: list[tuple[int, str]] = []
    bridge.consultations_changed.connect(lambda changes: seen.extend(changes.items()))
    done = threading.Event()

    def burst() -> None:
        for i in range(5000):
            bridge.on_consultation(i, "pending")
        bridge.on_consultation(7, "accepted")  # 7 is delivered once, with its newest status
        done.set()

    threading.Thread(target=burst).start()
    qtbot.waitUntil(
        lambda: done.is_set() and bridge.backlog == 0 and len({c for c, _ in seen}) == 5000,
        timeout=20_000,
    )
    assert {cid for cid, _ in seen} == set(range(5000))  # nothing lost
    assert [status for cid, status in seen if cid == 7][-1] == "accepted"  # newest status wins
    assert len(seen) <= 5001  # a repeat waiting in the queue is merged, never duplicated
    assert bridge.delivered == len(seen)
