"""The runtime: stepping, control flow, events, parallel branches, on asyncio and trio."""

from __future__ import annotations

import threading
from typing import Annotated, Any

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

import graphorch as go


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


class Counter(BaseModel):
    n: int = 0
    log: Annotated[list[str], go.append] = []
    note: str = ""


def chain(length: int = 3) -> go.Graph[Counter, Any]:
    g = go.Graph("chain", state=Counter)
    prev = go.START
    for i in range(length):

        async def inc(s: Counter) -> dict[str, Any]:
            return {"n": s.n + 1}

        g.plan(f"inc{i}", inc)
        g.edge(prev, f"inc{i}")
        prev = f"inc{i}"
    g.end("done", output=lambda s: {"total": s.n})
    g.edge(prev, "done")
    return g


async def test_step_advances_exactly_one_node_and_reports_it() -> None:
    run = await go.Runtime().start(chain(), Counter())
    assert run.next_nodes == ("inc0",)
    step = await run.step()
    assert step.node == "inc0"
    assert dict(step.changes) == {"n": 1}
    assert step.next_nodes == ("inc1",)
    assert step.status is go.RunStatus.RUNNING
    assert run.state.n == 1 and run.steps == 1


async def test_wait_runs_to_the_end_node_and_returns_its_output() -> None:
    run = await go.Runtime().start(chain(5), {"n": 10})
    result = await run.wait()
    assert result.status is go.RunStatus.SUCCEEDED
    assert result.output == {"total": 15}
    assert result.state.n == 15
    assert result.steps == 6
    assert "done" in (result.reason or "")
    with pytest.raises(go.RunNotActiveError, match="succeeded"):
        await run.step()


def test_sync_run_helper_for_scripts() -> None:
    result = go.run(chain(2), Counter(n=1))
    assert result.output == {"total": 3}


async def test_sync_node_functions_run_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    g = go.Graph("sync", state=Counter)

    @g.plan
    def work(s: Counter, ctx: go.Context[None]) -> dict[str, Any]:
        seen.append(threading.get_ident())
        return {"n": s.n + 1, "note": ctx.node}

    g.end("done")
    g.edge(go.START, "work").edge("work", "done")
    result = await (await go.Runtime().start(g, Counter())).wait()
    assert result.state.note == "work" and result.state.n == 1
    assert seen and seen[0] != loop_thread


async def test_a_node_may_return_a_new_state_or_none() -> None:
    g = go.Graph("returns", state=Counter)

    @g.plan
    async def whole(s: Counter) -> Counter:
        return s.model_copy(update={"n": 7, "note": "whole"})

    @g.plan
    async def nothing(s: Counter) -> None:
        return None

    g.end("done")
    g.edge(go.START, "whole").edge("whole", "nothing").edge("nothing", "done")
    run = await go.Runtime().start(g, Counter())
    first = await run.step()
    assert dict(first.changes) == {"n": 7, "note": "whole"}
    second = await run.step()
    assert dict(second.changes) == {}
    assert (await run.wait()).state.n == 7


@pytest.mark.parametrize(
    ("returned", "field", "message"),
    [
        ({"nope": 1}, "nope", "unknown field"),
        ({"n": "many", "note": "x"}, "n", "bad change to field 'n'"),
        ({"note": "ok", "log": "not a list"}, "log", "log"),
    ],
)
async def test_a_bad_change_fails_the_step_and_leaves_the_state_whole(
    returned: dict[str, Any], field: str, message: str
) -> None:
    g = go.Graph("bad", state=Counter)

    @g.plan
    async def broken(s: Counter) -> dict[str, Any]:
        return returned

    g.end("done")
    g.edge(go.START, "broken").edge("broken", "done")
    rt = go.Runtime()
    run = await rt.start(g, Counter(note="before"))
    step = await run.step()
    assert step.status is go.RunStatus.FAILED
    assert isinstance(step.error, go.StateUpdateError)
    assert step.error.node == "broken" and step.error.field == field
    assert message in str(step.error)
    assert run.state == Counter(note="before")
    stored = await rt.state_at(run.id)
    assert stored == Counter(note="before")
    record = await rt.get_run(run.id)
    assert record.status is go.RunStatus.FAILED and record.error_node == "broken"


