"""graphorch's side of the workloads: ``python bench/workloads_graphorch.py W1 '{...}'``.

Every workload builds its graph with the public API only (``import graphorch as go``)
and uses ``go.SQLiteStore`` at its default durability unless the params say otherwise.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
from pydantic import BaseModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SideEffects, appended_figures, disk_bytes, docs, item, signal_parent, worker_main

import graphorch as go


class Counter(BaseModel):
    """W1, W4, W6: one counter."""

    n: int = 0


class Loop(BaseModel):
    """W2: an iteration counter and an append-only list."""

    i: int = 0
    items: Annotated[list[str], go.append] = []


class Fan(BaseModel):
    """W3: the branches' sum."""

    total: Annotated[int, go.add] = 0
    joined: int = 0


class Wide(BaseModel):
    """W5: many documents that never change, and a counter that does."""

    docs: dict[str, str] = {}
    n: int = 0


async def _inc(state: Counter) -> dict[str, Any]:
    return {"n": state.n + 1}


def _store(params: dict[str, Any], path: Path) -> go.Store:
    if params.get("store") == "memory":
        return go.MemoryStore()
    return go.SQLiteStore(path, durability=params.get("durability", "normal"))


async def _opened(params: dict[str, Any], path: Path) -> go.Store:
    """The workload's store, opened (file and schema created) before the timing starts,
    as Burr's harness initializes its persister before it times a run."""
    store = _store(params, path)
    await store.list_runs(limit=1)
    return store


PROBES: list[Callable[[str], None]] = []
"""Called with "start" and "stop" around a workload's timed part (see bench/threads.py)."""


def _start() -> float:
    for probe in PROBES:
        probe("start")
    return time.perf_counter()


def _stop(t0: float) -> float:
    """Seconds since ``t0``, taken before the store closes (its writer thread too)."""
    wall = time.perf_counter() - t0
    for probe in PROBES:
        probe("stop")
    return wall


def _tmpdir(params: dict[str, Any]) -> Path:
    return Path(params.get("dir") or tempfile.mkdtemp(prefix="bench-go-"))


def _one_run(
    params: dict[str, Any],
    path: Path,
    graph: go.FrozenGraph[Any, Any],
    state: BaseModel,
    tools: go.ToolRegistry | None = None,
) -> tuple[float, int, go.RunResult[Any]]:
    """One timed run of ``graph`` on a store at ``path``: wall time, bytes on disk right
    after it (the WAL included, before the store closes), and its result."""

    async def main() -> tuple[float, int, go.RunResult[Any]]:
        rt = go.Runtime(await _opened(params, path), tools=tools)
        t0 = _start()
        result = await (await rt.start(graph, state)).wait()
        wall = _stop(t0)
        size = disk_bytes(path)
        await rt.store.close()
        return wall, size, result

    return anyio.run(main)


def _appended(wall: float, size: int, steps: int, result: go.RunResult[Any]) -> dict[str, Any]:
    """W2's and W7's figures."""
    figures = appended_figures(wall, steps, size, len(result.state.items))
    return {**figures, "status": result.status.value}


# -- W1 chain ------------------------------------------------------------------------


def _row(name: str, prefix: str, length: int, fn: Any) -> go.Graph[Counter, None]:
    """``length`` plan nodes ``fn`` in a row, then an end node."""
    g: go.Graph[Counter, None] = go.Graph(name, state=Counter)
    for i in range(length):
        g.plan(f"{prefix}{i}", fn)
    g.end("done")
    g.edge(go.START, f"{prefix}0")
    for i in range(length - 1):
        g.edge(f"{prefix}{i}", f"{prefix}{i + 1}")
    g.edge(f"{prefix}{length - 1}", "done")
    return g


def chain_graph(length: int) -> go.Graph[Counter, None]:
    """``length`` plan nodes in a row, each adding 1 to the counter."""
    return _row("chain", "n", length, _inc)


def w1(params: dict[str, Any]) -> dict[str, Any]:
    """W1: ``runs`` runs of a ``length``-node chain; steps/s over all of them."""
    length, runs = params["length"], params["runs"]
    path = _tmpdir(params) / "w1.db"
    g = chain_graph(length).freeze()

    async def main() -> dict[str, Any]:
        rt = go.Runtime(await _opened(params, path))
        counters: list[int] = []
        t0 = _start()
        for _ in range(runs):
            run = await rt.start(g, Counter())
            result = await run.wait()
            counters.append(result.state.n)
        wall = _stop(t0)
        await rt.store.close()
        return {
            "wall_s": wall,
            "steps": length * runs,
            "steps_per_s": length * runs / wall,
            "counters_ok": all(c == length for c in counters),
            "counter": counters[-1],
        }

    return anyio.run(main)


