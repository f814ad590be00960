"""Crash safety with real processes: SIGKILL anywhere, resume, nothing committed runs twice.

Each scenario starts tests/crash_child.py, which kills itself with SIGKILL at a chosen
point (inside a node, inside a tool call, right after a commit) or is killed by this
test at a random moment (which lands inside steps and inside commits). A fresh process
then resumes the run. After every process we read how many steps are committed; no
later process may execute any of them again, and the final state must be exactly
what an uninterrupted run gives.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("crash_child.py")
STEPS = 12

pytestmark = pytest.mark.slow


def committed_steps(db: Path, run_id: str) -> int:
    """Steps committed so far, read with plain sqlite3 (the max checkpoint seq)."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT MAX(seq) FROM checkpoints WHERE rk = (SELECT rk FROM runs WHERE run_id = ?)",
            (run_id,),
        ).fetchone()
    return int(row[0] or 0)


def spawn(db: Path, log: Path, run_id: str, kill: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(log), run_id, kill, str(STEPS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def executions(log: Path) -> list[tuple[int, int]]:
    if not log.exists():
        return []
    return [(int(p), int(n)) for p, n in (line.split() for line in log.read_text().splitlines())]


def run_scenario(tmp_path: Path, kills: list[str]) -> None:
    db, log = tmp_path / "crash.db", tmp_path / "effects.log"
    run_id = "crashrun"
    committed_before: dict[int, int] = {}  # pid -> steps committed when it started
    for kill in [*kills, "none"]:
        before = committed_steps(db, run_id) if db.exists() else 0
        proc = spawn(db, log, run_id, kill)
        committed_before[proc.pid] = before
        if kill.startswith("random:"):
            delay = float(kill.split(":")[1])
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)  # picks the moment of the kill, asserts nothing
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        if kill == "none" or (kill.startswith("random:") and proc.returncode == 0):
            assert proc.returncode == 0, err
        else:
            assert proc.returncode == -signal.SIGKILL, (kill, proc.returncode, err)
    assert out.splitlines()[-1] == f"succeeded {STEPS}", (out, err)

    # no process executed a step that was already committed when it started
    for pid, n in executions(log):
        assert n > committed_before[pid], f"step {n} re-ran in pid {pid} after being committed"
    done = {n for _, n in executions(log)}
    assert done == set(range(1, STEPS + 1))

    # the final state is exactly what an uninterrupted run gives
    with sqlite3.connect(db) as conn:
        seqs = [
            r[0]
            for r in conn.execute(
                "SELECT seq FROM checkpoints WHERE rk = (SELECT rk FROM runs WHERE run_id = ?) ORDER BY seq",
                (run_id,),
            )
        ]
        status, output = conn.execute(
            "SELECT status, output FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    assert seqs == list(range(STEPS + 2))
    assert status == "succeeded" and json.loads(output) == STEPS

    # tool calls: a call journaled as done is never executed again
    calls: defaultdict[str, list[int]] = defaultdict(list)
    for line in (tmp_path / "effects.log.tool").read_text().splitlines():
        pid, _, key = line.split()
        calls[key].append(int(pid))
    assert len(calls) == STEPS
    for key, pids in calls.items():
        step = int(key.split(":")[1]) + 1
        for pid in pids[:-1]:
            # an earlier execution of the same key died before its step committed
            assert committed_before.get(pid, 0) < step, key


DETERMINISTIC = [
    ["node:1:before"],
    ["node:1:after"],
    ["node:3:before", "node:3:after", "node:3:before"],
    ["commit:1"],
    ["commit:5", "commit:6"],
    ["tool:2"],
    ["tool:4", "node:4:after", "commit:4"],
    ["node:7:after", "tool:8", "commit:9", f"node:{STEPS}:before"],
]


@pytest.mark.parametrize("kills", DETERMINISTIC, ids=["+".join(k) for k in DETERMINISTIC])
def test_kill_at_chosen_points_then_resume(tmp_path: Path, kills: list[str]) -> None:
    run_scenario(tmp_path, kills)


def test_kill_at_random_moments_then_resume(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    kills = [f"random:{rng.uniform(0.0, 0.15):.4f}" for _ in range(8)]
    run_scenario(tmp_path, kills)


def test_a_paused_owner_that_lost_its_lease_writes_nothing_after_waking(tmp_path: Path) -> None:
    db, log = tmp_path / "fence.db", tmp_path / "effects.log"
    env = {**os.environ, "GRAPHORCH_TEST_TTL": "1.0"}
    cmd = [sys.executable, str(CHILD), str(db), str(log), "fenced"]
    first = subprocess.Popen(
        [*cmd, "hold:4", str(STEPS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    hold = Path(f"{log}.hold")
    deadline = time.monotonic() + 30
    try:
        while not hold.exists():  # the first owner is inside step 4, holding the lease
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.01)
        # Step 3's commit may still be in its writer thread (commits are pipelined):
        # paused inside a write transaction, it would keep every other process from
        # writing until it wakes, which is SQLite's locking, not what is tested here.
        while committed_steps(db, "fenced") < 3:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)
        try:
            second = subprocess.run(
                [*cmd, "none", str(STEPS)], capture_output=True, text=True, env=env, timeout=60
            )
            assert second.stdout.splitlines()[-1] == f"succeeded {STEPS}", second.stderr
            finished = committed_steps(db, "fenced")
        finally:
            first.send_signal(signal.SIGCONT)
        Path(f"{log}.go").touch()
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:  # a failure above: leave no process (or pipe) behind
            first.kill()
            first.communicate()
    assert first.returncode == 0, err
    assert out.splitlines()[-1].startswith("stopped:"), out
    assert "another owner" in out
    # the woken owner added nothing: the same checkpoints, the run still succeeded
    assert committed_steps(db, "fenced") == finished == STEPS + 1
    with sqlite3.connect(db) as conn:
        status, output = conn.execute(
            "SELECT status, output FROM runs WHERE run_id = 'fenced'"
        ).fetchone()
    assert status == "succeeded" and json.loads(output) == STEPS


def test_an_interrupted_non_idempotent_call_needs_attention_then_an_operator_settles_it(
    tmp_path: Path,
) -> None:
    import anyio

    import graphorch as go

    db, log = tmp_path / "charge.db", tmp_path / "effects.log"
    env = {**os.environ, "CRASH_CHARGE_AT": "3"}
    cmd = [sys.executable, str(CHILD), str(db), str(log), "charged"]
    killed = subprocess.run([*cmd, "charge:3", str(STEPS)], capture_output=True, env=env)
    assert killed.returncode == -signal.SIGKILL
    stuck = subprocess.run([*cmd, "none", str(STEPS)], capture_output=True, text=True, env=env)
    assert stuck.returncode == 0, stuck.stderr
    assert stuck.stdout.splitlines()[-1] == "needs_attention None"
    charges = (tmp_path / "effects.log.charge").read_text().splitlines()
    assert len(charges) == 1  # the uncertain call was not repeated

    async def settle() -> str:
        store = go.SQLiteStore(db)
        rt = go.Runtime(store)
        record = await rt.get_run("charged")
        assert record.status is go.RunStatus.NEEDS_ATTENTION
        assert "charge" in (record.reason or "") and "not idempotent" in (record.reason or "")
        [call] = [c for c in await rt.calls("charged") if c.status is go.CallStatus.STARTED]
        assert call.tool == "charge"
        settled = await rt.resolve_call("charged", call.key, by="operator", result="c3")
        await store.close()
        return settled.key

    anyio.run(settle)
    done = subprocess.run([*cmd, "none", str(STEPS)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"succeeded {STEPS}"
    assert len((tmp_path / "effects.log.charge").read_text().splitlines()) == 1


FANOUT = Path(__file__).with_name("fanout_child.py")


def test_a_fan_out_of_50_children_killed_half_way_resumes_without_redoing_finished_ones(
    tmp_path: Path,
) -> None:
    db, log = tmp_path / "fanout.db", tmp_path / "children.log"
    cmd = [sys.executable, str(FANOUT), str(db), str(log), "fan"]
    killed = subprocess.run([*cmd, "20"], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with sqlite3.connect(db) as conn:
        finished = {
            int(run_id.rsplit("-", 1)[1])
            for (run_id,) in conn.execute(
                "SELECT run_id FROM runs WHERE parent_run = 'fan' AND status = 'succeeded'"
            )
        }
    assert finished  # some children completed and committed before the kill
    before = executions(log)
    resumed = subprocess.run([*cmd, "0"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    expected = sum(i * i for i in range(50))
    assert resumed.stdout.splitlines()[-1] == f"succeeded {expected}"
    after = executions(log)[len(before) :]
    rerun = {item for _, item in after} & finished
    assert rerun == set(), f"finished children ran again: {sorted(rerun)}"
    assert {item for _, item in before + after} == set(range(50))
    with sqlite3.connect(db) as conn:
        [(children,)] = conn.execute("SELECT COUNT(*) FROM runs WHERE parent_run = 'fan'")
    assert children == 50
