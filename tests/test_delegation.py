"""Delegation: child runs of other graphs, fan-out, roles, failures, waiting, nesting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
import pytest
from pydantic import BaseModel

import graphorch as go


class Ticket(BaseModel):
    text: str = ""
    category: str = ""
    reply: str = ""


class Job(BaseModel):
    item: int = 0
    result: int = 0


class Batch(BaseModel):
    items: list[int] = []
    results: list[int] = []
    total: int = 0
    note: str = ""


def support_desk(
    tools: go.ToolRegistry,
) -> tuple[go.Graph[Ticket, Any], go.Graph[Ticket, Any], go.Graph[Ticket, Any]]:
    billing = go.Graph("billing", state=Ticket)
    billing.tool("refund", tool="issue_refund", args=lambda s: {"text": s.text}, result="reply")
    billing.end("done", output=lambda s: s.reply)
    billing.edge(go.START, "refund").edge("refund", "done")

    triage = go.Graph("triage", state=Ticket)
    triage.tool("file", tool="create_ticket", args=lambda s: {"title": s.text}, result="reply")
    triage.end("done", output=lambda s: s.reply)
    triage.edge(go.START, "file").edge("file", "done")

    router = go.Graph("support", state=Ticket)
    router.plan("classify", lambda s: {"category": "refund" if "refund" in s.text else "bug"})
    router.delegate("billing", graph=billing, output="reply")
    router.delegate("triage", graph=triage, output="reply")
    router.end("done", output=lambda s: s.reply)
    router.edge(go.START, "classify")
    router.edge("classify", "billing", when=lambda s: s.category == "refund")
    router.edge("classify", "triage")
    router.edge("billing", "done").edge("triage", "done")
    return router, billing, triage


def desk_tools() -> go.ToolRegistry:
    tools = go.ToolRegistry()

    @tools.tool
    async def issue_refund(text: str) -> str:
        return "refund issued"

    @tools.tool
    async def create_ticket(title: str) -> str:
        return f"ticket for {title!r}"

    @tools.tool(destructive=True)
    async def deploy_service(name: str) -> str:
        return "deployed"

    return tools


ROLES = go.Guardrails(
    roles={"support": set(), "billing": {"issue_refund"}, "triage": {"create_ticket"}}
)


async def test_the_router_delegates_to_the_right_agent_as_a_real_child_run() -> None:
    tools = desk_tools()
    router, _, _ = support_desk(tools)
    rt = go.Runtime(tools=tools, guardrails=ROLES)
    run = await rt.start(router, Ticket(text="refund my order"))
    result = await run.wait()
    assert result.output == "refund issued"
    [child] = await rt.store.list_runs(parent_run=run.id)
    assert child.graph == "billing" and child.status is go.RunStatus.SUCCEEDED
    assert [c.nodes for c in await rt.history(child.run_id)][1:] == [("refund",), ("done",)]
    bug = await (await rt.start(router, Ticket(text="it crashes"))).wait()
    assert bug.output == "ticket for 'it crashes'"


async def test_a_child_runs_under_its_own_role() -> None:
    tools = desk_tools()
    billing = go.Graph("billing", state=Ticket)
    billing.tool("oops", tool="deploy_service", args={"name": "api"}, result="reply")
    billing.end("done")
    billing.edge(go.START, "oops").edge("oops", "done")
    parent = go.Graph("ops", state=Ticket)
    parent.delegate("hand_off", graph=billing)
    parent.end("done")
    parent.edge(go.START, "hand_off").edge("hand_off", "done")
    guard = go.Guardrails(roles={"ops": {"deploy_service"}, "billing": {"issue_refund"}})
    rt = go.Runtime(tools=tools, guardrails=guard)
    result = await (await rt.start(parent, Ticket())).wait()
    assert isinstance(result.error, go.ChildRunError)
    [child] = await rt.store.list_runs(parent_run=result.run_id)
    assert child.status is go.RunStatus.FAILED and child.error_node == "oops"
    assert (
        child.reason == "role 'billing' may not call 'deploy_service' (it may call: issue_refund)"
    )


def summing(
    child_delay: float = 0.0,
    *,
    fail_on: int | None = None,
    on_error: Any = "fail_fast",
    work: Callable[[Job], Awaitable[dict[str, Any]]] | None = None,
    **kw: Any,
) -> go.Graph[Batch, Any]:
    """Fan out over ``items`` (each child multiplies its item by 10), then sum; ``work``
    replaces the children's node."""
    worker = go.Graph("worker", state=Job)

    async def multiply(s: Job) -> dict[str, Any]:
        if s.item == fail_on:
            raise ValueError(f"item {s.item} is cursed")
        if child_delay:
            await anyio.sleep(child_delay)  # still running when the cursed sibling fails
        return {"result": s.item * 10}

    worker.plan("work", work or multiply)
    worker.end("done", output=lambda s: s.result)
    worker.edge(go.START, "work").edge("work", "done")
    g = go.Graph("fan", state=Batch)
    g.delegate(
        "spread",
        graph=worker,
        each="items",
        input=lambda item: {"item": item},
        output="results",
        on_error=on_error,
        **kw,
    )
    g.plan("join", lambda s: {"total": sum(s.results)})
    g.end("done", output=lambda s: s.total)
    g.edge(go.START, "spread").edge("spread", "join").edge("join", "done")
    return g


