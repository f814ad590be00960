"""Research: plan, search, retrieve, fact-check (backtracking when unsupported), draft.

1. ``plan`` asks the model (``ctx.model``, journaled) for search queries and the
   claims the answer will make: offline a scripted model answers with
   :func:`planner`; set ``GRAPHORCH_OPENAI_BASE_URL`` to use a real endpoint.
2. ``search`` ranks the bundled documents with BM25 for every query.
3. ``retrieve`` fetches the best documents and splits them into passages.
4. ``fact_check`` looks for a passage supporting each claim (BM25 over the passages,
   then term coverage). An unsupported claim sends the run back to ``plan``
   (``go.Backtrack``) with the reason; the planner drops that claim and searches for
   evidence of the others.
5. ``draft`` writes the answer, each claim citing its source document.

Run it with ``graphorch demo research``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import anyio
from pydantic import BaseModel

import graphorch as go
from graphorch.examples._demo import Progress, drive, quiet
from graphorch.examples.bm25 import BM25, tokenize
from graphorch.examples.documents import DOCUMENTS, by_id
from graphorch.testing import ScriptedModel

__all__ = [
    "HYPOTHESES",
    "Evidence",
    "Research",
    "ResearchPlan",
    "example_input",
    "graph",
    "guardrails",
    "model",
    "planner",
    "run_demo",
    "split_passages",
    "support_for",
    "tools",
]

SUPPORT_THRESHOLD = 0.75
"""The share of a claim's terms a passage must contain to support it."""


class ResearchPlan(BaseModel):
    """What the planner decides: the queries to search and the claims to check."""

    queries: list[str]
    claims: list[str]


class Evidence(BaseModel):
    """A claim with the passage that supports it."""

    claim: str
    doc_id: str
    passage: str
    coverage: float


class Research(BaseModel):
    """The research run's state."""

    question: str
    attempt: int = 0
    queries: list[str] = []
    claims: list[str] = []
    rejected: Annotated[list[str], go.append] = []
    hits: list[dict[str, Any]] = []
    passages: list[dict[str, str]] = []
    evidence: list[Evidence] = []
    draft: str | None = None
    log: Annotated[list[str], go.append] = []


# -- planning: the seam for a model --------------------------------------------------------

HYPOTHESES: tuple[str, ...] = (
    "After a crash the run resumes from its last committed checkpoint.",
    "The network guarantees exactly-once delivery of every tool call.",
    "A journaled call is replayed from the journal instead of being executed again.",
    "Each tool call gets an idempotency key.",
    "Destructive actions wait for a person to approve them.",
)
"""Candidate claims the offline planner draws on (one is plausible but unsupported)."""


def planner(
    question: str, *, rejected: Sequence[str] = (), feedback: str | None = None, attempt: int = 1
) -> ResearchPlan:
    """Decide the queries and claims for ``question``.

    Offline and deterministic: ranks :data:`HYPOTHESES` against the question with BM25
    and proposes the best three not yet rejected. After a backtrack (``feedback`` says
    which claim failed) it also searches for each remaining claim directly.

    A model-backed planner replaces this function: same inputs, a :class:`ResearchPlan`
    out (e.g. ``ctx.model`` with ``ResearchPlan`` as the output schema).
    """
    candidates = [h for h in HYPOTHESES if h not in set(rejected)]
    ranked = BM25(candidates).rank(question)
    claims = [candidates[i] for i, _ in ranked[:3]]
    queries = [question]
    if feedback is not None or attempt > 1:
        queries += claims
    return ResearchPlan(queries=queries, claims=claims)


