"""LangGraph's side of the workloads; runs only with the peers' venv python.

``mode``: ``"none"`` (no checkpointer), ``"default"`` (SQLite saver, LangGraph's default
durability, "async"), ``"sync"`` (SQLite saver, ``durability="sync"``).
"""

from __future__ import annotations

import asyncio
import operator
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (
    SideEffects,
    appended_figures,
    disk_bytes,
    docs,
    item,
    signal_parent,
    timed,
    worker_main,
)
from langgraph.checkpoint.sqlite import SqliteSaver  # pyright: ignore
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # pyright: ignore
from langgraph.graph import END, START, StateGraph  # pyright: ignore

LIMIT = {"recursion_limit": 100_000}


class Counter(TypedDict):
    """W1, W4, W6."""

    n: int


class Loop(TypedDict):
    """W2."""

    i: int
    items: Annotated[list[str], operator.add]


class Fan(TypedDict):
    """W3."""

    total: Annotated[int, operator.add]
    joined: int


class Wide(TypedDict):
    """W5."""

    docs: dict[str, str]
    n: int


def _durability(params: dict[str, Any]) -> dict[str, Any]:
    return {"durability": "sync"} if params["mode"] == "sync" else {}


def _saver(params: dict[str, Any], path: Path) -> Any:
    if params["mode"] == "none":
        return None
    return SqliteSaver(sqlite3.connect(path, check_same_thread=False))


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, **LIMIT}


def _tmpdir(params: dict[str, Any]) -> Path:
    return Path(params.get("dir") or tempfile.mkdtemp(prefix="bench-lg-"))


def _inc(state: Counter) -> dict[str, Any]:
    return {"n": state["n"] + 1}


def w1(params: dict[str, Any]) -> dict[str, Any]:
    """W1: a chain of ``length`` nodes, ``runs`` runs."""
    length, runs = params["length"], params["runs"]
    path = _tmpdir(params) / "w1.db"
    b = StateGraph(Counter)
    for i in range(length):
        b.add_node(f"n{i}", _inc)
    b.add_edge(START, "n0")
    for i in range(length - 1):
        b.add_edge(f"n{i}", f"n{i + 1}")
    b.add_edge(f"n{length - 1}", END)
    graph = b.compile(checkpointer=_saver(params, path))
    counters: list[int] = []
    t0 = time.perf_counter()
    for r in range(runs):
        out = graph.invoke({"n": 0}, _config(f"t{r}"), **_durability(params))
        counters.append(out["n"])
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "steps": length * runs,
        "steps_per_s": length * runs / wall,
        "counters_ok": all(c == length for c in counters),
    }


def w2(params: dict[str, Any]) -> dict[str, Any]:
    """W2: plan -> act -> plan, ``iterations`` times; ``act`` appends a 100-byte item."""
    iterations = params["iterations"]
    path = _tmpdir(params) / "w2.db"
    b = StateGraph(Loop)
    b.add_node("plan", lambda s: {"i": s["i"] + 1})
    b.add_node("act", lambda s: {"items": [item(s["i"])]})
    b.add_edge(START, "plan")
    b.add_conditional_edges("plan", lambda s: "act" if s["i"] <= iterations else END)
    b.add_edge("act", "plan")
    graph = b.compile(checkpointer=_saver(params, path))
    t0 = time.perf_counter()
    out = graph.invoke({"i": 0, "items": []}, _config("t"), **_durability(params))
    wall = time.perf_counter() - t0
    return appended_figures(wall, 2 * iterations, disk_bytes(path), len(out["items"]))


def w7(params: dict[str, Any]) -> dict[str, Any]:
    """W7: one node looped ``steps`` times, each step appending a 100-byte item."""
    steps = params["steps"]
    path = _tmpdir(params) / "w7.db"
    b = StateGraph(Loop)
    b.add_node("add", lambda s: {"i": s["i"] + 1, "items": [item(s["i"])]})
    b.add_edge(START, "add")
    b.add_conditional_edges("add", lambda s: "add" if s["i"] < steps else END)
    graph = b.compile(checkpointer=_saver(params, path))
    wall, out = timed(
        lambda: graph.invoke({"i": 0, "items": []}, _config("t"), **_durability(params))
    )
    return appended_figures(wall, steps, disk_bytes(path), len(out["items"]))


