"""Running workload scripts in fresh subprocesses: one call, W4's kill/resume, imports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import MARK  # noqa: E402

SCRIPTS = {
    "graphorch": HERE / "workloads_graphorch.py",
    "langgraph": HERE / "workloads_langgraph.py",
    "burr": HERE / "workloads_burr.py",
}
TIMEOUT = 600.0


def run_worker(
    python: str, framework: str, workload: str, params: dict[str, Any], timeout: float = TIMEOUT
) -> dict[str, Any]:
    """Run one workload in a fresh process (in its own temp dir); its JSON result."""
    directory = tempfile.mkdtemp(prefix=f"bench-{framework}-")
    try:
        args = [python, str(SCRIPTS[framework]), workload, json.dumps({**params, "dir": directory})]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(MARK):
                result: dict[str, Any] = json.loads(line[len(MARK) :])
                if "error" in result:
                    result["stderr"] = proc.stderr[-2000:]
                return result
        return {"error": f"no result (exit {proc.returncode}): {proc.stderr[-2000:]}"}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _read_effects(path: Path) -> list[tuple[str, int, float, int]]:
    rows: list[tuple[str, int, float, int]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            kind, step, when, pid = line.split()
            rows.append((kind, int(step), float(when), int(pid)))
    return rows


def _kill_once(python: str, framework: str, params: dict[str, Any], k: int) -> dict[str, Any]:
    """One W4 round: start the victim, SIGKILL it once it acknowledged ``kill_at``, resume."""
    directory = Path(tempfile.mkdtemp(prefix=f"bench-w4-{framework}-"))
    try:
        p = {
            **params,
            "db": str(directory / "w4.db"),
            "effects": str(directory / "effects.log"),
            "run_id": f"w4-{k}",
            "dir": str(directory),
        }
        script = str(SCRIPTS[framework])
        with open(directory / "victim.err", "w") as err:
            victim = subprocess.Popen(
                [python, script, "W4-victim", json.dumps(p)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
            assert victim.stdout is not None
            signalled = False
            for line in victim.stdout:
                if line.startswith(f"ACK {params['kill_at']}"):
                    signalled = True
                    break
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            victim.stdout.close()
        if not signalled:
            return {"error": "victim never acknowledged: " + (directory / "victim.err").read_text()}
        t_start = time.time()
        resumed = run_worker(python, framework, "W4-resume", p)
        if "error" in resumed:
            return resumed
        rows = _read_effects(Path(p["effects"]))
        acked = {s for kind, s, _, pid in rows if kind == "ack" and pid == victim.pid}
        before = [s for kind, s, _, pid in rows if kind == "exec" and pid == victim.pid]
        after = [(t, s) for kind, s, t, pid in rows if kind == "exec" and pid != victim.pid]
        first = min(after)[0] - t_start if after else float("nan")
        again = {s for _, s in after} & set(before)
        steps = set(range(1, params["steps"] + 1))
        complete = (
            resumed.get("final") == params["steps"]
            and (set(before) | {s for _, s in after}) == steps
        )
        reran_acked = len(again & acked)
        return {
            "killed_at": max(acked) if acked else 0,
            "resumed_at": resumed.get("resumed_at"),
            "first_step_s": first,
            "lease_wait_s": resumed.get("lease_wait_s", 0.0),
            "reran_acked": reran_acked,
            "reran_total": len(again),
            "complete": complete,
            "exactly_once": complete and reran_acked == 0,
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def w4(python: str, framework: str, params: dict[str, Any]) -> dict[str, Any]:
    """W4 over ``kills`` rounds: median time to first new step, exactly-once tally."""
    rounds = [_kill_once(python, framework, params, k) for k in range(params["kills"])]
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return {"error": rounds[0].get("error", "no round succeeded"), "rounds": rounds}
    first = [r["first_step_s"] for r in ok]
    lease = [r["lease_wait_s"] for r in ok]
    return {
        "kills": len(rounds),
        "errors": len(rounds) - len(ok),
        "first_step_s": statistics.median(first),
        "lease_wait_s": statistics.median(lease),
        "first_step_excl_lease_s": statistics.median(
            f - w for f, w in zip(first, lease, strict=True)
        ),
        "exactly_once": sum(1 for r in ok if r["exactly_once"]),
        "reran_acked": sum(r["reran_acked"] for r in ok),
        "reran_total": sum(r["reran_total"] for r in ok),
        "reran_mean": statistics.mean(r["reran_total"] for r in ok),
        "rounds": rounds,
    }


def import_time(python: str, module: str, repeat: int) -> dict[str, Any]:
    """Median wall time of ``python -c 'import module'`` minus a bare interpreter's.

    Bytecode caching is on for every package alike (the peers' wheels come compiled by
    pip; an editable graphorch compiles on its first import, done here before timing),
    so the figure is what a user's second and later imports cost.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def median(code: str) -> float:
        times: list[float] = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([python, "-c", code], check=True, capture_output=True, env=env)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    try:
        subprocess.run([python, "-c", f"import {module}"], check=True, capture_output=True, env=env)
        bare = median("pass")
        full = median(f"import {module}")
    except subprocess.CalledProcessError as exc:
        return {"error": f"import {module} failed: {exc.stderr.decode()[-500:]}"}
    return {"module": module, "import_s": max(full - bare, 0.0), "bare_s": bare}
