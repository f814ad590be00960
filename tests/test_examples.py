"""The seed examples behave as documented (on the in-memory store)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import graphorch as go
from graphorch.examples import devops, research, support
from graphorch.examples.bm25 import BM25, stem, tokenize

# -- support -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "category", "agent", "reply_start"),
    [
        ("Please refund my order", "refund", "billing", "Refunded"),
        ("I was charged twice", "refund", "billing", "Refunded"),
        ("The login page loops forever", "bug", "tech_triage", "Filed bug"),
    ],
)
async def test_support_routes_each_category_to_its_agent(
    text: str, category: str, agent: str, reply_start: str
) -> None:
    rt = support.runtime()
    result = await (await rt.start(support.graph, support.Ticket(text=text))).wait()
    assert result.succeeded, result.reason
    assert result.state.category == category
    assert str(result.output).startswith(reply_start)
    [child] = await rt.store.list_runs(parent_run=result.run_id)
    assert child.graph == agent and child.status is go.RunStatus.SUCCEEDED


async def test_support_agents_only_call_their_own_tools() -> None:
    rt = support.runtime()
    result = await (await rt.start(support.graph, support.example_input())).wait()
    [child] = await rt.store.list_runs(parent_run=result.run_id)
    tools_called = {c.tool for c in await rt.calls(child.run_id)}
    assert tools_called == {"lookup_order", "issue_refund"}
    guard = support.guardrails()
    assert guard.allowed_tools("billing", support.tools().names()) == [
        "issue_refund",
        "lookup_order",
    ]
    assert guard.allowed_tools("support", support.tools().names()) == []


async def test_a_triage_agent_trying_a_billing_tool_is_denied() -> None:
    rogue = go.Graph("tech_triage", state=support.Case)
    rogue.tool("refund", tool="issue_refund", args={"order_id": "X", "amount": 1.0}, result="reply")
    rogue.end("done")
    rogue.edge(go.START, "refund").edge("refund", "done")
    rt = go.Runtime(tools=support.tools(), guardrails=support.guardrails())
    result = await (await rt.start(rogue, support.Case(text="crash"))).wait()
    assert isinstance(result.error, go.PolicyDeniedError)
    assert result.error.rule == "role"


# -- research --------------------------------------------------------------------------------


def test_tokenize_and_stem() -> None:
    assert tokenize("The Checkpoints were COMMITTED, after 2 crashes!") == [
        "checkpoint",
        "commit",
        "2",
        "crash",
    ]
    assert stem("queries") == "query" and stem("run") == "run"


def test_bm25_matches_the_formula() -> None:
    texts = ["cat sat mat", "dog dog barked", "cat dog"]
    index = BM25(texts, k1=1.5, b=0.75)
    avgdl = 8 / 3  # 3 + 3 + 2 terms
    idf_cat = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    expected = idf_cat * 1 * 2.5 / (1 + 1.5 * (1 - 0.75 + 0.75 * 3 / avgdl))
    assert index.score("cat", 0) == pytest.approx(expected)
    ranked = index.rank("dog")
    assert [i for i, _ in ranked] == [1, 2]  # two "dog"s beat one
    assert index.rank("unicorn") == []


async def test_research_backtracks_then_drafts_with_cited_ranked_documents() -> None:
    rt = research.runtime()
    result = await (await rt.start(research.graph, research.example_input())).wait()
    assert result.succeeded, result.reason
    events = await rt.store.list_events(result.run_id)
    backs = [e for e in events if isinstance(e, go.Backtracked)]
    assert len(backs) >= 1 and backs[0].to == "plan"
    assert "unsupported claim" in backs[0].reason
    state = result.state
    assert state.rejected == ["The network guarantees exactly-once delivery of every tool call."]
    assert state.attempt == 2
    draft = str(result.output)
    cited = {e.doc_id for e in state.evidence}
    assert cited and all(f"[{d}]" in draft for d in cited)
    assert all(e.coverage >= research.SUPPORT_THRESHOLD for e in state.evidence)
    # the cited documents came from the BM25-ranked hits
    assert cited <= {h["doc_id"] for h in state.hits}
    scores = [h["score"] for h in state.hits]
    assert scores == sorted(scores, reverse=True)
    # every tool call went through the policed, journaled path
    journaled = {c.tool for c in await rt.calls(result.run_id)}
    # the plan's model calls are journaled next to the tool calls
    assert journaled == {"search", "fetch_document", "model:offline-planner"}


def test_the_planner_drops_rejected_claims_and_searches_for_the_rest() -> None:
    q = research.example_input().question
    first = research.planner(q)
    assert len(first.claims) == 3 and first.queries == [q]
    again = research.planner(q, rejected=[first.claims[-1]], feedback="unsupported", attempt=2)
    assert first.claims[-1] not in again.claims
    assert again.queries[1:] == again.claims


def test_support_for_needs_a_passage_covering_the_claim() -> None:
    passages = research.split_passages("d", "Cats sleep a lot. Dogs bark at night.")
    assert [p["text"] for p in passages] == ["Cats sleep a lot.", "Dogs bark at night."]
    found = research.support_for("dogs bark", passages)
    assert found is not None and found.passage == "Dogs bark at night."
    assert research.support_for("cats fly to the moon", passages) is None


# -- devops --------------------------------------------------------------------------------


async def test_devops_waits_read_only_then_deploys_exactly_once_after_approval() -> None:
    deployments: list[str] = []
    rt = devops.runtime(deployments=deployments)
    run = await rt.start(devops.graph, devops.example_input())
    waiting = await run.wait()
    assert waiting.status is go.RunStatus.WAITING and deployments == []
    [pending] = await rt.pending_approvals(run.id)
    assert pending.tool == "deploy_service"
    with pytest.raises(go.NotAuthorizedError):
        await rt.approve(run.id, by="intern")
    await rt.approve(run.id, by=devops.DEMO_APPROVER)
    result = await (await rt.resume(run.id)).wait()
    assert result.succeeded and deployments == ["checkout@1.5.0x3"]
    assert str(result.output).startswith("deployment ")
    again = await (await rt.resume(run.id)).wait()
    assert again.succeeded and deployments == ["checkout@1.5.0x3"]


async def test_devops_rejection_deploys_nothing() -> None:
    deployments: list[str] = []
    rt = devops.runtime(deployments=deployments)
    run = await rt.start(devops.graph, devops.example_input())
    await run.wait()
    await rt.reject(run.id, by="oncall-lead", comment="change freeze")
    result = await (await rt.resume(run.id)).wait()
    assert result.status is go.RunStatus.FAILED and deployments == []


# -- the demos on a SQLite file ------------------------------------------------------------------


@pytest.mark.parametrize("module", [support, research, devops], ids=lambda m: m.__name__)
async def test_run_demo_completes_on_sqlite(module: Any, tmp_path: Path) -> None:
    lines: list[str] = []
    results = await module.run_demo(tmp_path / "demo.db", progress=lines.append)
    assert results and all(r.succeeded for r in results), [r.reason for r in results]
    assert any(line.startswith("step") for line in lines)