async def test_garbage_return_value_is_a_clear_error() -> None:
    g = go.Graph("garbage", state=Counter)
    g.plan("junk", lambda s: 42)
    g.end("done")
    g.edge(go.START, "junk").edge("junk", "done")
    result = await (await go.Runtime().start(g, Counter())).wait()
    assert result.status is go.RunStatus.FAILED
    assert "returned int" in (result.reason or "") and result.node == "junk"


async def test_retries_with_backoff_then_success() -> None:
    calls: list[int] = []
    g = go.Graph("flaky", state=Counter)

    @g.plan(retry=go.Retry(attempts=3, backoff=0.001))
    async def flaky(s: Counter, ctx: go.Context[None]) -> dict[str, Any]:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("upstream down")
        return {"n": 1}

    g.end("done")
    g.edge(go.START, "flaky").edge("flaky", "done")
    run = await go.Runtime().start(g, Counter())
    result = await run.wait()
    assert result.succeeded and calls == [1, 2, 3]
    retries = [e for e in await run_events(run) if isinstance(e, go.Retrying)]
    assert [(r.attempt, r.delay) for r in retries] == [(1, 0.001), (2, 0.002)]
    assert "ConnectionError" in retries[0].error


async def test_retries_exhausted_fail_the_run_with_the_cause() -> None:
    g = go.Graph("down", state=Counter)

    @g.plan(retry=2)
    async def down(s: Counter) -> dict[str, Any]:
        raise ConnectionError("still down")

    g.end("done")
    g.edge(go.START, "down").edge("down", "done")
    result = await (await go.Runtime().start(g, Counter())).wait()
    assert result.status is go.RunStatus.FAILED
    assert isinstance(result.error, go.NodeError)
    assert isinstance(result.error.__cause__, ConnectionError)
    assert "after 2 attempts" in str(result.error) and result.node == "down"


async def test_node_timeout() -> None:
    g = go.Graph("slow", state=Counter)

    @g.plan(timeout=0.05)
    async def slow(s: Counter) -> dict[str, Any]:
        await anyio.sleep_forever()
        return {}

    g.end("done")
    g.edge(go.START, "slow").edge("slow", "done")
    result = await (await go.Runtime().start(g, Counter())).wait()
    assert isinstance(result.error, go.NodeTimeoutError)
    assert result.node == "slow" and "timeout of 0.05s" in (result.reason or "")


async def test_run_timeout() -> None:
    g = go.Graph("slowrun", state=Counter, timeout=0.05)

    @g.plan
    async def slow(s: Counter) -> dict[str, Any]:
        await anyio.sleep_forever()
        return {}

    g.end("done")
    g.edge(go.START, "slow").edge("slow", "done")
    result = await (await go.Runtime().start(g, Counter())).wait()
    assert isinstance(result.error, go.RunTimeoutError)
    assert result.status is go.RunStatus.FAILED and "0.05" in (result.reason or "")


def looping(**limits: Any) -> go.Graph[Counter, Any]:
    g = go.Graph("loop", state=Counter, max_steps=limits.get("max_steps"))
    g.plan("spin", lambda s: {"n": s.n + 1}, max_visits=limits.get("max_visits"))
    g.end("done")
    g.edge(go.START, "spin")
    g.edge("spin", "done", when=lambda s: s.n >= 1000)
    g.edge("spin", "spin")
    return g


async def test_max_steps_stops_a_loop_with_its_reason() -> None:
    result = await (await go.Runtime().start(looping(max_steps=5), Counter())).wait()
    assert isinstance(result.error, go.MaxStepsExceededError)
    assert result.steps == 5 and result.state.n == 5
    assert "max_steps=5" in (result.reason or "")


