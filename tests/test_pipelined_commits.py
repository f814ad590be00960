"""wait() overlaps a step's commit with the next step's work; nothing is acknowledged,
called out or lost before the step it follows is durable."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import graphorch as go
from graphorch.events import Event
from graphorch.store.base import CheckpointWrite, Lease, RunUpdate


class Counter(BaseModel):
    n: int = 0


def _committed(path: Path, run_id: str) -> int:
    """The highest checkpoint seq another connection (another process) can read."""
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT max(seq) FROM checkpoints WHERE rk = (SELECT rk FROM runs WHERE run_id = ?)",
            (run_id,),
        ).fetchone()
    return int(row[0])


async def _inc(state: Counter) -> dict[str, Any]:
    return {"n": state.n + 1}


def _loop(steps: int, work: Any) -> go.Graph[Counter, None]:
    g: go.Graph[Counter, None] = go.Graph("loop", state=Counter, max_steps=steps + 5)
    g.plan("work", work)
    g.end("done")
    g.edge(go.START, "work")
    g.edge("work", "work", when=lambda s: s.n < steps)
    g.edge("work", "done")
    return g


def _another_owner_takes(path: Path) -> None:
    """What another process does when it takes a run over: a new lease epoch."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET lease_epoch = lease_epoch + 1, lease_owner = 'other'")


def _mark_tool() -> go.ToolRegistry:
    """One non-idempotent tool: calling it waits until every queued commit is durable."""
    tools = go.ToolRegistry()

    @tools.tool
    async def mark() -> None:  # pyright: ignore[reportUnusedFunction]
        return None

    return tools


async def test_step_returns_only_once_its_checkpoint_is_readable_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "p.db"

    async with go.SQLiteStore(path) as store:
        rt = go.Runtime(store)
        run = await rt.start(_loop(6, _inc), Counter())
        while run.active:
            result = await run.step()
            assert result.checkpoint is not None
            assert _committed(path, run.id) == int(result.checkpoint.split(":")[1]) == result.step


async def test_wait_commits_every_step_and_each_step_sees_the_previous_one_durable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.db"
    seen: list[tuple[int, int]] = []
    tools = go.ToolRegistry()

    @tools.tool
    async def record(n: int) -> int:
        # a tool call is an effect: the step before it must already be on disk
        seen.append((n, _committed(path, run_id)))
        return n

    g: go.Graph[Counter, None] = go.Graph("calls", state=Counter, max_steps=40)

    @g.plan
    async def plan(state: Counter) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        return {"n": state.n + 1}

    g.tool("act", tool="record", args=lambda s: {"n": s.n})
    g.end("done")
    g.edge(go.START, "plan")
    g.edge("plan", "act", when=lambda s: s.n <= 10)
    g.edge("plan", "done")
    g.edge("act", "plan")

    async with go.SQLiteStore(path) as store:
        rt = go.Runtime(store, tools=tools)
        run = await rt.start(g, Counter())
        run_id = run.id
        result = await run.wait()
        assert result.status is go.RunStatus.SUCCEEDED
        # every step is committed once wait() returns
        assert _committed(path, run_id) == result.steps
        history = await rt.history(run_id)
        assert [c.seq for c in history] == list(range(result.steps + 1))
    # call k runs in step 2k, right after the plan step 2k-1 that chose it
    assert [n for n, _ in seen] == list(range(1, 11))
    for n, durable in seen:
        assert durable == 2 * n - 1  # that plan step is on disk, and nothing later


async def test_a_queued_commit_fenced_out_leaves_the_handle_at_the_last_durable_step(
    tmp_path: Path,
) -> None:
    """Another owner takes the run while a commit is queued: that commit writes nothing,
    the step after it is dropped, and the handle shows what is stored."""
    path = tmp_path / "p.db"
    ran: list[int] = []

    async def work(state: Counter, ctx: go.Context[Any]) -> dict[str, Any]:
        ran.append(state.n + 1)
        if state.n + 1 == 3:
            await ctx.tools.call("mark")  # a call waits until step 2 is durable
            assert _committed(path, ctx.run_id) == 2
            _another_owner_takes(path)
        return {"n": state.n + 1}

    async with go.SQLiteStore(path) as store:
        rt = go.Runtime(store, tools=_mark_tool())
        run = await rt.start(_loop(8, work), Counter())
        result = await run.wait()
        assert result.status is go.RunStatus.RUNNING  # still the other owner's to finish
        assert result.reason is not None and result.reason.startswith("stopped:")
        assert isinstance(result.error, go.LeaseLostError)
        stored = await rt.state_at(run.id)
        assert stored.n == 2
        assert result.state.n == 2 and run.state.n == 2
        assert result.steps == 2
        assert _committed(path, run.id) == 2
    # steps 4 and on ran while step 3's commit was queued (how many depends on how fast
    # the writer is); all were dropped with it, and none ran twice
    assert ran[:4] == [1, 2, 3, 4]
    assert ran == list(range(1, len(ran) + 1))


def _run_row(path: Path, run_id: str) -> tuple[str, str | None, int]:
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT status, lease_owner, lease_epoch FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    return (str(row[0]), row[1], int(row[2]))