def w3(params: dict[str, Any]) -> dict[str, Any]:
    """W3: ``width`` parallel branches each sleeping ``delay``, joined by a sum."""
    width, delay, repeat = params["width"], params["delay"], params.get("repeat", 3)
    directory = _tmpdir(params)

    async def branch(state: Fan) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {"total": 1}

    b = StateGraph(Fan)
    names = [f"b{i}" for i in range(width)]
    for name in names:
        b.add_node(name, branch)
        b.add_edge(START, name)
        b.add_edge(name, "join")
    b.add_node("join", lambda s: {"joined": s["total"]})
    b.add_edge("join", END)

    async def main() -> dict[str, Any]:
        walls: list[float] = []
        joined = 0
        for r in range(repeat):
            if params["mode"] == "none":
                saver = None
            else:
                saver = AsyncSqliteSaver.from_conn_string(str(directory / f"w3-{r}.db"))
            async with saver if saver is not None else _Null() as cp:
                graph = b.compile(checkpointer=cp)
                t0 = time.perf_counter()
                out = await graph.ainvoke(
                    {"total": 0, "joined": 0}, _config("t"), **_durability(params)
                )
                walls.append(time.perf_counter() - t0)
                joined = out["joined"]
        return {"wall_s": min(walls), "walls": walls, "joined": joined}

    return asyncio.run(main())


class _Null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _resume_graph(params: dict[str, Any]) -> Any:
    steps, delay = params["steps"], params["delay"]
    fx = SideEffects(params["effects"])

    def work(state: Counter) -> dict[str, Any]:
        fx.write("exec", state["n"] + 1)
        time.sleep(delay)
        return {"n": state["n"] + 1}

    b = StateGraph(Counter)
    b.add_node("work", work)
    b.add_edge(START, "work")
    b.add_conditional_edges("work", lambda s: "work" if s["n"] < steps else END)
    return b.compile(checkpointer=_saver(params, Path(params["db"])))


def w4_victim(params: dict[str, Any]) -> dict[str, Any]:
    """Stream the loop, acknowledging each step as LangGraph reports it done."""
    graph = _resume_graph(params)
    acks = SideEffects(params["effects"])
    config = _config(params["run_id"])
    for chunk in graph.stream({"n": 0}, config, stream_mode="updates", **_durability(params)):
        n = chunk["work"]["n"]
        acks.write("ack", n)
        if n == params["kill_at"]:
            signal_parent(n)
    return {"finished": True}


def w4_resume(params: dict[str, Any]) -> dict[str, Any]:
    """Continue the killed thread from its last saved checkpoint."""
    graph = _resume_graph(params)
    config = _config(params["run_id"])
    resumed_at = graph.get_state(config).values.get("n", 0)
    last: dict[str, Any] = {}
    for values in graph.stream(None, config, stream_mode="values", **_durability(params)):
        last = values
    return {"lease_wait_s": 0.0, "resumed_at": resumed_at, "final": last.get("n")}


def w5(params: dict[str, Any]) -> dict[str, Any]:
    """W5: ``docs`` documents of 1 KB plus a counter; ``steps`` steps change the counter."""
    steps = params["steps"]
    path = _tmpdir(params) / "w5.db"
    b = StateGraph(Wide)
    b.add_node("tick", lambda s: {"n": s["n"] + 1})
    b.add_edge(START, "tick")
    b.add_conditional_edges("tick", lambda s: "tick" if s["n"] < steps else END)
    graph = b.compile(checkpointer=_saver(params, path))
    t0 = time.perf_counter()
    out = graph.invoke({"docs": docs(params["docs"]), "n": 0}, _config("t"), **_durability(params))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "bytes": disk_bytes(path), "counter": out["n"]}


def w6(params: dict[str, Any]) -> dict[str, Any]:
    """W6: ``runs`` concurrent threads of a ``steps``-node graph, one shared async saver."""
    runs, steps, delay = params["runs"], params["steps"], params["delay"]
    path = _tmpdir(params) / "w6.db"

    async def step(state: Counter) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {"n": state["n"] + 1}

    b = StateGraph(Counter)
    for i in range(steps):
        b.add_node(f"s{i}", step)
    b.add_edge(START, "s0")
    for i in range(steps - 1):
        b.add_edge(f"s{i}", f"s{i + 1}")
    b.add_edge(f"s{steps - 1}", END)

    async def main() -> dict[str, Any]:
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            graph = b.compile(checkpointer=saver)
            t0 = time.perf_counter()
            outs = await asyncio.gather(
                *(
                    graph.ainvoke({"n": 0}, _config(f"t{r}"), **_durability(params))
                    for r in range(runs)
                )
            )
            wall = time.perf_counter() - t0
        return {
            "wall_s": wall,
            "runs_done": len(outs),
            "counters_ok": all(o["n"] == steps for o in outs),
        }

    return asyncio.run(main())


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
