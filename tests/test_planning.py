"""Plan nodes asking a model: validated, retried with feedback, journaled, budgeted."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import graphorch as go
from graphorch.testing import ScriptedModel


class Route(BaseModel):
    category: Literal["refund", "bug"]
    confidence: float


class Ticket(BaseModel):
    text: str = "refund please"
    route: Route | None = None
    plan: go.Plan | None = None
    note: str = ""


def router() -> go.Graph[Ticket, Any]:
    g = go.Graph("router", state=Ticket)
    g.plan(
        "classify",
        prompt=lambda s: f"Classify this ticket: {s.text}",
        schema=Route,
        result="route",
        attempts=3,
    )
    g.end("refund", output=lambda s: "refund desk")
    g.end("bug", output=lambda s: "bug desk")
    g.edge(go.START, "classify")
    g.edge(
        "classify", "refund", when=lambda s: s.route is not None and s.route.category == "refund"
    )
    g.edge("classify", "bug")
    return g


async def test_a_plan_node_asks_the_model_and_routes_on_the_validated_answer() -> None:
    model = ScriptedModel([{"category": "refund", "confidence": 0.9}])
    rt = go.Runtime(model=model)
    run = await rt.start(router(), Ticket())
    result = await run.wait()
    assert result.output == "refund desk"
    assert result.state.route == Route(category="refund", confidence=0.9)
    [call] = model.calls
    assert call.schema is Route and "refund please" in call.last_user_message
    audit = [e for e in await rt.store.list_events(run.id) if isinstance(e, go.ModelCalled)]
    assert [(a.model, a.outcome) for a in audit] == [("scripted", "succeeded")]


async def test_invalid_answers_are_retried_with_the_error_fed_back() -> None:
    model = ScriptedModel(
        [
            "this is not json",
            {"category": "weather", "confidence": 1},
            {"category": "bug", "confidence": 0.5},
        ]
    )
    result = await (await go.Runtime(model=model).start(router(), Ticket())).wait()
    assert result.output == "bug desk"
    assert len(model.calls) == 3
    second, third = model.calls[1].messages, model.calls[2].messages
    assert "not valid JSON" in second[-1].content
    assert "category" in third[-1].content and "schema" in third[-1].content


async def test_exhausted_retries_route_to_the_error_edge() -> None:
    model = ScriptedModel(["nope", "", "{}"])
    g = router()
    g.plan("human", lambda s: {"note": "needs a human"})
    g.end("escalated", output=lambda s: s.note)
    g.edge("classify", "human", on_error=go.ModelOutputError).edge("human", "escalated")
    result = await (await go.Runtime(model=model).start(g, Ticket())).wait()
    assert result.output == "needs a human" and len(model.calls) == 3


async def test_a_refusal_is_a_typed_error() -> None:
    model = ScriptedModel([go.ModelRefusalError("I can't help with that", refusal="no")])
    result = await (await go.Runtime(model=model).start(router(), Ticket())).wait()
    assert isinstance(result.error, go.ModelRefusalError)
    assert result.status is go.RunStatus.FAILED and result.node == "classify"


def plan_graph() -> tuple[go.Graph[Ticket, Any], go.ToolRegistry, list[str]]:
    done: list[str] = []
    tools = go.ToolRegistry()

    @tools.tool
    async def search(query: str) -> str:
        done.append(f"search:{query}")
        return "found"

    @tools.tool(destructive=True)
    async def delete_everything(confirm: bool) -> str:
        done.append("deleted")
        return "gone"

    g = go.Graph("planner", state=Ticket, role="researcher")
    g.plan("make_plan", prompt="Plan the research", schema=go.Plan, result="plan")

    @g.tool(uses=["search"])
    async def act(s: Ticket, ctx: go.Context[None]) -> dict[str, Any]:
        assert s.plan is not None
        for step in s.plan.steps:
            await ctx.tools.call(step.tool, **step.args)
        return {"note": f"{len(s.plan.steps)} steps"}

    g.end("done", output=lambda s: s.note)
    g.edge(go.START, "make_plan").edge("make_plan", "act").edge("act", "done")
    return g, tools, done


async def test_a_plan_naming_a_forbidden_tool_or_bad_arguments_is_refused_before_it_runs() -> None:
    g, tools, done = plan_graph()
    model = ScriptedModel(
        [
            {"steps": [{"tool": "delete_everything", "args": {"confirm": True}}]},
            {"steps": [{"tool": "search", "args": {"q": "typo"}}]},
            {"steps": [{"tool": "search", "args": {"query": "graphs"}}]},
        ]
    )
    guard = go.Guardrails(roles={"researcher": {"search"}})
    rt = go.Runtime(model=model, tools=tools, guardrails=guard)
    result = await (await rt.start(g, Ticket())).wait()
    assert result.output == "1 steps" and done == ["search:graphs"]
    assert "'delete_everything' is not a tool role 'researcher' may use" in (
        model.calls[1].messages[-1].content
    )
    assert "query" in model.calls[2].messages[-1].content


class Claim(BaseModel):
    claim: str


class Draft(BaseModel):
    claims: list[str] = []
    checked: bool = False


async def test_replanning_after_a_backtrack_sees_what_failed() -> None:
    model = ScriptedModel([{"claim": "the moon is cheese"}, {"claim": "the moon orbits earth"}])
    g = go.Graph("research", state=Draft, max_steps=10)
    g.plan(
        "plan",
        prompt="Make one claim",
        schema=Claim,
        result=lambda answer, s: {"claims": [*s.claims, answer.claim]},
    )

    @g.plan(backtrack="plan")
    async def check(s: Draft) -> Any:
        if "cheese" in s.claims[-1]:
            return go.Backtrack("plan", reason="unsupported: no source says cheese")
        return {"checked": True}

    g.end("draft", output=lambda s: s.claims)
    g.edge(go.START, "plan").edge("plan", "check").edge("check", "draft")
    result = await (await go.Runtime(model=model).start(g, Draft())).wait()
    assert result.output == ["the moon is cheese", "the moon orbits earth"]
    assert "no source says cheese" in model.calls[1].messages[-1].content


async def test_model_cost_counts_toward_the_budget() -> None:
    model = ScriptedModel([{"category": "bug", "confidence": 1}] * 5, price_per_1k=(1000.0, 1000.0))
    g = go.Graph("spender", state=Ticket, max_steps=20)
    g.plan("classify", prompt="classify", schema=Route, result="route", max_visits=5)
    g.end("done")
    g.edge(go.START, "classify").edge("classify", "done", when=lambda s: s.note == "stop")
    g.edge("classify", "classify")
    rt = go.Runtime(model=model, guardrails=go.Guardrails(budget=go.Budget(max_cost=5.0)))
    result = await (await rt.start(g, Ticket())).wait()
    assert isinstance(result.error, go.BudgetExceededError)
    assert len(model.calls) < 5


async def test_no_model_configured_is_a_clear_error() -> None:
    result = await (await go.Runtime().start(router(), Ticket())).wait()
    assert result.status is go.RunStatus.FAILED
    assert "Runtime(model=" in (result.reason or "")


CHILD = textwrap.dedent(
    """
    import os, signal, sys, anyio
    from pydantic import BaseModel
    import graphorch as go
    from graphorch.testing import ScriptedModel

    class S(BaseModel):
        answer: str = ""

    class A(BaseModel):
        answer: str

    g = go.Graph("paid", state=S)

    @g.plan
    async def ask(s: S, ctx: go.Context[None]) -> dict:
        c = await ctx.model.complete("question?", A)
        if sys.argv[2] == "die":
            os.kill(os.getpid(), signal.SIGKILL)  # after paying, before the step commits
        return {"answer": c.value.answer}

    g.end("done", output=lambda s: s.answer)
    g.edge(go.START, "ask").edge("ask", "done")

    async def main() -> None:
        answers = [{"answer": "paid once"}] if sys.argv[2] == "die" else [RuntimeError("paid twice")]
        store = go.SQLiteStore(sys.argv[1])
        rt = go.Runtime(store, graphs=[g], model=ScriptedModel(answers))
        if sys.argv[2] == "die":
            await (await rt.start(g, S(), run_id="paid")).wait()
        else:
            print((await (await rt.resume("paid")).wait()).output)
        await store.close()

    anyio.run(main)
    """
)


@pytest.mark.slow
def test_a_completed_model_call_is_replayed_after_a_crash_not_paid_again(tmp_path: Path) -> None:
    db = tmp_path / "paid.db"
    died = subprocess.run([sys.executable, "-c", CHILD, str(db), "die"], capture_output=True)
    assert died.returncode == -9, died.stderr
    resumed = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), "resume"], capture_output=True, text=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "paid once"


async def test_bad_answers_are_audited_and_model_rate_limits_hold() -> None:
    model = ScriptedModel(["not json", {"category": "bug", "confidence": 1}] * 3)
    limit = go.RateLimit(calls=2, per=60, scope="global", max_wait=0)
    rt = go.Runtime(model=model, guardrails=go.Guardrails(model_rate_limit=limit))
    first = await rt.start(router(), Ticket())
    assert (await first.wait()).output == "bug desk"
    audit = [e for e in await rt.store.list_events(first.id) if isinstance(e, go.ModelCalled)]
    assert [a.outcome for a in audit] == ["failed", "succeeded"]
    assert audit[0].error is not None and "ModelOutputError" in audit[0].error
    second = await (await rt.start(router(), Ticket())).wait()
    assert isinstance(second.error, go.RateLimitedError)  # a third call in the window
    assert len(model.calls) == 2