async def test_a_new_run_holds_its_lease_and_gives_it_up_with_its_last_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.db"

    async with go.SQLiteStore(path) as store:
        rt = go.Runtime(store)
        run = await rt.start(_loop(5, _inc), Counter())
        # stored and leased in one go: another process sees an owned run
        assert _run_row(path, run.id) == ("running", rt.owner, 1)
        assert [e.kind for e in await store.list_events(run.id)] == ["run_started"]
        result = await run.wait()
        assert result.status is go.RunStatus.SUCCEEDED
        # when wait() returns the end is durable and the lease is free
        assert _run_row(path, run.id) == ("succeeded", None, 1)
        assert _committed(path, run.id) == result.steps  # the end step too


async def test_a_fenced_out_last_commit_leaves_the_run_unfinished_and_the_lease_alone(
    tmp_path: Path,
) -> None:
    """The run reaches its end node while another owner took it: the end is not
    written, the handle does not claim it succeeded, and the new owner's lease stays."""
    path = tmp_path / "p.db"

    async def work(state: Counter, ctx: go.Context[Any]) -> dict[str, Any]:
        if state.n + 1 == 4:
            await ctx.tools.call("mark")  # steps 1-3 are durable first
            _another_owner_takes(path)
        return {"n": state.n + 1}

    async with go.SQLiteStore(path) as store:
        rt = go.Runtime(store, tools=_mark_tool())
        run = await rt.start(_loop(4, work), Counter())
        result = await run.wait()
        assert result.status is go.RunStatus.RUNNING
        assert isinstance(result.error, go.LeaseLostError)
        assert result.output is None
        assert result.state.n == 3 and result.steps == 3
        assert (await rt.state_at(run.id)).n == 3
    assert _run_row(path, run.id) == ("running", "other", 2)
    assert _committed(path, run.id) == 3


# -- a queued commit that fails for another reason than a lost lease -----------------


class FlakyStore(go.SQLiteStore):
    """A SQLite store whose step commits fail while ``fails(checkpoint, update)`` says
    so (as a full disk or an I/O error would fail that transaction)."""

    def __init__(self, path: Path, fails: Callable[[CheckpointWrite | None, RunUpdate], bool]):
        super().__init__(path)
        self.fails = fails
        self.failed = 0

    def submit_step(  # type: ignore[override]
        self,
        lease: Lease | None,
        checkpoint: CheckpointWrite | None,
        update: RunUpdate,
        events: Sequence[Event],
        *,
        run_id: go.RunId,
        calls: Sequence[Any] = (),
        approvals: Sequence[Any] = (),
    ) -> Any:
        if not self.fails(checkpoint, update):
            return super().submit_step(
                lease, checkpoint, update, events, run_id=run_id, calls=calls, approvals=approvals
            )
        self.failed += 1

        def job(conn: sqlite3.Connection) -> None:
            raise go.StoreError("injected: the commit's transaction failed")

        return self._writer.submit(job, deferrable=True)  # pyright: ignore[reportPrivateUsage]


def _run_row_status(path: Path, run_id: str) -> tuple[str, str | None]:
    status, owner, _ = _run_row(path, run_id)
    return status, owner


