"""What each step leaves behind: events live and stored, and the visit counts a
resumed run needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

import graphorch as go


class Counter(BaseModel):
    n: int = 0


def loop(limit: int | None, back: bool = False) -> go.Graph[Counter, None]:
    """start -> a -> spin (loops) -> done; spin may backtrack to a."""
    g: go.Graph[Counter, None] = go.Graph("loop", state=Counter, max_steps=100)
    g.plan("a", lambda s: {"n": s.n + 1})
    g.plan(
        "spin",
        lambda s: {"n": s.n + 1},
        max_visits=limit,
        backtrack=("a",) if back else None,
    )
    g.end("done")
    g.edge(go.START, "a").edge("a", "spin")
    g.edge("spin", "done", when=lambda s: s.n >= 50)
    g.edge("spin", "spin")
    return g


async def test_step_started_streams_live_but_only_step_finished_is_stored() -> None:
    rt = go.Runtime()
    run = await rt.start(loop(None), Counter())
    live: list[str] = []

    async def listen() -> None:
        async for event in run.events():
            live.append(event.kind)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        result = await run.wait()
    stored = [e.kind for e in await rt.store.list_events(run.id)]
    assert live.count("step_started") == live.count("step_finished") == result.steps
    assert "step_started" not in stored
    assert stored == [kind for kind in live if kind != "step_started"]
    assert (await rt.verify_audit(run.id)).ok


async def test_a_fork_keeps_counting_visits_toward_max_visits(tmp_path: Path) -> None:
    async with go.SQLiteStore(tmp_path / "v.db") as store:
        rt = go.Runtime(store)
        run = await rt.start(loop(5), Counter())
        for _ in range(4):  # a, then spin three times
            await run.step()
        await run.cancel()
        forked = await rt.fork(run.id, at=4)
        result = await forked.wait()
        # two more visits reach the limit of five; the sixth is refused
        assert isinstance(result.error, go.VisitLimitExceededError)
        assert result.error.node == "spin"
        assert result.state.n == 6


async def test_a_backtrack_after_a_fork_still_knows_the_target_ran(tmp_path: Path) -> None:
    g: go.Graph[Counter, None] = go.Graph("back", state=Counter, max_steps=20)
    g.plan("a", lambda s: {"n": s.n + 1})
    g.plan("b", lambda s: {"n": s.n + 1})

    @g.plan(backtrack="a")
    def check(s: Counter) -> Any:  # pyright: ignore[reportUnusedFunction]
        return go.Backtrack("a", reason="again") if s.n < 4 else {}

    g.end("done")
    g.edge(go.START, "a").edge("a", "b").edge("b", "check").edge("check", "done")
    async with go.SQLiteStore(tmp_path / "b.db") as store:
        rt = go.Runtime(store)
        run = await rt.start(g, Counter())
        await run.step()  # a
        await run.step()  # b
        await run.cancel()
        result = await (await rt.fork(run.id, at=2)).wait()
        assert result.status is go.RunStatus.SUCCEEDED
        assert result.state.n == 4
