"""Customer support: a triage plan node routes each ticket to the right agent.

Refund requests go to a *billing* agent, bug reports to a *technical triage* agent.
Each agent is a graph of its own, run as a child run (a delegate node), and acts under
its own role: the guardrails let billing call only the billing tools and triage only
the triage tools, so a confused agent cannot issue a refund from a bug report.

Run it with ``graphorch demo support``, or from Python::

    from graphorch.examples import support
    result = go.run(support.graph, support.example_input())   # no tools: see run_demo
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import anyio
from pydantic import BaseModel

import graphorch as go
from graphorch.examples._demo import Progress, drive, quiet

__all__ = [
    "Case",
    "Ticket",
    "billing",
    "example_input",
    "graph",
    "guardrails",
    "run_demo",
    "tech_triage",
    "tools",
    "triage_category",
]


class Ticket(BaseModel):
    """A support ticket as the router sees it."""

    text: str
    customer: str = "anonymous"
    category: str | None = None
    reply: str | None = None
    log: Annotated[list[str], go.append] = []


class Case(BaseModel):
    """What an agent works on: the ticket's text and customer, then its findings."""

    text: str
    customer: str = "anonymous"
    order_id: str | None = None
    amount: float = 0.0
    known_issue: str | None = None
    reply: str | None = None


# -- the tools, one registry for all agents; the guardrails decide who may call what ----


def tools() -> go.ToolRegistry:
    """The support tools: two for billing, two for technical triage."""
    registry = go.ToolRegistry()

    @registry.tool(idempotent=True)
    async def lookup_order(customer: str) -> dict[str, Any]:
        """The customer's latest order."""
        digest = hashlib.sha256(customer.encode()).hexdigest()
        return {"order_id": f"ORD-{digest[:6].upper()}", "amount": 20 + int(digest[6:8], 16) % 80}

    @registry.tool(destructive=True)
    async def issue_refund(order_id: str, amount: float) -> str:
        """Refund an order (moves money: destructive)."""
        return f"Refunded {amount:.2f} EUR for order {order_id}."

    @registry.tool(idempotent=True)
    async def search_known_issues(text: str) -> str | None:
        """A known issue matching the report, if any."""
        known = {"login": "KI-101 login loop on Safari", "crash": "KI-207 crash on startup"}
        return next((issue for word, issue in known.items() if word in text.lower()), None)

    @registry.tool
    async def create_ticket(title: str, known_issue: str | None = None) -> str:
        """Open an engineering ticket."""
        ref = hashlib.sha256(title.encode()).hexdigest()[:5].upper()
        linked = f", linked to {known_issue}" if known_issue else ""
        return f"Filed bug BUG-{ref}{linked}."

    return registry


def guardrails() -> go.Guardrails:
    """Each agent only its own tools; the router calls none itself."""
    return go.Guardrails(
        roles={
            "support": set[str](),
            "billing": {"lookup_order", "issue_refund"},
            "tech_triage": {"search_known_issues", "create_ticket"},
        },
        budget=go.Budget(max_tool_calls=20),
    )


def _case_reply(state: Case) -> str | None:
    return state.reply


def _ticket_reply(state: Ticket) -> str | None:
    return state.reply


# -- the agents --------------------------------------------------------------------------

billing: go.Graph[Case, None] = go.Graph(
    "billing", state=Case, description="Refunds the customer's latest order."
)


@billing.tool(uses=["lookup_order"])
async def find_order(state: Case, ctx: go.Context[None]) -> dict[str, Any]:
    order = await ctx.tools.call("lookup_order", customer=state.customer)
    return {"order_id": order["order_id"], "amount": float(order["amount"])}


billing.tool(
    "refund",
    tool="issue_refund",
    args=lambda s: {"order_id": s.order_id, "amount": s.amount},
    result="reply",
)
billing.end("done", output=_case_reply)
billing.edge(go.START, "find_order").edge("find_order", "refund").edge("refund", "done")


tech_triage: go.Graph[Case, None] = go.Graph(
    "tech_triage", state=Case, description="Files a bug, linked to a known issue if any."
)
tech_triage.tool(
    "search_issues",
    tool="search_known_issues",
    args=lambda s: {"text": s.text},
    result="known_issue",
)
tech_triage.tool(
    "file_bug",
    tool="create_ticket",
    args=lambda s: {"title": s.text[:60], "known_issue": s.known_issue},
    result="reply",
)
tech_triage.end("done", output=_case_reply)
tech_triage.edge(go.START, "search_issues").edge("search_issues", "file_bug")
tech_triage.edge("file_bug", "done")


# -- the router ----------------------------------------------------------------------------

REFUND_WORDS = ("refund", "money back", "charged twice", "reimburse")


def triage_category(text: str) -> str:
    """``"refund"`` for a refund request, else ``"bug"``."""
    lowered = text.lower()
    return "refund" if any(w in lowered for w in REFUND_WORDS) else "bug"


graph: go.Graph[Ticket, None] = go.Graph(
    "support", state=Ticket, description="Routes tickets to the billing or triage agent."
)


@graph.plan
async def triage(state: Ticket) -> dict[str, Any]:
    category = triage_category(state.text)
    return {"category": category, "log": [f"triaged as {category}"]}


def _case(state: Ticket) -> dict[str, Any]:
    return {"text": state.text, "customer": state.customer}


def _reply(agent: str) -> Any:
    def join(reply: Any, state: Ticket) -> dict[str, Any]:
        return {"reply": reply, "log": [f"{agent}: {reply}"]}

    return join


graph.delegate("billing_agent", graph=billing, input=_case, output=_reply("billing"))
graph.delegate("triage_agent", graph=tech_triage, input=_case, output=_reply("tech_triage"))
graph.end("done", output=_ticket_reply)
graph.edge(go.START, "triage")
graph.edge("triage", "billing_agent", when=lambda s: s.category == "refund", label="refund")
graph.edge("triage", "triage_agent", label="bug")
graph.edge("billing_agent", "done").edge("triage_agent", "done")


def example_input() -> Ticket:
    """A refund request (the demo also runs a bug report)."""
    return Ticket(text="I was charged twice, please refund my order", customer="ada")


EXAMPLE_TICKETS: Sequence[Ticket] = (
    example_input(),
    Ticket(text="The app crashes on startup after the update", customer="grace"),
)


def runtime(store: go.Store | None = None) -> go.Runtime:
    """A runtime with this example's graphs, tools and guardrails."""
    return go.Runtime(
        store, graphs=[graph, billing, tech_triage], tools=tools(), guardrails=guardrails()
    )


async def run_demo(
    store_path: str | Path, *, progress: Progress = quiet
) -> list[go.RunResult[Any]]:
    """Run both example tickets on the SQLite file ``store_path``; one result per ticket."""
    results: list[go.RunResult[Any]] = []
    async with go.SQLiteStore(store_path) as store:
        rt = runtime(store)
        for ticket in EXAMPLE_TICKETS:
            run = await rt.start(graph, ticket)
            progress(f"support run {run.id}: {ticket.text!r}")
            results.append(await drive(run, progress))
            for child in await store.list_runs(parent_run=run.id):
                progress(f"  child run {child.run_id} ({child.graph}): {child.status.value}")
            progress(f"  -> {results[-1].status.value}: {results[-1].output}")
    return results


if __name__ == "__main__":  # pragma: no cover
    for r in anyio.run(lambda: run_demo("graphorch.db", progress=print)):
        print(r.status.value, r.output)
