"""Burr's side of the workloads; runs only with the peers' venv python.

``mode``: ``"none"`` (no persister), ``"default"`` (Burr's SQLite persister on the
connection it opens itself), ``"wal"`` (the same persister on a connection switched to
WAL with ``synchronous=NORMAL``: the durability graphorch's default store gives).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from burr.core import ApplicationBuilder, State, action, default, expr  # pyright: ignore
from burr.core.parallelism import MapStates  # pyright: ignore
from burr.core.persistence import SQLitePersister  # pyright: ignore
from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister  # pyright: ignore
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

WAL = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def _tmpdir(params: dict[str, Any]) -> Path:
    return Path(params.get("dir") or tempfile.mkdtemp(prefix="bench-burr-"))


def _persister(params: dict[str, Any], path: Path) -> Any:
    if params["mode"] == "none":
        return None
    p = SQLitePersister(db_path=str(path))
    if params["mode"] == "wal":
        for pragma in WAL:
            p.connection.execute(pragma)
    p.initialize()
    return p


async def _apersister(params: dict[str, Any], path: Path) -> Any:
    if params["mode"] == "none":
        return None
    p = await AsyncSQLitePersister.from_values(db_path=str(path))
    if params["mode"] == "wal":
        for pragma in WAL:
            await p.connection.execute(pragma)
    await p.initialize()
    return p


def _build(builder: Any, persister: Any, app_id: str) -> Any:
    builder = builder.with_identifiers(app_id=app_id)
    if persister is not None:
        builder = builder.with_state_persister(persister)
    return builder.build()


async def _abuild(builder: Any, persister: Any, app_id: str) -> Any:
    builder = builder.with_identifiers(app_id=app_id)
    if persister is not None:
        builder = builder.with_state_persister(persister)
    return await builder.abuild()


@action(reads=["n"], writes=["n"])
def inc(state: State) -> State:
    """Add 1 to the counter."""
    return state.update(n=state["n"] + 1)


@action(reads=[], writes=[])
def done(state: State) -> State:
    """The final action."""
    return state


def w1(params: dict[str, Any]) -> dict[str, Any]:
    """W1: a chain of ``length`` actions, ``runs`` applications."""
    length, runs = params["length"], params["runs"]
    persister = _persister(params, _tmpdir(params) / "w1.db")
    names = [f"n{i}" for i in range(length)]
    counters: list[int] = []
    t0 = time.perf_counter()
    for r in range(runs):
        builder = (
            ApplicationBuilder()
            .with_actions(**{name: inc for name in names})
            .with_transitions(*[(names[i], names[i + 1]) for i in range(length - 1)])
            .with_state(n=0)
            .with_entrypoint(names[0])
        )
        app = _build(builder, persister, f"a{r}")
        _, _, state = app.run(halt_after=[names[-1]])
        counters.append(state["n"])
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "steps": length * runs,
        "steps_per_s": length * runs / wall,
        "counters_ok": all(c == length for c in counters),
    }


@action(reads=["i"], writes=["i"])
def plan(state: State) -> State:
    """W2's planner: next iteration."""
    return state.update(i=state["i"] + 1)


@action(reads=["i"], writes=["items"])
def act(state: State) -> State:
    """W2's tool step: append one 100-byte item."""
    return state.append(items=item(state["i"]))


def w2(params: dict[str, Any]) -> dict[str, Any]:
    """W2: plan -> act -> plan, ``iterations`` times."""
    iterations = params["iterations"]
    path = _tmpdir(params) / "w2.db"
    builder = (
        ApplicationBuilder()
        .with_actions(plan=plan, act=act, done=done)
        .with_transitions(
            ("plan", "act", expr(f"i <= {iterations}")),
            ("plan", "done", default),
            ("act", "plan"),
        )
        .with_state(i=0, items=[])
        .with_entrypoint("plan")
    )
    app = _build(builder, _persister(params, path), "a")
    t0 = time.perf_counter()
    _, _, state = app.run(halt_after=["done"])
    wall = time.perf_counter() - t0
    return appended_figures(wall, 2 * iterations, disk_bytes(path), len(state["items"]))


@action(reads=["i"], writes=["i", "items"])
def add(state: State) -> State:
    """W7's one step: next count, and one 100-byte item appended."""
    return state.update(i=state["i"] + 1).append(items=item(state["i"]))


def w7(params: dict[str, Any]) -> dict[str, Any]:
    """W7: one action looped ``steps`` times, each step appending a 100-byte item."""
    steps = params["steps"]
    path = _tmpdir(params) / "w7.db"
    builder = (
        ApplicationBuilder()
        .with_actions(add=add, done=done)
        .with_transitions(("add", "add", expr(f"i < {steps}")), ("add", "done", default))
        .with_state(i=0, items=[])
        .with_entrypoint("add")
    )
    app = _build(builder, _persister(params, path), "a")
    wall, (_, _, state) = timed(lambda: app.run(halt_after=["done"]))
    return appended_figures(wall, steps, disk_bytes(path), len(state["items"]))