# -- W2 loop -------------------------------------------------------------------------


def loop_graph(iterations: int) -> go.Graph[Loop, None]:
    """plan -> tool -> plan; the tool node appends one 100-byte item per iteration."""
    g: go.Graph[Loop, None] = go.Graph("loop", state=Loop, max_steps=2 * iterations + 10)

    @g.plan
    async def plan(state: Loop) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        return {"i": state.i + 1}

    g.tool("act", tool="append_item", args=lambda s: {"i": s.i}, result="items")
    g.end("done")
    g.edge(go.START, "plan")
    g.edge("plan", "act", when=lambda s: s.i <= iterations)
    g.edge("plan", "done")
    g.edge("act", "plan")
    return g


def loop_tools() -> go.ToolRegistry:
    """The one tool W2 calls: returns the item to append."""
    tools = go.ToolRegistry()

    # a pure function of its argument: safe to repeat, so declared idempotent
    @tools.tool(idempotent=True)
    async def append_item(i: int) -> list[str]:  # pyright: ignore[reportUnusedFunction]
        return [item(i)]

    return tools


def w2(params: dict[str, Any]) -> dict[str, Any]:
    """W2: ``iterations`` plan+tool iterations; wall time, steps/s, bytes on disk."""
    iterations = params["iterations"]
    g = loop_graph(iterations).freeze()
    wall, size, result = _one_run(params, _tmpdir(params) / "w2.db", g, Loop(), loop_tools())
    return _appended(wall, size, 2 * iterations, result)


# -- W7 appends (the [store] issue's size target) ------------------------------------


class Notes(BaseModel):
    """W7: a step counter and an append-only list."""

    i: int = 0
    items: Annotated[list[str], go.append] = []


def appends_graph(steps: int) -> go.Graph[Notes, None]:
    """One plan node, looped ``steps`` times; each step appends one 100-byte item."""
    g: go.Graph[Notes, None] = go.Graph("appends", state=Notes, max_steps=steps + 10)

    @g.plan
    async def add(state: Notes) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        return {"i": state.i + 1, "items": [item(state.i)]}

    g.end("done")
    g.edge(go.START, "add")
    g.edge("add", "add", when=lambda s: s.i < steps)
    g.edge("add", "done")
    return g


def w7(params: dict[str, Any]) -> dict[str, Any]:
    """W7: ``steps`` steps, each appending a 100-byte item; wall time, bytes on disk."""
    steps = params["steps"]
    g = appends_graph(steps).freeze()
    wall, size, result = _one_run(params, _tmpdir(params) / "w7.db", g, Notes())
    return _appended(wall, size, steps, result)


# -- W3 fan-out ----------------------------------------------------------------------


def fan_graph(width: int, delay: float) -> go.Graph[Fan, None]:
    """START -> ``width`` parallel plan nodes (each sleeps, adds 1) -> join -> end."""
    g: go.Graph[Fan, None] = go.Graph("fan", state=Fan)

    async def branch(state: Fan) -> dict[str, Any]:
        await anyio.sleep(delay)
        return {"total": 1}

    names = [f"b{i}" for i in range(width)]
    for name in names:
        g.plan(name, branch)

    @g.plan
    async def join(state: Fan) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        return {"joined": state.total}

    g.end("done")
    g.edge(go.START, names)
    for name in names:
        g.edge(name, "join")
    g.edge("join", "done")
    return g


def w3(params: dict[str, Any]) -> dict[str, Any]:
    """W3: one run fanning out to ``width`` branches; wall time (best of ``repeat``)."""
    width, delay, repeat = params["width"], params["delay"], params.get("repeat", 3)
    g = fan_graph(width, delay).freeze()
    directory = _tmpdir(params)

    async def main() -> dict[str, Any]:
        walls: list[float] = []
        joined = 0
        for r in range(repeat):
            store = await _opened(params, directory / f"w3-{r}.db")
            rt = go.Runtime(store)
            t0 = time.perf_counter()
            result = await (await rt.start(g, Fan())).wait()
            walls.append(time.perf_counter() - t0)
            joined = result.state.joined
            await store.close()
        return {"wall_s": min(walls), "walls": walls, "joined": joined}

    return anyio.run(main)


# -- W4 resume after SIGKILL -----------------------------------------------------------


def resume_graph(steps: int, effects: str, delay: float) -> go.Graph[Counter, None]:
    """A one-node loop of ``steps`` steps; each step logs its number (the side effect)."""
    g: go.Graph[Counter, None] = go.Graph("resume", state=Counter, max_steps=steps + 10)
    fx = SideEffects(effects)

    @g.plan
    async def work(state: Counter) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        fx.write("exec", state.n + 1)
        await anyio.sleep(delay)
        return {"n": state.n + 1}

    g.end("done")
    g.edge(go.START, "work")
    g.edge("work", "work", when=lambda s: s.n < steps)
    g.edge("work", "done")
    return g


