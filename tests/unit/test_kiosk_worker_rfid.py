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