async def test_a_failed_last_commit_raises_keeps_the_lease_and_the_run_can_finish(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.db"
    failing = [True]

    store = FlakyStore(
        path, lambda cp, update: failing[0] and update.status is go.RunStatus.SUCCEEDED
    )
    async with store:
        rt = go.Runtime(store)
        run = await rt.start(_loop(3, _inc), Counter())
        with pytest.raises(go.StoreError, match="injected"):
            await run.wait()
        # the end is not written, the run keeps its owner, the handle shows what is stored
        assert _run_row_status(path, run.id) == ("running", rt.owner)
        assert run.status is go.RunStatus.RUNNING and run.output is None
        assert run.steps == _committed(path, run.id) == 3 and run.state.n == 3
        failing[0] = False  # the fault is gone: driving the run again finishes it
        result = await run.wait()
        assert result.status is go.RunStatus.SUCCEEDED and result.state.n == 3
    assert _run_row_status(path, run.id) == ("succeeded", None)


async def test_parallel_tool_calls_after_a_failed_commit_all_stop_and_none_is_made(
    tmp_path: Path,
) -> None:
    """Two branches call a tool that must not repeat while an earlier step's commit is
    queued; that commit fails: neither call is made, the handle is at the last durable
    step, and driving the run again makes each call once."""
    path = tmp_path / "p.db"
    made: list[str] = []
    failing = [True]

    class Pair(BaseModel):
        n: int = 0
        a: int = 0
        b: int = 0

    tools = go.ToolRegistry()

    @tools.tool
    async def charge(who: str) -> None:  # pyright: ignore[reportUnusedFunction]
        made.append(who)

    g: go.Graph[Pair, None] = go.Graph("pair", state=Pair)

    async def inc(state: Pair) -> dict[str, Any]:
        return {"n": state.n + 1}

    async def left(state: Pair, ctx: go.Context[Any]) -> dict[str, Any]:
        await ctx.tools.call("charge", who="left")
        return {"a": 1}

    async def right(state: Pair, ctx: go.Context[Any]) -> dict[str, Any]:
        await ctx.tools.call("charge", who="right")
        return {"b": 1}

    for name in ("s1", "s2", "s3"):
        g.plan(name, inc)
    g.plan("left", left)
    g.plan("right", right)
    g.end("done")
    g.edge(go.START, "s1").edge("s1", "s2").edge("s2", "s3").edge("s3", ["left", "right"])
    g.edge("left", "done").edge("right", "done")

    store = FlakyStore(path, lambda cp, _: failing[0] and cp is not None and cp.seq == 2)
    async with store:
        rt = go.Runtime(store, tools=tools)
        run = await rt.start(g, Pair())
        with pytest.raises(go.StoreError, match="injected"):
            await run.wait()
        assert store.failed == 1
        assert made == []
        assert run.seq == _committed(path, run.id) == 1
        assert run.steps == 1 and run.state.n == 1 and run.next_nodes == ("s2",)
        failing[0] = False
        result = await run.wait()
        assert result.status is go.RunStatus.SUCCEEDED
        assert result.state == Pair(n=3, a=1, b=1)
        assert sorted(made) == ["left", "right"]
        history = await rt.history(run.id)
        assert [c.seq for c in history] == list(range(len(history)))
        assert (await store.verify_events(run.id)).ok


async def test_a_failed_commit_is_not_an_error_a_node_can_route_or_retry(
    tmp_path: Path,
) -> None:
    """The failure is noticed inside a later node (its tool call waits for the queued
    commits); that node's error edge must not take it: the step is void."""
    path = tmp_path / "p.db"
    failing = [True]
    tools = go.ToolRegistry()

    @tools.tool
    async def mark() -> None:  # pyright: ignore[reportUnusedFunction]
        return None

    g: go.Graph[Counter, None] = go.Graph("routed", state=Counter)

    async def inc(state: Counter) -> dict[str, Any]:
        return {"n": state.n + 1}

    async def call(state: Counter, ctx: go.Context[Any]) -> dict[str, Any]:
        with contextlib.suppress(Exception):  # node code that swallows everything
            await ctx.tools.call("mark")
        return {"n": 100}

    for name in ("s1", "s2", "s3"):
        g.plan(name, inc)
    g.plan("t", call)
    g.plan("handler", inc)
    g.end("done")
    g.edge(go.START, "s1").edge("s1", "s2").edge("s2", "s3").edge("s3", "t").edge("t", "done")
    g.edge("t", "handler", on_error=True).edge("handler", "done")

    store = FlakyStore(path, lambda cp, _: failing[0] and cp is not None and cp.seq == 1)
    async with store:
        rt = go.Runtime(store, tools=tools)
        run = await rt.start(g, Counter())
        with pytest.raises(go.StoreError, match="injected"):
            await run.wait()
        assert [c.seq for c in await rt.history(run.id)] == [0]
        assert run.seq == 0 and run.next_nodes == ("s1",)
        failing[0] = False
        result = await run.wait()
        assert result.status is go.RunStatus.SUCCEEDED and result.state.n == 100
        nodes = [c.nodes for c in await rt.history(run.id)]
        assert nodes == [(), ("s1",), ("s2",), ("s3",), ("t",), ("done",)]


async def test_visit_counts_go_back_with_the_dropped_steps(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    failing = [True]

    g: go.Graph[Counter, None] = go.Graph("loop", state=Counter, max_steps=30)
    g.plan("work", _inc, max_visits=10)  # exactly as many visits as the run needs
    g.end("done")
    g.edge(go.START, "work")
    g.edge("work", "work", when=lambda s: s.n < 10)
    g.edge("work", "done")

    store = FlakyStore(path, lambda cp, _: failing[0] and cp is not None and cp.seq == 5)
    async with store:
        rt = go.Runtime(store)
        run = await rt.start(g, Counter())
        with pytest.raises(go.StoreError, match="injected"):
            await run.wait()
        assert run.steps == _committed(path, run.id) == 4
        assert run.visits["work"] == 4
        failing[0] = False
        result = await run.wait()
        assert result.status is go.RunStatus.SUCCEEDED, result.reason
        assert result.state.n == 10


class _OnlyWait:
    """A queued commit as the PendingCommit protocol requires it: only ``wait()``."""

    def __init__(self, pending: Any) -> None:
        self._pending = pending

    async def wait(self) -> None:
        await self._pending.wait()


class _MinimalPipelinedStore(go.SQLiteStore):
    def submit_step(self, *args: Any, **kwargs: Any) -> Any:
        return _OnlyWait(super().submit_step(*args, **kwargs))


async def test_a_store_whose_queued_commits_only_wait_still_runs(tmp_path: Path) -> None:
    store = _MinimalPipelinedStore(tmp_path / "min.db")
    rt = go.Runtime(store)
    result = await (await rt.start(_loop(20, _inc), Counter())).wait()
    assert result.status is go.RunStatus.SUCCEEDED and result.state.n == 20
    assert _committed(tmp_path / "min.db", result.run_id) == 21
    await store.close()
