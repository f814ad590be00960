"""The smallest useful graph: triage a support ticket and route it.

Run it with ``python -m graphorch.examples.quickstart``.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from pydantic import BaseModel

import graphorch as go


class Ticket(BaseModel):
    text: str
    category: str | None = None
    reply: str | None = None
    log: Annotated[list[str], go.append] = []


graph: go.Graph[Ticket, None] = go.Graph("quickstart", state=Ticket)


@graph.plan
async def triage(state: Ticket) -> dict[str, Any]:
    category = "refund" if "refund" in state.text.lower() else "bug"
    return {"category": category, "log": [f"triaged as {category}"]}


@graph.plan(retry=go.Retry(attempts=3, backoff=0.01))
async def refund(state: Ticket) -> dict[str, Any]:
    return {"reply": "Your refund is on its way.", "log": ["refund issued"]}


@graph.plan
async def bug(state: Ticket) -> dict[str, Any]:
    return {"reply": "Thanks, we filed a bug.", "log": ["bug filed"]}


def reply(state: Ticket) -> str | None:
    return state.reply


graph.end("done", output=reply)
graph.edge(go.START, "triage")
graph.edge("triage", "refund", when=lambda s: s.category == "refund", label="refund")
graph.edge("triage", "bug")
graph.edge("refund", "done").edge("bug", "done")


async def main() -> None:
    runtime = go.Runtime()
    for text in ("Please refund my order", "The app crashes on login"):
        run = await runtime.start(graph, Ticket(text=text))
        print(f"run {run.id}: {text!r}")
        while run.active:
            step = await run.step()
            print(f"  step {step.step}: {step.node:<7} changed {sorted(step.changes)}")
        result = run.result()
        print(f"  -> {result.status.value}: {result.output}")


if __name__ == "__main__":
    anyio.run(main)
