"""Smoke test of the bench harness: every graphorch workload at a tiny size, no peers.

It proves the workloads still run against the current API and really do their work;
it asserts no timings (the machines are shared and noisy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
TINY = {
    "W1": {"length": 10, "runs": 2},
    "W2": {"iterations": 20},
    "W7": {"steps": 20},
    "W3": {"width": 10, "delay": 0.001, "repeat": 1},
    "W5": {"docs": 20, "steps": 5},
    "W6": {"runs": 10, "steps": 3, "delay": 0.001},
}


def _drivers() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        import drivers  # pyright: ignore[reportMissingImports]
    finally:
        sys.path.remove(str(BENCH))
    return drivers


def _worker(workload: str, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = _drivers().run_worker(
        sys.executable, "graphorch", workload, {**TINY[workload], **extra}, timeout=60
    )
    assert "error" not in result, result
    assert isinstance(result["peak_rss_mb"], float)
    return result


@pytest.mark.slow
def test_w1_chain_counts_to_its_length_with_and_without_a_store() -> None:
    for extra in ({}, {"store": "memory"}):
        r = _worker("W1", **extra)
        assert r["counters_ok"] is True and r["counter"] == 10
        assert r["steps"] == 20 and r["steps_per_s"] > 0 and r["wall_s"] > 0


@pytest.mark.slow
def test_w7_appends_an_item_every_step() -> None:
    r = _worker("W7")
    assert r["status"] == "succeeded"
    assert r["items"] == 20 and r["steps"] == 20
    assert r["bytes"] > 0


@pytest.mark.slow
def test_w2_loop_calls_the_tool_every_iteration() -> None:
    r = _worker("W2")
    assert r["status"] == "succeeded"
    assert r["items"] == 20 and r["steps"] == 40
    assert r["bytes"] > 0


@pytest.mark.slow
def test_w3_fan_out_joins_every_branch() -> None:
    r = _worker("W3")
    assert r["joined"] == 10 and len(r["walls"]) == 1


@pytest.mark.slow
def test_w5_wide_state_keeps_its_documents() -> None:
    r = _worker("W5")
    assert r["counter"] == 5 and r["docs"] == 20 and r["bytes"] > 0


@pytest.mark.slow
def test_w6_many_runs_all_finish() -> None:
    r = _worker("W6")
    assert r["runs_done"] == 10 and r["counters_ok"] is True


@pytest.mark.slow
def test_w4_kill_and_resume_runs_each_acknowledged_step_once() -> None:
    params = {"steps": 12, "kill_at": 5, "delay": 0.002, "lease_ttl": 0.5, "kills": 1}
    r = _drivers().w4(sys.executable, "graphorch", params)
    assert "error" not in r, r
    (one,) = r["rounds"]
    assert one["killed_at"] >= 5 and one["resumed_at"] >= 5
    assert one["complete"] and one["exactly_once"] and one["reran_acked"] == 0
    assert r["exactly_once"] == 1 and r["first_step_s"] > 0


@pytest.mark.slow
def test_run_py_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(BENCH / "run.py"), "--tiny", "--no-peers", "--only", "W1,import"]
    cmd += ["--graphorch-python", sys.executable]  # no virtualenv to build in a test
    proc = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "chain, checkpointed" in proc.stdout and "import time" in proc.stdout
    data = json.loads(out.read_text())
    assert data["info"]["size"] == "tiny" and data["info"]["machine"]["nproc"] >= 1
    assert data["info"]["graphorch_python"] == sys.executable
    results = data["results"]
    assert set(results) == {"W1", "import"}
    assert set(results["W1"]) == {"graphorch", "graphorch (memory)"}
    assert results["import"]["graphorch"]["import_s"] >= 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_threads_py_splits_cpu_between_the_event_loop_and_the_writer() -> None:
    cmd = [sys.executable, str(BENCH / "threads.py"), "W6", "--size", "10"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "W6 x10 (SQLite store): 100 steps in" in proc.stdout
    assert "MainThread" in proc.stdout and "graphorch-sqlite-writer" in proc.stdout
    assert "garbage collector (gen 0/1/2)" in proc.stdout


@pytest.mark.slow
def test_startup_py_times_every_phase_of_a_resume() -> None:
    cmd = [sys.executable, str(BENCH / "startup.py"), "--rounds", "1", "--python", sys.executable]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    phases = [line.split()[-1] for line in lines[2:-1]]  # "since start" of each phase
    assert len(phases) == 8
    assert [float(p) for p in phases] == sorted(float(p) for p in phases)  # in order
    assert "graphorch's own phases together" in lines[-1]