async def test_fan_out_keeps_item_order_and_respects_the_concurrency_limit() -> None:
    running = 0
    peak = 0
    worker = go.Graph("worker", state=Job)

    @worker.plan
    async def work(s: Job) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.001 * (10 - s.item))  # later items finish first
        running -= 1
        return {"result": s.item}

    worker.end("done", output=lambda s: s.result)
    worker.edge(go.START, "work").edge("work", "done")
    g = go.Graph("fan", state=Batch)
    g.delegate(
        "spread",
        graph=worker,
        each="items",
        input=lambda i: {"item": i},
        output="results",
        concurrency=3,
    )
    g.end("done", output=lambda s: s.results)
    g.edge(go.START, "spread").edge("spread", "done")
    rt = go.Runtime()
    result = await (await rt.start(g, Batch(items=list(range(10))))).wait()
    assert result.output == list(range(10))
    assert 1 < peak <= 3
    children = await rt.store.list_runs(parent_run=result.run_id, limit=None)
    assert len(children) == 10


async def test_fail_fast_cancels_the_siblings() -> None:
    sleeping = 0
    all_asleep = anyio.Event()

    async def work(s: Job) -> dict[str, Any]:
        nonlocal sleeping
        if s.item == 0:
            await all_asleep.wait()  # fails once every sibling is running
            raise ValueError(f"item {s.item} is cursed")
        sleeping += 1
        if sleeping == 3:
            all_asleep.set()
        await anyio.sleep(30)
        return {"result": s.item * 10}

    rt = go.Runtime()
    g = summing(work=work, concurrency=4)
    with anyio.fail_after(10):
        result = await (await rt.start(g, Batch(items=[0, 1, 2, 3]))).wait()
    assert isinstance(result.error, go.ChildRunError)
    assert "cursed" in (result.reason or "")
    statuses = {r.status for r in await rt.store.list_runs(parent_run=result.run_id)}
    assert go.RunStatus.CANCELLED in statuses and go.RunStatus.SUCCEEDED not in statuses


async def test_collect_gathers_errors_and_the_rest() -> None:
    worker_outcomes: list[Any] = []

    def keep(outcomes: list[Any], state: Batch) -> dict[str, Any]:
        worker_outcomes.extend(outcomes)
        return {"results": [o.output or 0 for o in outcomes], "note": "partial"}

    g = summing(fail_on=2, on_error="collect")
    spread = g.nodes["spread"]
    assert isinstance(spread, go.DelegateNode)
    g2 = go.Graph("collector", state=Batch)
    g2.delegate(
        "spread",
        graph=spread.graph,
        each="items",
        input=lambda i: {"item": i},
        output=keep,
        on_error="collect",
    )
    g2.end("done", output=lambda s: s.results)
    g2.edge(go.START, "spread").edge("spread", "done")
    result = await (await go.Runtime().start(g2, Batch(items=[1, 2, 3]))).wait()
    assert result.output == [10, 0, 30]
    assert [o.status for o in worker_outcomes] == [
        go.RunStatus.SUCCEEDED,
        go.RunStatus.FAILED,
        go.RunStatus.SUCCEEDED,
    ]
    assert "cursed" in (worker_outcomes[1].reason or "")


async def test_a_child_failure_routes_the_parent_to_its_error_edge() -> None:
    g = summing(fail_on=1)
    g.plan("apologise", lambda s: {"note": "a child failed"})
    g.edge("spread", "apologise", on_error=go.ChildRunError).edge("apologise", "done")
    result = await (await go.Runtime().start(g, Batch(items=[1]))).wait()
    assert result.succeeded and result.state.note == "a child failed"


async def test_cancelling_the_parent_cancels_its_children() -> None:
    rt = go.Runtime()
    run = await rt.start(summing(30.0), Batch(items=[1, 2]))

    async def stop_when_children_run() -> None:
        started = 0
        async for event in run.events():
            if isinstance(event, go.ChildRunStarted):
                started += 1
                if started == 2:
                    await run.cancel("operator stop")

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_when_children_run)
        result = await run.wait()
    assert result.status is go.RunStatus.CANCELLED
    children = await rt.store.list_runs(parent_run=run.id)
    assert {c.status for c in children} == {go.RunStatus.CANCELLED}


