"""The in-memory store passes the store conformance suite."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import pytest
from pydantic import BaseModel
from store_conformance import StoreConformance, audit_scene

import graphorch as go
from graphorch._record import replace
from graphorch.store.memory import MemoryStore, _AuditEntry, _Run  # pyright: ignore[reportPrivateUsage]
from graphorch.types import RunId


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:  # type: ignore[override]
        s = MemoryStore()
        yield s
        await s.close()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _edit(run: _Run) -> None:
    run.audit[3].data = run.audit[3].data.replace('"a"', '"b"')


def _delete_middle(run: _Run) -> None:
    del run.audit[4]


def _delete_last(run: _Run) -> None:
    del run.audit[-1]


def _forge(run: _Run) -> None:
    run.audit.append(replace(run.audit[7], n=9, data=run.audit[7].data + " "))


def _duplicate(run: _Run) -> None:
    run.audit.insert(5, _AuditEntry(5, "{}", run.audit[4].hash))


@pytest.mark.parametrize(
    ("poke", "expected"),
    [
        (_edit, ["run 'r1', position 3: edited"]),
        (_delete_middle, ["run 'r1', position 4: deleted"]),
        (_delete_last, ["run 'r1', position 8: deleted"]),
        (_forge, ["run 'r1', position 9: inserted"]),
        (_duplicate, ["run 'r1', position 5: inserted (1 more row(s)"]),
    ],
    ids=["edit", "delete-middle", "delete-last", "insert", "duplicate"],
)
async def test_tampering_is_detected(poke: Callable[[_Run], None], expected: list[str]) -> None:
    store = MemoryStore()
    await audit_scene(store)
    poke(store._runs["r1"])  # pyright: ignore[reportPrivateUsage]
    for report in (await store.verify_events(RunId("r1")), await store.verify_events()):
        assert not report.ok
        assert len(report.problems) == len(expected), report.problems
        for problem, start in zip(report.problems, expected, strict=True):
            assert problem.startswith(start), report.problems
    assert (await store.verify_events(RunId("clean"))).ok


class _Log(BaseModel):
    i: int = 0
    items: Annotated[list[str], go.append] = []


async def test_a_list_appended_every_step_is_kept_once_not_copied_per_checkpoint() -> None:
    steps = 1000
    g: go.Graph[_Log, None] = go.Graph("log", state=_Log, max_steps=steps + 5)

    @g.plan
    async def add(state: _Log) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        return {"i": state.i + 1, "items": [f"{state.i:04d}" + "x" * 96]}

    g.end("done")
    g.edge(go.START, "add")
    g.edge("add", "add", when=lambda s: s.i < steps)
    g.edge("add", "done")
    tracemalloc.start()
    try:
        rt = go.Runtime(go.MemoryStore())
        before = tracemalloc.get_traced_memory()[0]
        result = await (await rt.start(g, _Log())).wait()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(result.state.items) == steps
    # a copy of the list per checkpoint would be ~50 MB (1,000 x 50 KB on average)
    assert kept < 15_000_000, kept
    # every checkpoint still reads back whole
    history = await rt.history(result.run_id)
    for cp in (history[1], history[500], history[-1]):
        state = await rt.state_at(result.run_id, at=cp.checkpoint_id)
        assert state.items == result.state.items[: state.i]
