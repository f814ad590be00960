"""Helpers shared by every workload script (stdlib only: also runs in the peers' venv).

A workload script is run as ``python bench/workloads_X.py WORKLOAD 'JSON-PARAMS'`` and
prints one line ``BENCH_RESULT {json}`` on stdout. W4 adds two roles, ``W4-victim``
(runs until SIGKILLed) and ``W4-resume`` (finishes the run in a fresh process).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARK = "BENCH_RESULT "
DOC_BYTES = 1024
ITEM = "x" * 100  # the 100-byte string W2 appends


def disk_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of a SQLite database file plus its -wal file (the -shm index is not data)."""
    total = 0
    for suffix in ("", "-wal"):
        p = Path(f"{os.fspath(path)}{suffix}")
        if p.exists():
            total += p.stat().st_size
    return total


def item(i: int) -> str:
    """The 100-byte string W2 and W7 append at iteration or step ``i``."""
    return f"{i:06d}{ITEM}"[:100]


def appended_figures(wall: float, steps: int, size: int, items: int) -> dict[str, Any]:
    """W2's and W7's figures, alike for every framework."""
    return {
        "wall_s": wall,
        "steps": steps,
        "steps_per_s": steps / wall,
        "bytes": size,
        "items": items,
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def docs(count: int) -> dict[str, str]:
    """``count`` distinct documents of DOC_BYTES bytes each (W5's wide state)."""
    return {f"doc{i:04d}": f"{i:04d}".ljust(DOC_BYTES, "d") for i in range(count)}


class SideEffects:
    """W4's side-effect log: one ``kind step time`` line per event, O_APPEND, unbuffered.

    ``exec`` lines are written by a node when it runs (the side effect), ``ack`` lines by
    the driver once the framework reported the step done.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, kind: str, step: int) -> None:
        """Append one line (a single write: atomic with O_APPEND)."""
        os.write(self._fd, f"{kind} {step} {time.time():.6f} {os.getpid()}\n".encode())


def signal_parent(step: int) -> None:
    """Tell the W4 parent that ``step`` was acknowledged (one line on stdout)."""
    sys.stdout.write(f"ACK {step}\n")
    sys.stdout.flush()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of calling ``fn``."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def worker_main(workloads: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Entry point of a workload script: run argv[1] with the JSON params in argv[2]."""
    name = sys.argv[1]
    params: dict[str, Any] = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    try:
        result = workloads[name](params)
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result.setdefault("peak_rss_mb", round(peak_rss_mb(), 1))
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
