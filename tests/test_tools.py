"""Tool calls: validated, policed, journaled and audited by the runtime."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import pytest
from pydantic import BaseModel

import graphorch as go


class Desk(BaseModel):
    query: str = "refund"
    hits: list[str] = []
    ticket: str | None = None
    log: Annotated[list[str], go.append] = []
    amount: int = 0


def registry(effects: list[str] | None = None) -> go.ToolRegistry:
    tools = go.ToolRegistry()
    seen = effects if effects is not None else []

    @tools.tool(idempotent=True, description="Search the knowledge base.")
    async def search(query: str, limit: int = 3) -> list[str]:
        seen.append(f"search:{query}")
        return [f"{query}-{i}" for i in range(limit)]

    @tools.tool(destructive=True)
    def create_ticket(title: str, ctx: go.ToolContext) -> str:
        seen.append(f"ticket:{title}:{ctx.idempotency_key}")
        return f"T-{len(title)}"

    @tools.tool(cost=2.5)
    async def refund(amount: int) -> str:
        seen.append(f"refund:{amount}")
        return f"refunded {amount}"

    return tools


def one_call_graph(
    tool: str, args: Any, *, result: str | None = "ticket", role: str | None = None
) -> go.Graph[Desk, Any]:
    g = go.Graph("caller", state=Desk, role=role)
    g.tool("call", tool=tool, args=args, result=result)
    g.end("done", output=lambda s: s.ticket)
    g.edge(go.START, "call").edge("call", "done")
    return g


async def test_tool_schema_comes_from_type_hints() -> None:
    tools = registry()
    search = tools.get("search")
    assert search is not None and search.idempotent and not search.destructive
    schema = search.json_schema()
    assert schema["required"] == ["query"]
    assert schema["properties"]["limit"]["default"] == 3
    assert search.description == "Search the knowledge base."
    ticket = tools.get("create_ticket")
    assert ticket is not None and "ctx" not in ticket.json_schema()["properties"]


async def test_tool_schema_can_be_overridden() -> None:
    class Args(BaseModel):
        query: str
        limit: int = 10

    tools = go.ToolRegistry()

    @tools.tool(args=Args)
    async def lookup(**kwargs: Any) -> int:
        return kwargs["limit"]

    assert tools.get("lookup") is not None
    assert tools.get("lookup").validate_args({"query": "x"}) == {"query": "x", "limit": 10}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": -1}, "timeout"),
        ({"cost": -2}, "cost"),
        ({"retry": 0}, "retry"),
        ({"rate_limit": 5}, "RateLimit"),
    ],
)
def test_bad_tool_metadata_is_refused(kwargs: dict[str, Any], message: str) -> None:
    tools = go.ToolRegistry()
    with pytest.raises(go.DefinitionError, match=message):
        tools.add(lambda: None, name="x", **kwargs)


def test_duplicate_and_unvalidatable_tools_are_refused() -> None:
    tools = registry()
    with pytest.raises(go.DefinitionError, match="twice"):
        tools.add(lambda query: None, name="search")
    with pytest.raises(go.DefinitionError, match=r"\*args"):
        tools.add(lambda *a: None, name="splat")


async def test_declarative_tool_node_maps_state_to_args_and_result_to_a_field() -> None:
    effects: list[str] = []
    rt = go.Runtime(tools=registry(effects))
    g = one_call_graph("create_ticket", lambda s: {"title": s.query})
    run = await rt.start(g, Desk(query="printer on fire"))
    result = await run.wait()
    assert result.output == "T-15"
    assert effects == [f"ticket:printer on fire:{run.id}:0:call:0"]


async def test_tools_from_code_and_in_parallel() -> None:
    a_in, b_in = anyio.Event(), anyio.Event()
    tools = go.ToolRegistry()

    @tools.tool
    async def left() -> str:
        a_in.set()
        await b_in.wait()  # returns only if right runs at the same time
        return "L"

    @tools.tool
    async def right() -> str:
        b_in.set()
        await a_in.wait()
        return "R"

    g = go.Graph("par", state=Desk)

    @g.tool
    async def both(s: Desk, ctx: go.Context[None]) -> dict[str, Any]:
        assert ctx.tools.names() == ["left", "right"]
        return {"hits": await ctx.tools.gather(("left", {}), ("right", {}))}

    g.end("done", output=lambda s: s.hits)
    g.edge(go.START, "both").edge("both", "done")
    result = await (await go.Runtime(tools=tools).start(g, Desk())).wait()
    assert result.output == ["L", "R"]


async def test_ctx_tools_offers_only_the_roles_tools() -> None:
    seen: list[list[str]] = []
    g = go.Graph("billing", state=Desk)

    @g.tool
    async def look(s: Desk, ctx: go.Context[None]) -> None:
        seen.append(ctx.tools.names())

    g.end("done")
    g.edge(go.START, "look").edge("look", "done")
    guard = go.Guardrails(roles={"billing": {"refund", "search"}})
    await (await go.Runtime(tools=registry(), guardrails=guard).start(g, Desk())).wait()
    assert seen == [["refund", "search"]]


async def denied(graph: go.Graph[Desk, Any], guard: go.Guardrails) -> go.RunResult[Desk]:
    rt = go.Runtime(tools=registry(), guardrails=guard)
    return await (await rt.start(graph, Desk())).wait()


async def test_a_tool_outside_the_role_is_denied_and_audited() -> None:
    effects: list[str] = []
    rt = go.Runtime(
        tools=registry(effects), guardrails=go.Guardrails(roles={"billing": ["refund"]})
    )
    g = one_call_graph("create_ticket", {"title": "x"}, role="billing")
    run = await rt.start(g, Desk())
    result = await run.wait()
    assert isinstance(result.error, go.PolicyDeniedError)
    assert result.error.rule == "role" and result.error.tool == "create_ticket"
    assert "may not call 'create_ticket'" in str(result.error)
    assert effects == []
    audit = [e for e in await rt.store.list_events(run.id) if isinstance(e, go.ToolCalled)]
    assert [(a.tool, a.outcome, a.decision) for a in audit] == [("create_ticket", "denied", "role")]


async def test_a_denial_is_a_typed_error_the_node_can_handle() -> None:
    g = go.Graph("careful", state=Desk, role="reader")

    @g.tool
    async def attempt(s: Desk, ctx: go.Context[None]) -> dict[str, Any]:
        try:
            await ctx.tools.call("create_ticket", title="x")
        except go.PolicyDeniedError as err:
            return {"log": [f"denied by {err.rule}"]}
        return {"log": ["created"]}

    g.end("done", output=lambda s: s.log)
    g.edge(go.START, "attempt").edge("attempt", "done")
    result = await denied(g, go.Guardrails(read_only=True))
    assert result.output == ["denied by read_only"]


async def test_read_only_mode_denies_destructive_tools_only() -> None:
    guard = go.Guardrails(read_only={"auditor"})
    ok = await denied(
        one_call_graph("search", {"query": "q"}, result="hits", role="auditor"), guard
    )
    assert ok.succeeded and ok.state.hits == ["q-0", "q-1", "q-2"]
    bad = await denied(one_call_graph("create_ticket", {"title": "t"}, role="auditor"), guard)
    assert isinstance(bad.error, go.PolicyDeniedError) and bad.error.rule == "read_only"
    other_role = await denied(one_call_graph("create_ticket", {"title": "t"}, role="ops"), guard)
    assert other_role.succeeded


async def test_arguments_are_validated_before_anything_runs() -> None:
    effects: list[str] = []
    rt = go.Runtime(tools=registry(effects))
    run = await rt.start(one_call_graph("refund", {"amount": "lots"}, result=None), Desk())
    result = await run.wait()
    assert isinstance(result.error, go.ToolArgumentsError)
    assert "amount" in str(result.error) and "valid integer" in str(result.error)
    assert effects == []
    extra = await (
        await rt.start(one_call_graph("refund", {"amount": 1, "to": "me"}, result=None), Desk())
    ).wait()
    assert isinstance(extra.error, go.ToolArgumentsError) and "to" in str(extra.error)


async def test_unknown_tool() -> None:
    result = await denied(one_call_graph("teleport", {}), go.Guardrails())
    assert isinstance(result.error, go.UnknownToolError)
    assert "teleport" in str(result.error) and "search" in str(result.error)


class NoBigRefunds:
    name = "no_big_refunds"

    def check(self, request: go.ToolRequest) -> go.Decision | None:
        if request.tool.name == "refund" and request.args["amount"] > 500:
            return go.Decision.deny(self.name, f"refund of {request.args['amount']} is over 500")
        return None


async def test_custom_policy() -> None:
    guard = go.Guardrails(policies=(NoBigRefunds(),))
    small = await denied(one_call_graph("refund", {"amount": 20}), guard)
    assert small.output == "refunded 20"
    big = await denied(one_call_graph("refund", {"amount": 900}), guard)
    assert isinstance(big.error, go.PolicyDeniedError)
    assert big.error.rule == "no_big_refunds" and "over 500" in str(big.error)


def looping_caller(tool: str, args: dict[str, Any]) -> go.Graph[Desk, Any]:
    g = go.Graph("spender", state=Desk, max_steps=100)
    g.tool("spend", tool=tool, args=args, result=None)
    g.plan("count", lambda s: {"amount": s.amount + 1})
    g.end("done")
    g.edge(go.START, "spend").edge("spend", "count")
    g.edge("count", "done", when=lambda s: s.amount >= 10).edge("count", "spend")
    return g


async def test_budget_of_tool_calls_stops_the_run_with_the_reason() -> None:
    guard = go.Guardrails(budget=go.Budget(max_tool_calls=3))
    result = await denied(looping_caller("search", {"query": "q"}), guard)
    assert isinstance(result.error, go.BudgetExceededError)
    assert result.state.amount == 3 and "3 tool calls" in (result.reason or "")


async def test_budget_of_cost_stops_the_run_even_if_the_node_catches_it() -> None:
    g = go.Graph("sneaky", state=Desk, max_steps=50)

    @g.tool(max_visits=20)
    async def spend(s: Desk, ctx: go.Context[None]) -> dict[str, Any]:
        try:
            await ctx.tools.call("refund", amount=1)
        except go.BudgetExceededError:
            return {"log": ["ignored the budget"]}
        return {"amount": s.amount + 1}

    g.end("done")
    g.edge(go.START, "spend").edge("spend", "done", when=lambda s: s.amount >= 10)
    g.edge("spend", "spend")
    result = await denied(g, go.Guardrails(budget=go.Budget(max_cost=6.0)))
    assert isinstance(result.error, go.BudgetExceededError)
    assert result.state.amount == 2 and result.state.log == []


async def test_rate_limits_hold_across_100_concurrent_runs() -> None:
    starts: list[float] = []
    tools = go.ToolRegistry()
    limit = go.RateLimit(calls=10, per=0.1, max_wait=10)

    @tools.tool(rate_limit=limit)
    async def ping() -> int:
        starts.append(anyio.current_time())
        return 1

    rt = go.Runtime(tools=tools)
    g = one_call_graph("ping", {}, result=None)

    async def one() -> None:
        assert (await (await rt.start(g, Desk())).wait()).succeeded

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(one)
    assert len(starts) == 100
    starts.sort()
    for i in range(len(starts) - limit.calls):
        # any 11 consecutive calls span more than one window; the tool notes its start
        # a little after its slot is taken (more if the OS preempts the process), so
        # allow a tenth of the window for that
        assert starts[i + limit.calls] - starts[i] >= limit.per * 0.9


async def test_a_global_rate_limit_that_cannot_be_met_in_time_is_a_denial() -> None:
    guard = go.Guardrails(rate_limits=(go.RateLimit(calls=1, per=60, scope="global", max_wait=0),))
    rt = go.Runtime(tools=registry(), guardrails=guard)
    g = one_call_graph("search", {"query": "q"}, result="hits")
    first = await (await rt.start(g, Desk())).wait()
    second = await (await rt.start(g, Desk())).wait()
    assert first.succeeded
    assert isinstance(second.error, go.RateLimitedError) and second.error.rule == "rate_limit"


async def test_a_tool_that_raises_times_out_or_returns_junk() -> None:
    tools = go.ToolRegistry()

    @tools.tool(retry=go.Retry(attempts=2, backoff=0.001))
    async def boom() -> str:
        raise RuntimeError("kaput")

    @tools.tool(timeout=0.05)
    async def hang() -> str:
        await anyio.sleep_forever()
        return ""

    @tools.tool
    async def junk() -> int:
        return "not a number"  # type: ignore[return-value]

    rt = go.Runtime(tools=tools)
    outcomes: dict[str, Any] = {}
    for name in ("boom", "hang", "junk"):
        run = await rt.start(one_call_graph(name, {}, result=None), Desk())
        outcomes[name] = (await run.wait()).error
        audit = [e for e in await rt.store.list_events(run.id) if isinstance(e, go.ToolCalled)]
        assert [a.outcome for a in audit] == ["failed"]
    assert isinstance(outcomes["boom"], go.ToolFailedError)
    assert "kaput" in str(outcomes["boom"]) and "after 2 attempts" in str(outcomes["boom"])
    assert isinstance(outcomes["boom"].__cause__, RuntimeError)
    assert isinstance(outcomes["hang"], go.ToolTimeoutError)
    assert isinstance(outcomes["junk"], go.ToolResultError)
    assert "declared result type" in str(outcomes["junk"])


async def test_every_call_is_audited_with_redacted_arguments() -> None:
    def hide(tool: str, args: Any) -> dict[str, Any]:
        return {k: ("***" if k == "title" else v) for k, v in args.items()}

    rt = go.Runtime(tools=registry(), guardrails=go.Guardrails(redact=hide))
    run = await rt.start(one_call_graph("create_ticket", {"title": "secret"}), Desk())
    await run.wait()
    [audit] = [e for e in await rt.store.list_events(run.id) if isinstance(e, go.ToolCalled)]
    assert audit.args == {"title": "***"}
    assert (audit.role, audit.node, audit.outcome, audit.decision) == (
        "caller",
        "call",
        "succeeded",
        "allow",
    )
    assert audit.duration >= 0
    [call] = await rt.calls(run.id)
    assert call.status is go.CallStatus.SUCCEEDED and b"secret" not in call.args


async def test_a_retried_node_replays_calls_it_already_made() -> None:
    effects: list[str] = []
    g = go.Graph("again", state=Desk)

    @g.tool(retry=go.Retry(attempts=2, backoff=0.001))
    async def twice(s: Desk, ctx: go.Context[None]) -> dict[str, Any]:
        ticket = await ctx.tools.call("create_ticket", title="once")
        if ctx.attempt == 1:
            raise ConnectionError("flaky after the call")
        return {"ticket": ticket}

    g.end("done", output=lambda s: s.ticket)
    g.edge(go.START, "twice").edge("twice", "done")
    result = await (await go.Runtime(tools=registry(effects)).start(g, Desk())).wait()
    assert result.output == "T-4"
    assert len(effects) == 1


async def test_only_calls_that_must_not_repeat_are_journaled_before_they_run() -> None:
    """A non-idempotent call is marked started (durably) before its effect; an
    idempotent one needs no mark: cut short by a crash, it is simply made again."""
    store = go.MemoryStore()
    seen: dict[str, list[str]] = {}
    tools = go.ToolRegistry()

    async def journal_now(name: str) -> None:
        calls = await store.list_calls(run_id)
        seen[name] = [f"{c.tool}:{c.status.value}" for c in calls]

    @tools.tool
    async def charge() -> str:  # pyright: ignore[reportUnusedFunction]
        await journal_now("charge")
        return "charged"

    @tools.tool(idempotent=True)
    async def lookup() -> str:  # pyright: ignore[reportUnusedFunction]
        await journal_now("lookup")
        return "found"

    g: go.Graph[Desk, None] = go.Graph("calls", state=Desk)

    @g.plan
    async def work(s: Desk, ctx: go.Context[None]) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        return {"hits": [await ctx.tools.call("lookup"), await ctx.tools.call("charge")]}

    g.end("done")
    g.edge(go.START, "work").edge("work", "done")
    rt = go.Runtime(store, tools=tools)
    run = await rt.start(g, Desk())
    run_id = run.id
    result = await run.wait()
    assert result.state.hits == ["found", "charged"]
    assert seen["lookup"] == []
    assert "charge:started" in seen["charge"]
    final = {c.tool: c.status.value for c in await store.list_calls(run_id)}
    assert final == {"lookup": "succeeded", "charge": "succeeded"}