async def test_max_steps_can_be_set_per_run() -> None:
    rt = go.Runtime()
    run = await rt.start(looping(max_steps=50), Counter(), max_steps=3)
    assert (await run.wait()).steps == 3


async def test_visit_limit_detects_a_loop() -> None:
    result = await (await go.Runtime().start(looping(max_visits=4), Counter())).wait()
    assert isinstance(result.error, go.VisitLimitExceededError)
    assert result.node == "spin" and result.state.n == 4
    assert "looping" in (result.reason or "")


async def test_cancel_interrupts_a_step_in_flight() -> None:
    entered = anyio.Event()
    g = go.Graph("stuck", state=Counter)

    @g.plan
    async def stuck(s: Counter) -> dict[str, Any]:
        entered.set()
        await anyio.sleep_forever()
        return {"n": 1}

    g.end("done")
    g.edge(go.START, "stuck").edge("stuck", "done")
    rt = go.Runtime()
    run = await rt.start(g, Counter())
    results: list[go.RunResult[Counter]] = []

    async def drive() -> None:
        results.append(await run.wait())

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive)
        await entered.wait()
        await run.cancel("operator changed their mind")
    assert results[0].status is go.RunStatus.CANCELLED
    assert results[0].reason == "operator changed their mind"
    assert results[0].state.n == 0
    assert (await rt.get_run(run.id)).status is go.RunStatus.CANCELLED
    with pytest.raises(go.RunCancelledError):
        results[0].raise_for_status()


async def test_cancel_between_steps() -> None:
    rt = go.Runtime()
    run = await rt.start(chain(), Counter())
    await run.step()
    await run.cancel()
    assert run.status is go.RunStatus.CANCELLED
    assert any(isinstance(e, go.RunCancelled) for e in await rt.store.list_events(run.id))


def research_graph() -> go.Graph[Counter, Any]:
    g = go.Graph("research", state=Counter, max_steps=20)

    @g.plan
    async def plan(s: Counter, ctx: go.Context[None]) -> dict[str, Any]:
        seen = f"replan:{ctx.backtracked.reason}" if ctx.backtracked else "plan"
        return {"log": [seen]}

    @g.plan(backtrack="plan")
    async def check(s: Counter) -> Any:
        if s.n == 0:
            return go.Backtrack("plan", reason="claim unsupported", update={"n": 1})
        return {"log": ["checked"]}

    g.end("draft", output=lambda s: s.log)
    g.edge(go.START, "plan").edge("plan", "check").edge("check", "draft")
    return g


async def test_backtrack_sends_the_run_to_an_earlier_node_with_the_reason() -> None:
    run = await go.Runtime().start(research_graph(), Counter())
    result = await run.wait()
    assert result.output == ["plan", "replan:claim unsupported", "checked"]
    back = [e for e in await run_events(run) if isinstance(e, go.Backtracked)]
    assert [(b.node, b.to, b.reason) for b in back] == [("check", "plan", "claim unsupported")]


async def test_backtrack_to_an_undeclared_node_fails() -> None:
    g = go.Graph("rogue", state=Counter)
    g.plan("a", lambda s: None)
    g.plan("b", lambda s: go.Backtrack("a", reason="x"))
    g.end("done")
    g.edge(go.START, "a").edge("a", "b").edge("b", "done")
    result = await (await go.Runtime().start(g, Counter())).wait()
    assert result.status is go.RunStatus.FAILED and result.node == "b"
    assert "backtrack=" in (result.reason or "")


class Http:
    """Stands in for an HTTP client: a resource, never checkpointed."""

    def __init__(self, name: str) -> None:
        self.name = name


class Fetched(BaseModel):
    client: str = ""
    n: int = 0