async def test_a_child_waiting_for_approval_makes_the_parent_wait_and_both_resume() -> None:
    child = go.Graph("careful", state=Ticket)
    child.approve("ok", approvers={"lead"})
    child.end("done", output=lambda s: "approved work")
    child.edge(go.START, "ok").edge("ok", "done", when=go.approved)
    parent = go.Graph("boss", state=Ticket)
    parent.delegate("ask", graph=child, output="reply")
    parent.end("done", output=lambda s: s.reply)
    parent.edge(go.START, "ask").edge("ask", "done")
    rt = go.Runtime()
    run = await rt.start(parent, Ticket())
    waiting = await run.wait()
    assert waiting.status is go.RunStatus.WAITING
    assert "waiting for child run" in (waiting.reason or "")
    [pending] = await rt.pending_approvals()
    assert pending.run_id != run.id
    await rt.approve(run.id, by="lead")  # found through the child
    resumed = await rt.resume(pending.run_id)  # resuming the child resumes the parent
    assert resumed.id == run.id
    assert (await resumed.wait()).output == "approved work"


async def test_nested_delegation_three_levels_deep() -> None:
    level3 = go.Graph("level3", state=Job)
    level3.plan("leaf", lambda s: {"result": s.item + 1})
    level3.end("done", output=lambda s: s.result)
    level3.edge(go.START, "leaf").edge("leaf", "done")
    graphs: list[go.Graph[Job, Any]] = [level3]
    for depth in (2, 1):
        g = go.Graph(f"level{depth}", state=Job)
        g.delegate("down", graph=graphs[-1], output="result")
        g.plan("add", lambda s: {"result": s.result + 1})
        g.end("done", output=lambda s: s.result)
        g.edge(go.START, "down").edge("down", "add").edge("add", "done")
        graphs.append(g)
    rt = go.Runtime()
    result = await (await rt.start(graphs[-1], Job(item=1))).wait()
    assert result.output == 4
    level2 = await rt.store.list_runs(parent_run=result.run_id)
    level3_runs = await rt.store.list_runs(parent_run=level2[0].run_id)
    assert [r.graph for r in level2 + level3_runs] == ["level2", "level3"]


@pytest.mark.parametrize(
    ("delegate", "message"),
    [
        ({"each": "total"}, "must give a list"),
        ({"each": "items", "input": lambda i: {"item": "x"}}, "child 0 of graph 'worker'"),
        ({"each": "items", "input": lambda i: 1 / 0}, "ZeroDivisionError"),
    ],
)
async def test_bad_mappings_fail_before_any_child_starts(
    delegate: dict[str, Any], message: str
) -> None:
    worker = summing().nodes["spread"]
    assert isinstance(worker, go.DelegateNode)
    g = go.Graph("badfan", state=Batch)
    g.delegate("spread", graph=worker.graph, output="results", **delegate)
    g.end("done")
    g.edge(go.START, "spread").edge("spread", "done")
    rt = go.Runtime()
    result = await (await rt.start(g, Batch(items=[1, 2]))).wait()
    assert isinstance(result.error, go.DelegationError)
    assert message in str(result.error)
    assert await rt.store.list_runs(parent_run=result.run_id) == []


class Tally(BaseModel):
    hits: Annotated[int, go.add] = 0


async def test_parallel_branches_share_the_runtime_concurrency_limit() -> None:
    running = 0
    peak = 0
    g = go.Graph("wide", state=Tally)
    names = [f"b{i}" for i in range(8)]
    for name in names:

        async def branch(s: Tally) -> dict[str, Any]:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0.002)
            running -= 1
            return {"hits": 1}

        g.plan(name, branch)
    g.end("done", output=lambda s: s.hits)
    g.edge(go.START, names)
    for name in names:
        g.edge(name, "done")
    result = await (await go.Runtime(max_concurrency=2).start(g, Tally())).wait()
    assert result.output == 8 and peak == 2


async def test_parallel_tool_calls_take_the_runtime_concurrency_limit_too() -> None:
    running = 0
    peak = 0
    tools = go.ToolRegistry()

    @tools.tool
    async def probe(i: int) -> int:  # pyright: ignore[reportUnusedFunction]
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.002)
        running -= 1
        return i

    g = go.Graph("calls", state=Tally)

    @g.tool
    async def fan(s: Tally, ctx: go.Context[None]) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        results = await ctx.tools.gather(*[("probe", {"i": i}) for i in range(6)])
        return {"hits": len(results)}

    g.end("done", output=lambda s: s.hits)
    g.edge(go.START, "fan").edge("fan", "done")
    rt = go.Runtime(tools=tools, max_concurrency=2)
    result = await (await rt.start(g, Tally())).wait()
    assert result.output == 6 and peak == 2