def model() -> go.ChatModel:
    """The planner's model: a real OpenAI-compatible endpoint when
    ``GRAPHORCH_OPENAI_BASE_URL`` (and ``OPENAI_API_KEY``, ``GRAPHORCH_MODEL``) are set,
    else a scripted model answering with :func:`planner`, offline and deterministic.
    """
    base_url = os.environ.get("GRAPHORCH_OPENAI_BASE_URL")
    if base_url:
        from graphorch.models import OpenAIModel

        return OpenAIModel(
            os.environ.get("GRAPHORCH_MODEL", "gpt-4o-mini"),
            base_url=base_url,
            api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
        )

    def answer(prompt: str) -> ResearchPlan:
        request = json.loads(prompt[len(PLAN_PROMPT) :])
        return planner(
            request["question"],
            rejected=request["rejected"],
            feedback=request["feedback"],
            attempt=request["attempt"],
        )

    return ScriptedModel(answer, name="offline-planner")


# -- the tools -------------------------------------------------------------------------------


def tools() -> go.ToolRegistry:
    """``search`` (BM25 over the bundled documents) and ``fetch_document``."""
    registry = go.ToolRegistry()
    index = BM25([f"{d.title}. {d.text}" for d in DOCUMENTS])

    @registry.tool(idempotent=True)
    async def search(query: str, k: int = 3) -> list[dict[str, Any]]:
        """The ``k`` documents ranking best for ``query`` (BM25), with their scores."""
        return [
            {"doc_id": DOCUMENTS[i].doc_id, "title": DOCUMENTS[i].title, "score": round(s, 4)}
            for i, s in index.rank(query, k)
        ]

    @registry.tool(idempotent=True)
    async def fetch_document(doc_id: str) -> dict[str, str]:
        """A document's title and text."""
        doc = by_id(doc_id)
        return {"doc_id": doc.doc_id, "title": doc.title, "text": doc.text}

    return registry


def guardrails() -> go.Guardrails:
    """The research role may search and fetch, within a budget of calls."""
    return go.Guardrails(
        roles={"research": {"search", "fetch_document"}},
        budget=go.Budget(max_tool_calls=60),
    )


# -- helpers the nodes use -----------------------------------------------------------------


def split_passages(doc_id: str, text: str) -> list[dict[str, str]]:
    """A document's sentences, each a passage naming its document."""
    parts = [p.strip() for p in text.replace("\n", " ").split(". ")]
    return [
        {"doc_id": doc_id, "text": p if p.endswith(".") else p + "."} for p in parts if p.strip()
    ]


def support_for(claim: str, passages: Sequence[dict[str, str]]) -> Evidence | None:
    """The passage supporting ``claim``, or None.

    BM25 ranks the passages against the claim; the best five are checked for coverage
    (the share of the claim's terms the passage contains), and the best one counts if it
    reaches :data:`SUPPORT_THRESHOLD`.
    """
    if not passages:
        return None
    terms = set(tokenize(claim))
    if not terms:
        return None
    index = BM25([p["text"] for p in passages])
    best: Evidence | None = None
    for i, _ in index.rank(claim, 5):
        coverage = len(terms & set(tokenize(passages[i]["text"]))) / len(terms)
        if best is None or coverage > best.coverage:
            best = Evidence(
                claim=claim,
                doc_id=passages[i]["doc_id"],
                passage=passages[i]["text"],
                coverage=round(coverage, 3),
            )
    return best if best is not None and best.coverage >= SUPPORT_THRESHOLD else None


# -- the graph ---------------------------------------------------------------------------------

graph: go.Graph[Research, None] = go.Graph(
    "research", state=Research, description="Answers a question from the bundled documents."
)


PLAN_PROMPT = (
    "You plan research over a small document collection. Given the request below (JSON), "
    "answer with the search queries to run and the claims the answer will make. Never "
    "repeat a claim listed in `rejected`; if `feedback` says a claim was unsupported, "
    "search for evidence of the remaining claims too.\n"
)