async def test_dependencies_are_injected_and_fresh_on_resume() -> None:
    g: go.Graph[Fetched, Http] = go.Graph("deps", state=Fetched, deps=Http)

    @g.plan
    async def first(s: Fetched, ctx: go.Context[Http]) -> dict[str, Any]:
        return {"client": ctx.deps.name, "n": 1}

    @g.plan
    async def second(s: Fetched, ctx: go.Context[Http]) -> dict[str, Any]:
        return {"client": s.client + "+" + ctx.deps.name}

    g.end("done")
    g.edge(go.START, "first").edge("first", "second").edge("second", "done")
    store = go.MemoryStore()
    rt = go.Runtime(store, deps=Http("old"), lease_ttl=0.01)
    run = await rt.start(g, Fetched())
    await run.step()
    await run._release()  # this process "dies" holding nothing  # pyright: ignore[reportPrivateUsage]
    fresh = go.Runtime(store, graphs=[g])
    resumed = await fresh.resume(run.id, deps=Http("new"))
    result = await resumed.wait()
    assert result.state.client == "old+new"


class Holder(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    thing: Any = None


async def test_unserializable_state_is_refused_naming_the_field() -> None:
    g = go.Graph("leaky", state=Holder)
    g.plan("leak", lambda s: {"thing": threading.Lock()})
    g.end("done")
    g.edge(go.START, "leak").edge("leak", "done")
    result = await (await go.Runtime().start(g, Holder())).wait()
    assert isinstance(result.error, go.UnserializableStateError)
    assert result.error.field == "thing" and result.node == "leak"
    assert result.state.thing is None


async def test_input_that_does_not_validate_stores_nothing() -> None:
    rt = go.Runtime()
    with pytest.raises(go.InputValidationError, match="n: Input should be a valid integer"):
        await rt.start(chain(), {"n": "lots"})
    with pytest.raises(go.InputValidationError, match="Counter or a dict"):
        await rt.start(chain(), 42)  # type: ignore[arg-type]
    with pytest.raises(go.InputValidationError, match="is a Fetched"):
        await rt.start(chain(), Fetched())  # type: ignore[arg-type]
    assert await rt.store.list_runs() == []


async def test_an_invalid_graph_cannot_start() -> None:
    g = go.Graph("broken", state=Counter)
    g.plan("lonely", lambda s: None)
    with pytest.raises(go.GraphDefinitionError):
        await go.Runtime().start(g, Counter())


async def test_edges_fire_in_order_with_a_default() -> None:
    g = go.Graph("router", state=Counter)
    g.plan("triage", lambda s: None)
    g.end("big", output=lambda s: "big")
    g.end("small", output=lambda s: "small")
    g.end("zero", output=lambda s: "zero")
    g.edge(go.START, "triage")
    g.edge("triage", "zero", when=lambda s: s.n == 0)
    g.edge("triage", "big", when=lambda s: s.n > 10)
    g.edge("triage", "small")
    rt = go.Runtime()
    outputs = [(await (await rt.start(g, {"n": n})).wait()).output for n in (0, 50, 5)]
    assert outputs == ["zero", "big", "small"]


async def test_a_predicate_that_raises_fails_the_run_naming_the_edge() -> None:
    def picky(s: Counter) -> bool:
        raise KeyError("category")

    g = go.Graph("picky", state=Counter)
    g.plan("triage", lambda s: None)
    g.end("done")
    g.edge(go.START, "triage").edge("triage", "done", when=picky).edge("triage", "done")
    result = await (await go.Runtime().start(g, Counter())).wait()
    assert isinstance(result.error, go.EdgeConditionError)
    assert result.node == "triage" and "picky" in (result.reason or "")


async def test_no_edge_matching_and_no_default_is_a_clear_failure() -> None:
    g = go.Graph("deadend", state=Counter)
    g.plan("triage", lambda s: None)
    g.end("done")
    g.edge(go.START, "triage").edge("triage", "done", when=lambda s: s.n > 0)
    result = await (await go.Runtime().start(g, Counter())).wait()
    assert result.status is go.RunStatus.FAILED and "default edge" in (result.reason or "")


def fan_out(conflict: bool = False) -> go.Graph[Counter, Any]:
    g = go.Graph("fan", state=Counter)
    a_ready, b_ready = anyio.Event(), anyio.Event()

    @g.plan
    async def a(s: Counter) -> dict[str, Any]:
        a_ready.set()
        await b_ready.wait()  # only returns if b runs at the same time
        return {"log": ["a"], **({"note": "a"} if conflict else {})}

    @g.plan
    async def b(s: Counter) -> dict[str, Any]:
        b_ready.set()
        await a_ready.wait()
        return {"log": ["b"], "note": "b"}

    g.plan("join", lambda s: {"n": len(s.log)})
    g.end("done", output=lambda s: s.log)
    g.edge(go.START, ["a", "b"]).edge("a", "join").edge("b", "join").edge("join", "done")
    return g


async def test_parallel_branches_run_concurrently_and_join_with_reducers() -> None:
    run = await go.Runtime().start(fan_out(), Counter(log=["start"]))
    first = await run.step()
    assert first.nodes == ("a", "b")
    assert first.next_nodes == ("join",)
    assert run.steps == 2
    result = await run.wait()
    assert result.output == ["start", "a", "b"]
    assert result.state.n == 3 and result.state.note == "b"


async def test_conflicting_parallel_writes_name_the_field_and_nodes() -> None:
    result = await (await go.Runtime().start(fan_out(conflict=True), Counter())).wait()
    assert isinstance(result.error, go.ConflictingUpdateError)
    assert result.error.field == "note"
    assert "'a'" in str(result.error) and "'b'" in str(result.error)
    assert result.state.log == []


async def run_events(run: go.Run[Any]) -> list[go.Event]:
    return [e async for e in run.events()]


async def test_events_stream_live_while_the_run_advances() -> None:
    run = await go.Runtime().start(chain(2), Counter())
    kinds: list[str] = []

    async def listen() -> None:
        async for event in run.events():
            kinds.append(event.kind)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        await run.wait()
    assert kinds == [
        "run_started",
        "step_started",
        "step_finished",
        "step_started",
        "step_finished",
        "step_started",
        "step_finished",
        "run_finished",
    ]


async def test_custom_events_are_committed_with_the_step() -> None:
    g = go.Graph("noisy", state=Counter)

    @g.plan
    async def work(s: Counter, ctx: go.Context[None]) -> None:
        ctx.emit("progress", pct=50)

    g.end("done")
    g.edge(go.START, "work").edge("work", "done")
    rt = go.Runtime()
    run = await rt.start(g, Counter())
    await run.wait()
    custom = [e for e in await rt.store.list_events(run.id) if isinstance(e, go.CustomEvent)]
    assert [(c.node, c.name, c.data) for c in custom] == [("work", "progress", {"pct": 50})]


async def test_many_concurrent_runs_are_independent() -> None:
    rt = go.Runtime()
    results: dict[int, Any] = {}
    g = go.Graph("sleepy", state=Counter)

    @g.plan
    async def nap(s: Counter) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        return {"n": s.n * 2}

    g.end("done", output=lambda s: s.n)
    g.edge(go.START, "nap").edge("nap", "done")

    async def one(i: int) -> None:
        results[i] = (await (await rt.start(g, {"n": i})).wait()).output

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(one, i)
    assert results == {i: i * 2 for i in range(100)}


async def test_history_state_at_and_fork() -> None:
    rt = go.Runtime()
    run = await rt.start(chain(3), Counter())
    await run.wait()
    history = await rt.history(run.id)
    assert [c.seq for c in history] == [0, 1, 2, 3, 4]
    assert [c.nodes for c in history][1:] == [("inc0",), ("inc1",), ("inc2",), ("done",)]
    assert (await rt.state_at(run.id, 2)).n == 2
    fork = await rt.fork(run.id, at=2, patch={"n": 100})
    assert fork.next_nodes == ("inc2",)
    forked = await fork.wait()
    assert forked.output == {"total": 101}
    assert (await rt.state_at(run.id)).n == 3  # the original is untouched
    with pytest.raises(go.InputValidationError, match="patch"):
        await rt.fork(run.id, at=1, patch={"n": "x"})


async def test_a_second_owner_cannot_resume_a_live_run() -> None:
    store = go.MemoryStore()
    g = chain()
    run = await go.Runtime(store).start(g, Counter())
    with pytest.raises(go.RunLockedError):
        await go.Runtime(store, graphs=[g]).resume(run.id)


async def test_an_error_edge_catches_a_failed_node_and_says_what_failed() -> None:
    g = go.Graph("fallible", state=Counter)

    @g.plan(retry=go.Retry(attempts=2, backoff=0.001))
    async def fetch(s: Counter) -> dict[str, Any]:
        raise ConnectionError("upstream down")

    @g.plan
    async def fallback(s: Counter, ctx: go.Context[None]) -> dict[str, Any]:
        assert ctx.error is not None
        return {"note": f"{ctx.error.source}: {ctx.error.error_type}: {ctx.error.reason}"}

    g.end("done", output=lambda s: s.note)
    g.edge(go.START, "fetch")
    g.edge("fetch", "done")
    g.edge("fetch", "fallback", on_error=ConnectionError)
    g.edge("fallback", "done")
    rt = go.Runtime()
    run = await rt.start(g, Counter(n=5))
    first = await run.step()
    assert first.status is go.RunStatus.RUNNING and first.next_nodes == ("fallback",)
    assert dict(first.changes) == {} and run.state.n == 5
    result = await run.wait()
    assert result.output == (
        "fetch: NodeError: raised ConnectionError: upstream down (after 2 attempts)"
    )
    routed = [e for e in await rt.store.list_events(run.id) if isinstance(e, go.ErrorRouted)]
    assert [(r.node, r.to, r.error_type) for r in routed] == [("fetch", ("fallback",), "NodeError")]


async def test_an_error_edge_for_another_error_type_does_not_fire() -> None:
    g = go.Graph("picky_errors", state=Counter)
    g.plan("fetch", lambda s: {"n": "not a number"})
    g.plan("fallback", lambda s: None)
    g.end("done")
    g.edge(go.START, "fetch").edge("fetch", "done")
    g.edge("fetch", "fallback", on_error=go.ToolError).edge("fallback", "done")
    result = await (await go.Runtime().start(g, Counter())).wait()
    assert result.status is go.RunStatus.FAILED and isinstance(result.error, go.StateUpdateError)


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_finished_run_is_freed_at_once_without_the_garbage_collector(
    store: str, tmp_path: Any
) -> None:
    # With thousands of runs in a process, a run handle caught in a reference cycle
    # keeps its states and events alive until a full collection walks them all.
    import gc
    import weakref

    from graph_helpers import S, chain

    rt = go.Runtime(go.MemoryStore() if store == "memory" else go.SQLiteStore(tmp_path / "r.db"))
    g = chain().freeze()
    await (await rt.start(g, S())).wait()  # first use: caches and lazy imports settle
    gc.collect()
    gc.disable()
    try:
        run = await rt.start(g, S())
        assert (await run.wait()).status is go.RunStatus.SUCCEEDED
        handle = weakref.ref(run)
        del run
        assert handle() is None, gc.get_referrers(handle())
    finally:
        gc.enable()
        await rt.store.close()


async def test_a_store_set_on_the_runtime_later_is_the_one_runs_use(tmp_path: Any) -> None:
    from graph_helpers import S, chain

    rt = go.Runtime(go.SQLiteStore(tmp_path / "first.db"))
    g = chain().freeze()
    await (await rt.start(g, S())).wait()
    await rt.store.close()
    rt.store = go.MemoryStore()  # not pipelined, unlike the SQLite store before it
    run = await rt.start(g, S())
    assert (await run.wait()).status is go.RunStatus.SUCCEEDED
    assert (await rt.store.get_run(run.id)).status is go.RunStatus.SUCCEEDED
