"""Resume, fork and the audit log on the SQLite store, and what resume refuses."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import graphorch as go


class Count(BaseModel):
    n: int = 0


def counter(name: str = "counter", steps: int = 4) -> go.Graph[Count, Any]:
    g = go.Graph(name, state=Count, max_steps=50)
    g.plan("inc", lambda s: {"n": s.n + 1}, max_visits=steps + 1)
    g.end("done", output=lambda s: s.n)
    g.edge(go.START, "inc").edge("inc", "done", when=lambda s: s.n >= steps).edge("inc", "inc")
    return g


async def test_fork_from_the_middle_of_a_finished_run_both_branches_listed(tmp_path: Path) -> None:
    store = go.SQLiteStore(tmp_path / "fork.db")
    rt = go.Runtime(store)
    g = counter()
    run = await rt.start(g, Count())
    assert (await run.wait()).output == 4
    fork = await rt.fork(run.id, at=2, patch={"n": 100})
    await fork.step()  # a step on the branch, then a new process takes over
    await fork._release()  # pyright: ignore[reportPrivateUsage]
    await store.close()
    store = go.SQLiteStore(tmp_path / "fork.db")
    rt = go.Runtime(store, graphs=[g])
    assert (await (await rt.resume(fork.id)).wait()).output == 101
    assert (await (await rt.resume(run.id)).wait()).output == 4  # the original is untouched
    listed = {r.run_id: r for r in await store.list_runs()}
    assert set(listed) == {run.id, fork.id}
    assert listed[fork.id].forked_from == f"{run.id}:2"
    history = await rt.history(fork.id)
    assert history[0].parent == f"{run.id}:2"  # the checkpoint tree links the branches
    await store.close()


async def test_resuming_with_another_graph_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    store = go.SQLiteStore(tmp_path / "other.db")
    rt = go.Runtime(store)
    run = await rt.start(counter(), Count())
    await run.step()
    await run._release()  # pyright: ignore[reportPrivateUsage]
    with pytest.raises(go.IncompatibleGraphError, match="started with graph 'counter'"):
        await go.Runtime(store).resume(run.id, counter("impostor"))
    changed = counter()
    changed.plan("extra", lambda s: None)
    changed.edge("extra", "done")
    changed.edge(go.START, "extra", when=lambda s: False)
    with pytest.raises(go.IncompatibleGraphError, match="changed shape"):
        await go.Runtime(store).resume(run.id, changed)
    assert (await store.get_run(run.id)).seq == 1
    await store.close()


class Renamed(BaseModel):
    count: int  # the field was renamed since the run was stored


async def test_a_stored_state_that_no_longer_fits_the_schema_is_refused(tmp_path: Path) -> None:
    store = go.SQLiteStore(tmp_path / "schema.db")
    rt = go.Runtime(store)
    run = await rt.start(counter(), Count())
    await run.step()
    await run._release()  # pyright: ignore[reportPrivateUsage]
    g = go.Graph("counter", state=Renamed, max_steps=50)
    g.plan("inc", lambda s: {"count": s.count + 1}, max_visits=5)
    g.end("done")
    g.edge(go.START, "inc").edge("inc", "done", when=lambda s: s.count >= 4).edge("inc", "inc")
    with pytest.raises(go.IncompatibleGraphError, match="no longer fits Renamed"):
        await go.Runtime(store).resume(run.id, g, allow_graph_change=True)
    assert (await store.get_checkpoint(run.id)).state == {"n": b"1"}
    await store.close()


async def test_the_audit_log_exports_as_json_lines_and_verifies(tmp_path: Path) -> None:
    store = go.SQLiteStore(tmp_path / "audit.db")
    rt = go.Runtime(store)
    run = await rt.start(counter(), Count())
    await run.wait()
    written = await rt.export_audit(run.id, tmp_path / "audit.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert written == len(rows) == len(await store.list_events(run.id))
    assert [r["position"] for r in rows] == list(range(len(rows)))
    assert rows[0]["event"]["kind"] == "run_started"
    assert all(a["hash"] == b["prev_hash"] for a, b in itertools.pairwise(rows))
    assert (await rt.verify_audit(run.id)).ok
    await store.close()


MANY = textwrap.dedent(
    """
    import sys, anyio
    from pydantic import BaseModel
    import graphorch as go

    class Count(BaseModel):
        n: int = 0

    g = go.Graph("many", state=Count)
    for i in range(5):
        g.plan(f"s{i}", lambda s: {"n": s.n + 1})
    g.end("done", output=lambda s: s.n)
    g.edge(go.START, "s0")
    for i in range(4):
        g.edge(f"s{i}", f"s{i+1}")
    g.edge("s4", "done")

    async def main() -> None:
        store = go.SQLiteStore(sys.argv[1])
        rt = go.Runtime(store)
        outputs = []

        async def one() -> None:
            outputs.append((await (await rt.start(g, Count())).wait()).output)

        async with anyio.create_task_group() as tg:
            for _ in range(int(sys.argv[2])):
                tg.start_soon(one)
        await store.close()
        print(sum(outputs))

    anyio.run(main)
    """
)


@pytest.mark.slow
def test_four_processes_and_many_runs_on_one_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MANY, str(db), "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "locked" not in err
        assert out.strip() == str(50 * 5)

    async def check() -> None:
        store = go.SQLiteStore(db)
        runs = await store.list_runs(limit=None)
        assert len(runs) == 200 and {r.status for r in runs} == {go.RunStatus.SUCCEEDED}
        assert (await store.verify_events()).ok
        await store.close()

    anyio.run(check)
