"""Where do the kiosk's late ticks come from? A diagnostic companion of ui_responsiveness.py.

Runs the kiosk scenarios of ``benchmarks/ui_responsiveness.py`` (not the naive ones) and
records, on one clock (``time.perf_counter``):

- every probe tick and its lateness;
- every garbage collection (``gc.callbacks``: generation, duration);
- every call of the kiosk's Qt-thread slots (bridge drain, worker callbacks, dashboard
  and "My consultations" updates), wall time;
- optionally (``--sample-ms``) what the other threads are running, from a sampler thread;
- at every tick, the Qt thread's run time and run-queue wait from
  ``/proc/thread-self/schedstat``: a late interval the thread spent runnable but without
  a core is the machine's load, not the kiosk's work (issue 9).

For each tick later than ``--late-ms`` it attributes the late interval to GC, to our
slots, or to neither (Qt's own C++ work, or waiting for the GIL), and prints totals.

    .venv/bin/python benchmarks/ui_lag_diagnose.py [--scenarios abc] [--sample-ms 2] [--backend thread]
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import ui_responsiveness as ui  # noqa: E402

from central_system.views import bridge, main_window, student, worker  # noqa: E402

MAIN = threading.get_ident()
ticks: list[tuple[float, float]] = []  # (time, lateness ms)
sched: list[tuple[int, int]] = []  # per tick: Qt thread's (run ns, run-queue wait ns)
gcs: list[tuple[float, float, int]] = []  # (start, end, generation)
slots: list[tuple[float, float, str]] = []  # (start, end, name), Qt thread only
samples: list[tuple[float, str, str]] = []  # (time, thread name, frame)
_gc_start: dict[str, float] = {}


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_start["t"] = time.perf_counter()
    else:
        gcs.append(
            (_gc_start.get("t", time.perf_counter()), time.perf_counter(), info["generation"])
        )


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != MAIN:
            return fn(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            slots.append((t0, time.perf_counter(), name))

    return wrapper


def instrument() -> None:
    """Wrap the Qt-thread entry points (before the kiosk connects its signals)."""
    targets = {
        bridge.MqttBridge: ["_drain"],
        worker.TaskManager: ["_deliver"],
        student.DashboardScreen: [
            "set_faculty",
            "_apply_updates",
            "_on_faculty_changed",
            "refresh",
            "_apply_filter",
            "_relayout",
        ],
        student.FacultyCard: ["update_view"],
        student.MyConsultationsScreen: ["_loaded", "_place_rows", "_on_changed"],
        student.RequestFormScreen: ["_on_consultation_changed", "start", "_sent_ok"],
        ui.ScriptedStudent: ["step"],
    }
    for cls, names in targets.items():
        for name in names:
            setattr(cls, name, _timed(f"{cls.__name__}.{name}", getattr(cls, name)))
    for name in dir(main_window.KioskWindow):
        fn = getattr(main_window.KioskWindow, name)
        if (name.startswith("_on") or name in ("logout", "show_screen")) and callable(fn):
            setattr(main_window.KioskWindow, name, _timed(f"KioskWindow.{name}", fn))

    orig_tick = ui.LagProbe._tick

    def tick(self: ui.LagProbe) -> None:
        orig_tick(self)
        ticks.append((time.perf_counter(), self.samples[-1]))
        run, wait = Path("/proc/thread-self/schedstat").read_text().split()[:2]
        sched.append((int(run), int(wait)))

    ui.LagProbe._tick = tick  # type: ignore[method-assign]
    gc.callbacks.append(_on_gc)


def sampler(interval_s: float, stop: threading.Event) -> None:
    """Record the innermost frame of every non-Qt thread every ``interval_s``."""
    names = {}
    me = threading.get_ident()
    while not stop.wait(interval_s):
        now = time.perf_counter()
        for t in threading.enumerate():
            names[t.ident] = t.name
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            f = frame
            # Skip the idle waits so that only threads doing work show.
            code = f.f_code
            where = f"{code.co_name} ({Path(code.co_filename).name}:{f.f_lineno})"
            samples.append((now, names.get(ident, str(ident)), where))


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def analyse(name: str, t0: float, t1: float, late_ms: float) -> None:
    """Attribute the late interval of every late tick in [t0, t1]."""
    late = [(t, lat) for t, lat in ticks if t0 <= t <= t1 and lat > late_ms]
    # The Qt thread's run time and run-queue wait between the tick before and a late tick.
    runq_ms = ran_ms = 0.0
    for i, (t, lat) in enumerate(ticks):
        if i and t0 <= t <= t1 and lat > late_ms and len(sched) == len(ticks):
            ran_ms += (sched[i][0] - sched[i - 1][0]) / 1e6
            runq_ms += (sched[i][1] - sched[i - 1][1]) / 1e6
    n = sum(1 for t, _ in ticks if t0 <= t <= t1)
    print(f"\n== {name}: {n} ticks, {len(late)} later than {late_ms} ms")
    by_slot: collections.Counter[str] = collections.Counter()
    by_gc: collections.Counter[int] = collections.Counter()
    other = 0.0
    sampled: collections.Counter[str] = collections.Counter()
    for t, lat in late:
        w0, w1 = t - lat / 1000.0, t
        covered = 0.0
        for g0, g1, gen in gcs:
            o = overlap(w0, w1, g0, g1)
            if o:
                by_gc[gen] += int(o * 1e6)
                covered += o
        for s0, s1, sname in slots:
            o = overlap(w0, w1, s0, s1)
            if o:
                by_slot[sname] += int(o * 1e6)
                covered += o
        rest = max(0.0, (w1 - w0) - covered)
        other += rest
        for st, thread, where in samples:
            if w0 <= st <= w1:
                sampled[f"{thread}: {where}"] += 1
    for t, lat in sorted(late, key=lambda x: -x[1])[:5]:
        w0 = t - lat / 1000.0
        near = collections.Counter(
            f"{thread}: {where}"
            for st, thread, where in samples
            if w0 <= st <= t and not where.startswith(("select ", "wait ", "_worker "))
        )
        print(f"   worst: {lat:.1f} ms at +{w0 - t0:.2f} s; threads: {near.most_common(6)}")
    total = sum(lat for _, lat in late)
    print(f"   late time total {total:.1f} ms")
    print(
        f"   Qt thread over those late intervals: waiting for a core (run queue) {runq_ms:.1f} ms,"
        f" running {ran_ms:.1f} ms (intervals include the 16 ms period)"
    )
    for gen, us in sorted(by_gc.items()):
        print(f"   gc gen{gen}: {us / 1000:.1f} ms")
    for sname, us in by_slot.most_common(12):
        print(f"   slot {sname}: {us / 1000:.1f} ms")
    print(f"   neither (Qt C++ or GIL wait): {other * 1000:.1f} ms")
    if sampled:
        print("   other threads during late windows (samples):")
        for k, c in sampled.most_common(15):
            print(f"     {c:5d}  {k}")
    # Whole-scenario totals, for scale.
    slot_tot: collections.Counter[str] = collections.Counter()
    for s0, s1, sname in slots:
        if t0 <= s0 <= t1:
            slot_tot[sname] += int((s1 - s0) * 1e6)
    gc_tot: collections.Counter[int] = collections.Counter()
    gc_max: dict[int, float] = {}
    for g0, g1, gen in gcs:
        if t0 <= g0 <= t1:
            gc_tot[gen] += 1
            gc_max[gen] = max(gc_max.get(gen, 0.0), (g1 - g0) * 1000)
    print(
        f"   scenario: gc counts {dict(gc_tot)}, max ms { ({k: round(v, 1) for k, v in gc_max.items()}) }"
    )
    long_slots = sorted(((s1 - s0) * 1000, sname) for s0, s1, sname in slots if t0 <= s0 <= t1)[-8:]
    print(
        f"   slot time in scenario (ms): {[(k, round(v / 1000, 1)) for k, v in slot_tot.most_common(8)]}"
    )
    print(f"   longest slot calls (ms): {[(round(d, 1), s) for d, s in long_slots]}")
    lats = sorted(lat for t, lat in ticks if t0 <= t <= t1)
    if lats:
        print(f"   p50 {ui.pct(lats, 0.5):.2f} p99 {ui.pct(lats, 0.99):.2f} max {lats[-1]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", default="abc")
    parser.add_argument("--late-ms", type=float, default=3.0)
    parser.add_argument("--sample-ms", type=float, default=0.0)
    parser.add_argument(
        "--count-filter", action="store_true", help="count InactivityMonitor.eventFilter calls"
    )
    parser.add_argument(
        "--no-app-filter", action="store_true", help="experiment: remove the app-wide event filter"
    )
    ui.add_backend_argument(parser)
    args = parser.parse_args()
    instrument()
    calls = {"n": 0}
    if args.count_filter:
        orig = main_window.InactivityMonitor.eventFilter

        def counting(self: Any, watched: Any, event: Any) -> bool:
            calls["n"] += 1
            return orig(self, watched, event)

        main_window.InactivityMonitor.eventFilter = counting  # type: ignore[method-assign]
    b = ui.Bench(args.backend)
    if args.no_app_filter:
        b.app.removeEventFilter(b.kiosk.window.inactivity)
    stop = threading.Event()
    if args.sample_ms > 0:
        threading.Thread(
            target=sampler, args=(args.sample_ms / 1000, stop), daemon=True, name="sampler"
        ).start()
    fleet = None
    marks: list[tuple[str, float, float]] = []
    try:
        if "a" in args.scenarios:
            t0 = time.perf_counter()
            ui.scenario_a(b)
            marks.append((f"(a) {ui.MESSAGES:,} messages", t0, time.perf_counter()))
        if "b" in args.scenarios:
            t0 = time.perf_counter()
            _, note = ui.scenario_b(b)
            marks.append((f"(b) broker down: {note}", t0, time.perf_counter()))
        if "c" in args.scenarios:
            fleet = ui.setup_flap(b)
            t0 = time.perf_counter()
            _, note = ui.scenario_c(b)
            marks.append((f"(c) 200 desks: {note}", t0, time.perf_counter()))
    finally:
        stop.set()
        if fleet is not None:
            fleet.terminate()
            fleet.wait(15)
        b.close()
    for name, t0, t1 in marks:
        analyse(name, t0, t1, args.late_ms)
    if args.count_filter:
        print(f"InactivityMonitor.eventFilter calls: {calls['n']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