@graph.plan(max_visits=4)
async def plan(state: Research, ctx: go.Context[None]) -> dict[str, Any]:
    feedback = ctx.backtracked.reason if ctx.backtracked is not None else None
    request = {
        "question": state.question,
        "rejected": list(state.rejected),
        "feedback": feedback,
        "attempt": state.attempt + 1,
    }
    # the model call is journaled: a resumed run replays the answer instead of paying again
    answer = await ctx.model.complete(PLAN_PROMPT + json.dumps(request), ResearchPlan)
    decided: ResearchPlan = answer.value
    note = f"plan {state.attempt + 1}: {len(decided.claims)} claims, {len(decided.queries)} queries"
    return {
        "attempt": state.attempt + 1,
        "queries": decided.queries,
        "claims": decided.claims,
        "log": [note],
    }


@graph.tool(uses=["search"])
async def search(state: Research, ctx: go.Context[None]) -> dict[str, Any]:
    results = await ctx.tools.gather(*(("search", {"query": q}) for q in state.queries))
    best: dict[str, dict[str, Any]] = {}
    for hits in results:
        for hit in hits:
            seen = best.get(hit["doc_id"])
            if seen is None or hit["score"] > seen["score"]:
                best[hit["doc_id"]] = hit
    ranked = sorted(best.values(), key=lambda h: (-h["score"], h["doc_id"]))[:5]
    return {"hits": ranked, "log": [f"search: {', '.join(h['doc_id'] for h in ranked)}"]}


@graph.tool(uses=["fetch_document"])
async def retrieve(state: Research, ctx: go.Context[None]) -> dict[str, Any]:
    docs = await ctx.tools.gather(
        *(("fetch_document", {"doc_id": h["doc_id"]}) for h in state.hits)
    )
    passages = [p for d in docs for p in split_passages(d["doc_id"], d["text"])]
    return {"passages": passages, "log": [f"retrieve: {len(passages)} passages"]}


@graph.plan(backtrack="plan", max_visits=4)
async def fact_check(state: Research) -> dict[str, Any] | go.Backtrack:
    evidence: list[Evidence] = []
    for claim in state.claims:
        found = support_for(claim, state.passages)
        if found is None:
            return go.Backtrack(
                "plan",
                reason=f"unsupported claim: {claim}",
                update={"rejected": [claim], "log": [f"fact-check: unsupported: {claim}"]},
            )
        evidence.append(found)
    return {"evidence": evidence, "log": [f"fact-check: {len(evidence)} claims supported"]}


@graph.plan
async def draft(state: Research) -> dict[str, Any]:
    titles = {h["doc_id"]: h["title"] for h in state.hits}
    lines = [f"Q: {state.question}", ""]
    lines += [f"- {e.claim} [{e.doc_id}]" for e in state.evidence]
    cited = list(dict.fromkeys(e.doc_id for e in state.evidence))
    lines += ["", "Sources:"] + [f"[{d}] {titles.get(d, by_id(d).title)}" for d in cited]
    return {"draft": "\n".join(lines), "log": [f"draft: {len(cited)} sources cited"]}


def _draft(state: Research) -> str | None:
    return state.draft


graph.end("done", output=_draft)
graph.edge(go.START, "plan").edge("plan", "search").edge("search", "retrieve")
graph.edge("retrieve", "fact_check").edge("fact_check", "draft").edge("draft", "done")


def example_input() -> Research:
    """The demo's question."""
    return Research(
        question="How does an agent run recover after a crash without repeating tool calls?"
    )


def runtime(store: go.Store | None = None) -> go.Runtime:
    """A runtime with this example's graph, tools and guardrails."""
    return go.Runtime(store, graphs=[graph], tools=tools(), guardrails=guardrails(), model=model())


async def run_demo(
    store_path: str | Path, *, progress: Progress = quiet
) -> list[go.RunResult[Any]]:
    """Research the example question on the SQLite file ``store_path``."""
    async with go.SQLiteStore(store_path) as store:
        run = await runtime(store).start(graph, example_input())
        progress(f"research run {run.id}: {run.state.question!r}")
        result = await drive(run, progress)
        for line in result.state.log:
            progress(f"  {line}")
    return [result]


if __name__ == "__main__":  # pragma: no cover
    for r in anyio.run(lambda: run_demo("graphorch.db", progress=print)):
        print(r.output)