def _fan(width: int, delay: float) -> Any:
    @action(reads=[], writes=["value"])
    async def sleeper(state: State) -> State:
        await asyncio.sleep(delay)
        return state.update(value=1)

    class Fan(MapStates):  # pyright: ignore
        """``width`` copies of ``sleeper`` in parallel, summed."""

        def action(self, state: State, inputs: dict[str, Any]) -> Any:
            return sleeper

        async def states(  # pyright: ignore
            self, state: State, context: Any, inputs: dict[str, Any]
        ) -> AsyncIterator[State]:
            for i in range(width):
                yield state.update(idx=i)

        async def reduce(self, state: State, states: Any) -> State:  # pyright: ignore
            total = 0
            async for sub in states:
                total += sub["value"]
            return state.update(joined=total)

        def is_async(self) -> bool:
            return True

        @property
        def reads(self) -> list[str]:
            return []

        @property
        def writes(self) -> list[str]:
            return ["joined"]

    return Fan()


def w3(params: dict[str, Any]) -> dict[str, Any]:
    """W3: ``width`` parallel sleeping actions (MapStates), joined by a sum."""
    width, delay, repeat = params["width"], params["delay"], params.get("repeat", 3)
    directory = _tmpdir(params)

    async def main() -> dict[str, Any]:
        walls: list[float] = []
        joined = 0
        for r in range(repeat):
            persister = await _apersister(params, directory / f"w3-{r}.db")
            builder = (
                ApplicationBuilder()
                .with_actions(fan=_fan(width, delay), done=done)
                .with_transitions(("fan", "done"))
                .with_state(joined=0)
                .with_entrypoint("fan")
            )
            app = await _abuild(builder, persister, f"a{r}")
            try:
                t0 = time.perf_counter()
                _, _, state = await app.arun(halt_after=["done"])
                walls.append(time.perf_counter() - t0)
                joined = state["joined"]
            finally:
                if persister is not None:
                    await persister.cleanup()
        return {"wall_s": min(walls), "walls": walls, "joined": joined}

    return asyncio.run(main())


def _resume_builder(params: dict[str, Any]) -> Any:
    steps, delay = params["steps"], params["delay"]
    fx = SideEffects(params["effects"])

    @action(reads=["n"], writes=["n"])
    def work(state: State) -> State:
        fx.write("exec", state["n"] + 1)
        time.sleep(delay)
        return state.update(n=state["n"] + 1)

    return (
        ApplicationBuilder()
        .with_actions(work=work, done=done)
        .with_transitions(("work", "work", expr(f"n < {steps}")), ("work", "done", default))
    )


def w4_victim(params: dict[str, Any]) -> dict[str, Any]:
    """Step the loop, acknowledging each step as Burr returns it."""
    persister = _persister(params, Path(params["db"]))
    builder = _resume_builder(params).with_state(n=0).with_entrypoint("work")
    app = _build(builder, persister, params["run_id"])
    acks = SideEffects(params["effects"])
    while True:
        act_, _, state = app.step()
        if act_.name == "done":
            break
        acks.write("ack", state["n"])
        if state["n"] == params["kill_at"]:
            signal_parent(state["n"])
    return {"finished": True}


def w4_resume(params: dict[str, Any]) -> dict[str, Any]:
    """Load the killed application from its persister and run it on."""
    persister = _persister(params, Path(params["db"]))
    builder = _resume_builder(params).initialize_from(
        persister,
        resume_at_next_action=True,
        default_state={"n": 0},
        default_entrypoint="work",
    )
    app = _build(builder, persister, params["run_id"])
    resumed_at = app.state["n"]
    _, _, state = app.run(halt_after=["done"])
    return {"lease_wait_s": 0.0, "resumed_at": resumed_at, "final": state["n"]}


@action(reads=["n"], writes=["n"])
def tick(state: State) -> State:
    """W5: change only the counter."""
    return state.update(n=state["n"] + 1)


def w5(params: dict[str, Any]) -> dict[str, Any]:
    """W5: ``docs`` documents of 1 KB plus a counter; ``steps`` steps change the counter."""
    steps = params["steps"]
    path = _tmpdir(params) / "w5.db"
    builder = (
        ApplicationBuilder()
        .with_actions(tick=tick, done=done)
        .with_transitions(("tick", "tick", expr(f"n < {steps}")), ("tick", "done", default))
        .with_state(docs=docs(params["docs"]), n=0)
        .with_entrypoint("tick")
    )
    app = _build(builder, _persister(params, path), "a")
    t0 = time.perf_counter()
    _, _, state = app.run(halt_after=["done"])
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "bytes": disk_bytes(path), "counter": state["n"]}


def w6(params: dict[str, Any]) -> dict[str, Any]:
    """W6: ``runs`` concurrent applications sharing one async persister."""
    runs, steps, delay = params["runs"], params["steps"], params["delay"]
    path = _tmpdir(params) / "w6.db"

    @action(reads=["n"], writes=["n"])
    async def step(state: State) -> State:
        await asyncio.sleep(delay)
        return state.update(n=state["n"] + 1)

    names = [f"s{i}" for i in range(steps)]

    async def main() -> dict[str, Any]:
        persister = await _apersister(params, path)
        apps = []
        for r in range(runs):
            builder = (
                ApplicationBuilder()
                .with_actions(**{name: step for name in names})
                .with_transitions(*[(names[i], names[i + 1]) for i in range(steps - 1)])
                .with_state(n=0)
                .with_entrypoint(names[0])
            )
            apps.append(await _abuild(builder, persister, f"a{r}"))
        try:
            t0 = time.perf_counter()
            outs = await asyncio.gather(*(app.arun(halt_after=[names[-1]]) for app in apps))
            wall = time.perf_counter() - t0
        finally:
            if persister is not None:
                await persister.cleanup()
        return {
            "wall_s": wall,
            "runs_done": len(outs),
            "counters_ok": all(o[2]["n"] == steps for o in outs),
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