def w4_victim(params: dict[str, Any]) -> dict[str, Any]:
    """Run the loop, acknowledging each committed step; the parent SIGKILLs us."""
    g = resume_graph(params["steps"], params["effects"], params["delay"])
    acks = SideEffects(params["effects"])

    async def main() -> dict[str, Any]:
        rt = go.Runtime(go.SQLiteStore(params["db"]), lease_ttl=params["lease_ttl"])
        run = await rt.start(g, Counter(), run_id=params["run_id"])
        while run.active:
            await run.step()  # returns once the step is committed
            acks.write("ack", run.state.n)
            if run.state.n == params["kill_at"]:
                signal_parent(run.state.n)
        return {"finished": True, "n": run.state.n}

    return anyio.run(main)


def w4_resume(params: dict[str, Any]) -> dict[str, Any]:
    """Resume the killed run in this fresh process; retry while the dead owner's lease holds."""
    g = resume_graph(params["steps"], params["effects"], params["delay"])

    async def main() -> dict[str, Any]:
        rt = go.Runtime(go.SQLiteStore(params["db"]), graphs=[g], lease_ttl=params["lease_ttl"])
        t0 = time.perf_counter()
        waited = 0.0
        tries = 0
        while True:
            tries += 1
            try:
                run = await rt.resume(params["run_id"])
                break
            except go.RunLockedError:
                await anyio.sleep(0.01)
                waited = time.perf_counter() - t0
        resumed_at = run.state.n
        result = await run.wait()
        await rt.store.close()
        return {
            "lease_wait_s": waited,
            "lock_tries": tries,
            "resumed_at": resumed_at,
            "final": result.state.n,
            "status": result.status.value,
        }

    return anyio.run(main)


# -- W5 wide state -------------------------------------------------------------------


def wide_graph(steps: int) -> go.Graph[Wide, None]:
    """A one-node loop changing only the counter, ``steps`` times."""
    g: go.Graph[Wide, None] = go.Graph("wide", state=Wide, max_steps=steps + 10)

    @g.plan
    async def tick(state: Wide) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        return {"n": state.n + 1}

    g.end("done")
    g.edge(go.START, "tick")
    g.edge("tick", "tick", when=lambda s: s.n < steps)
    g.edge("tick", "done")
    return g


def w5(params: dict[str, Any]) -> dict[str, Any]:
    """W5: ``docs`` 1 KB documents plus a counter, ``steps`` steps; wall time, bytes."""
    g = wide_graph(params["steps"]).freeze()
    initial = Wide(docs=docs(params["docs"]))
    wall, size, result = _one_run(params, _tmpdir(params) / "w5.db", g, initial)
    return {
        "wall_s": wall,
        "bytes": size,
        "counter": result.state.n,
        "docs": len(result.state.docs),
    }


# -- W6 many concurrent runs ---------------------------------------------------------------


def steps_graph(steps: int, delay: float) -> go.Graph[Counter, None]:
    """A ``steps``-node chain; each step sleeps ``delay`` then adds 1."""

    async def step(state: Counter) -> dict[str, Any]:
        await anyio.sleep(delay)
        return {"n": state.n + 1}

    return _row("many", "s", steps, step)


def w6(params: dict[str, Any]) -> dict[str, Any]:
    """W6: ``runs`` concurrent runs of a ``steps``-step graph in one process."""
    runs, steps = params["runs"], params["steps"]
    path = _tmpdir(params) / "w6.db"
    g = steps_graph(steps, params["delay"]).freeze()

    async def main() -> dict[str, Any]:
        rt = go.Runtime(await _opened(params, path))
        counters: list[int] = []

        async def one() -> None:
            result = await (await rt.start(g, Counter())).wait()
            counters.append(result.state.n)

        t0 = _start()
        async with anyio.create_task_group() as tg:
            for _ in range(runs):
                tg.start_soon(one)
        wall = _stop(t0)
        await rt.store.close()
        return {
            "wall_s": wall,
            "runs_done": len(counters),
            "counters_ok": all(c == steps for c in counters),
        }

    return anyio.run(main)


WORKLOADS = {
    "W1": w1,
    "W2": w2,
    "W7": w7,
    "W3": w3,
    "W4-victim": w4_victim,
    "W4-resume": w4_resume,
    "W5": w5,
    "W6": w6,
}

if __name__ == "__main__":
    worker_main(WORKLOADS)
