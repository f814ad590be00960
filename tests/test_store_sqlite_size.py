"""Bytes on disk of the SQLite store for a W2-shaped run, measured while it is open."""

from __future__ import annotations

from pathlib import Path

from store_conformance import call, new_run, settle, step, tool_event

from graphorch.events import StepFinished
from graphorch.store._sqlite_schema import WAL_PAGES
from graphorch.store.base import AppendField, SetField
from graphorch.store.journal import CallStatus
from graphorch.store.sqlite import SQLiteStore
from graphorch.types import RunId


def size(path: Path, suffix: str = "") -> int:
    p = Path(f"{path}{suffix}")
    return p.stat().st_size if p.exists() else 0


async def test_loop_run_stays_small_with_its_wal(tmp_path: Path) -> None:
    """plan -> tool -> plan, 1,000 times: 2,000 checkpoints, 1,000 journaled calls and
    1,000 appended 100-byte items (the W2 benchmark). Version 3 rows took 2.0 MB beside
    a 4 MB WAL; compact rows and a bounded WAL keep both small."""
    path = tmp_path / "loop.db"
    store = SQLiteStore(path)
    rid = RunId("37ef9aff364e6f36")  # a runtime-style id: 16 hex digits
    await new_run(store, rid, state={"i": b"0", "items": b"[]"})
    lease = await store.acquire_lease(rid, "me", 600)
    seq = 0
    for i in range(1, 1001):
        seq += 1
        done = StepFinished(
            run_id=rid,
            step=seq,
            node="plan",
            changed=("i",),
            next_nodes=("act",),
            checkpoint=f"{rid}:{seq}",
        )
        await step(store, rid, seq, {"i": SetField(str(i).encode())}, lease=lease, events=[done])
        started = call(rid, seq, node="act", tool="append_item")
        item = b'["' + f"{i:06d}".encode() + b"x" * 94 + b'"]'
        ok = settle(started, CallStatus.SUCCEEDED, result=item)
        seq += 1
        finished = StepFinished(
            run_id=rid,
            step=seq,
            node="act",
            changed=("items",),
            next_nodes=("plan",),
            checkpoint=f"{rid}:{seq}",
        )
        await step(
            store,
            rid,
            seq,
            {"items": AppendField(item)},
            lease=lease,
            calls=[ok],
            events=[tool_event(ok, "succeeded"), finished],
        )
    wal = size(path, "-wal")
    main = size(path)
    assert wal <= WAL_PAGES * 4096 + 64 * 4096, wal  # bounded: a commit's pages over
    assert main < 1_300_000, main
    assert main + wal < 2_500_000, (main, wal)
    items = (await store.get_checkpoint(rid)).state["items"]
    assert items.count(b'"') == 2000
    assert len(await store.list_calls(rid)) == 1000
    assert (await store.verify_events(rid)).ok
    await store.close()


async def test_runtime_loop_file_grows_with_what_changed(tmp_path: Path) -> None:
    """The same loop through the runtime (its own events, meta and journal rows): the
    file stays under 1.14 MB. Checkpoint meta once spelled out its defaults
    (``"visits":{}``, ``"cost":0.0``) in every row: 1.16 MB."""
    from typing import Annotated, Any

    from pydantic import BaseModel

    import graphorch as go

    class Loop(BaseModel):
        i: int = 0
        items: Annotated[list[str], go.append] = []

    g: go.Graph[Loop, None] = go.Graph("loop", state=Loop, max_steps=2010)

    async def plan(state: Loop) -> dict[str, Any]:
        return {"i": state.i + 1}

    g.plan("plan", plan)
    g.tool("act", tool="append_item", args=lambda s: {"i": s.i}, result="items")
    g.end("done")
    g.edge(go.START, "plan")
    g.edge("plan", "act", when=lambda s: s.i <= 1000)
    g.edge("plan", "done")
    g.edge("act", "plan")
    tools = go.ToolRegistry()

    @tools.tool(idempotent=True)
    async def append_item(i: int) -> list[str]:  # pyright: ignore[reportUnusedFunction]
        return [f"{i:06d}" + "x" * 94]

    path = tmp_path / "loop.db"
    rt = go.Runtime(go.SQLiteStore(path), tools=tools)
    result = await (await rt.start(g, Loop())).wait()
    assert result.status is go.RunStatus.SUCCEEDED and len(result.state.items) == 1000
    await rt.store.close()  # folds the WAL into the file
    assert size(path, "-wal") == 0
    assert size(path) < 1_140_000, size(path)


async def test_a_thousand_appending_steps_stay_under_a_megabyte(tmp_path: Path) -> None:
    """The [store] target: 1,000 steps each appending a 100-byte item to a list stay
    under 1 MB on disk, WAL included, while the store is open (the peers: 106-110 MB)."""
    from typing import Annotated, Any

    from pydantic import BaseModel

    import graphorch as go

    class Notes(BaseModel):
        i: int = 0
        items: Annotated[list[str], go.append] = []

    g: go.Graph[Notes, None] = go.Graph("notes", state=Notes, max_steps=1010)

    async def add(state: Notes) -> dict[str, Any]:
        return {"i": state.i + 1, "items": [f"{state.i:06d}" + "x" * 94]}

    g.plan("add", add)
    g.end("done")
    g.edge(go.START, "add")
    g.edge("add", "add", when=lambda s: s.i < 1000)
    g.edge("add", "done")
    path = tmp_path / "notes.db"
    rt = go.Runtime(go.SQLiteStore(path))
    run = await rt.start(g, Notes())
    result = await run.wait()
    assert result.status is go.RunStatus.SUCCEEDED and len(result.state.items) == 1000
    on_disk = size(path) + size(path, "-wal")
    assert on_disk < 1_000_000, on_disk
    assert (await rt.store.get_checkpoint(run.id)).state["items"].count(b'"') == 2000
    await rt.store.close()
