"""Where a graphorch workload's time goes: CPU per thread and the garbage collector.

    python bench/threads.py W6              # 1,000 runs x 10 steps, SQLite store
    python bench/threads.py W1 --memory     # the chain with the in-memory store
    python bench/threads.py W2 --size 300   # the loop, 300 iterations

With a SQLite store, the event loop thread and the store's writer thread share one GIL,
so the wall time is about the sum of their CPU times; this shows each, read from
/proc/self/task (Linux), and how much of the event loop's went to the garbage collector.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads_graphorch as wg
from run import SIZES


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of every thread of this process, by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        name = names.get(int(tid), f"thread {tid}")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


class GcTimer:
    """Wall time spent in garbage collections, by generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._start
            self.count[info["generation"]] += 1


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the breakdown."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("workload", choices=["W1", "W2", "W6"])
    ap.add_argument("--size", type=int, help="runs (W1, W6) or iterations (W2)")
    ap.add_argument("--memory", action="store_true", help="the in-memory store")
    args = ap.parse_args(argv)
    params = dict(SIZES["full"][args.workload])
    count = "iterations" if args.workload == "W2" else "runs"
    if args.size:
        params[count] = args.size
    if args.memory:
        params["store"] = "memory"
    timer = GcTimer()
    cpu: dict[str, dict[str, float]] = {}

    def probe(what: str) -> None:
        cpu[what] = thread_cpu()  # before the store closes: its threads still exist
        if what == "start":
            gc.callbacks.append(timer)
        else:
            gc.callbacks.remove(timer)

    # bench/run.py's own workload, measured over its timed part only
    wg.PROBES.append(probe)
    result = wg.WORKLOADS[args.workload]({**params, "dir": tempfile.mkdtemp(prefix="threads-")})
    before, after = cpu["start"], cpu["stop"]
    steps = {"W1": 100 * params.get("runs", 0), "W2": 2 * params.get("iterations", 0)}.get(
        args.workload, params.get("steps", 0) * params.get("runs", 0)
    )
    wall = result["wall_s"]
    print(
        f"{args.workload} x{params[count]} ({'memory' if args.memory else 'SQLite'} store): "
        f"{steps} steps in {wall:.3f} s, {steps / wall:,.0f} steps/s"
    )
    for name, cpu in sorted(after.items(), key=lambda kv: -kv[1]):
        spent = cpu - before.get(name, 0.0)
        # named (Python) threads always; /proc counts CPU in 10 ms ticks
        if spent >= 0.005 or not name.startswith("thread "):
            print(f"  {name:32} {spent:6.2f} s CPU  {spent / steps * 1e6:6.1f} us/step")
    print(
        f"  garbage collector (gen 0/1/2)     {sum(timer.seconds):6.2f} s     "
        f"{timer.count[0]}/{timer.count[1]}/{timer.count[2]} collections, "
        + "/".join(f"{s:.2f}" for s in timer.seconds)
        + " s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
