"""DevOps: read-only until a person approves, then ``deploy_service`` runs exactly once.

The agent inspects the service, plans a rollout and calls ``deploy_service``. The
guardrails put the ``devops`` role in read-only mode with ``on_destructive="approve"``:
the destructive call does not run; the run becomes ``waiting`` with a pending approval
naming the tool and its arguments. Only the listed approvers may decide. Once approved,
resuming the run (in this process or any other) makes the call, once: the call is
journaled, so resuming again replays its result instead of deploying twice.

Run it with ``graphorch demo devops`` (the demo approves as :data:`DEMO_APPROVER`), or
step by step::

    graphorch run graphorch.examples.devops:graph        # exit code 3: waiting
    graphorch approve RUN_ID --by oncall-lead             # deploys, exit code 0
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import anyio
from pydantic import BaseModel, Field

import graphorch as go
from graphorch.examples._demo import Progress, drive, quiet

__all__ = [
    "APPROVERS",
    "DEMO_APPROVER",
    "Rollout",
    "example_input",
    "graph",
    "guardrails",
    "run_demo",
    "tools",
]

DEMO_APPROVER = "demo-oncall"
"""The person the demo approves as."""

APPROVERS = frozenset({"oncall-lead", DEMO_APPROVER})
"""Who may approve a deployment."""


class Rollout(BaseModel):
    """A deployment request and what the agent found and did."""

    service: str
    version: str
    replicas: int = Field(default=3, ge=1, le=20)
    health: str | None = None
    current_version: str | None = None
    deployment: str | None = None
    log: Annotated[list[str], go.append] = []


def tools(deployments: list[str] | None = None) -> go.ToolRegistry:
    """Two read-only tools and the destructive ``deploy_service``.

    Args:
        deployments: if given, every real deployment is appended to it (tests count
            them to prove exactly-once).
    """
    registry = go.ToolRegistry()

    @registry.tool(idempotent=True)
    async def read_status(service: str) -> dict[str, str]:
        """The service's health and running version."""
        return {"health": "healthy", "version": "1.4.2", "service": service}

    @registry.tool(idempotent=True)
    async def read_metrics(service: str) -> dict[str, float]:
        """Error rate and p95 latency over the last hour."""
        return {"error_rate": 0.002, "p95_ms": 180.0}

    @registry.tool(destructive=True)
    async def deploy_service(service: str, version: str, replicas: int) -> str:
        """Roll ``version`` out to ``replicas`` replicas (changes production)."""
        if deployments is not None:
            deployments.append(f"{service}@{version}x{replicas}")
        ref = hashlib.sha256(f"{service}{version}{replicas}".encode()).hexdigest()[:8]
        return f"deployment {ref}: {service} {version} on {replicas} replicas"

    return registry


def guardrails() -> go.Guardrails:
    """The devops role may use its three tools, read-only until a person approves."""
    return go.Guardrails(
        roles={"devops": {"read_status", "read_metrics", "deploy_service"}},
        read_only={"devops"},
        on_destructive="approve",
        approvers=APPROVERS,
        budget=go.Budget(max_tool_calls=10),
    )


graph: go.Graph[Rollout, None] = go.Graph(
    "devops", state=Rollout, description="Deploys a service once a person approves."
)


@graph.tool(uses=["read_status", "read_metrics"])
async def inspect(state: Rollout, ctx: go.Context[None]) -> dict[str, Any]:
    status, metrics = await ctx.tools.gather(
        ("read_status", {"service": state.service}), ("read_metrics", {"service": state.service})
    )
    note = f"{state.service} is {status['health']} on {status['version']}, errors {metrics['error_rate']:.1%}"
    return {"health": status["health"], "current_version": status["version"], "log": [note]}


@graph.plan
async def plan_rollout(state: Rollout) -> dict[str, Any]:
    if state.health != "healthy":
        return {"log": [f"not deploying: {state.service} is {state.health}"]}
    return {
        "log": [f"plan: {state.current_version} -> {state.version} on {state.replicas} replicas"]
    }


graph.tool(
    "deploy",
    tool="deploy_service",
    args=lambda s: {"service": s.service, "version": s.version, "replicas": s.replicas},
    result="deployment",
)


@graph.tool(uses=["read_status"])
async def verify(state: Rollout, ctx: go.Context[None]) -> dict[str, Any]:
    status = await ctx.tools.call("read_status", service=state.service)
    return {"log": [f"verified: {state.service} {status['health']}"]}


def _deployment(state: Rollout) -> str | None:
    return state.deployment


graph.end("done", output=_deployment)
graph.end("skipped")
graph.edge(go.START, "inspect").edge("inspect", "plan_rollout")
graph.edge("plan_rollout", "deploy", when=lambda s: s.health == "healthy", label="healthy")
graph.edge("plan_rollout", "skipped")
graph.edge("deploy", "verify").edge("verify", "done")


def example_input() -> Rollout:
    """Roll out version 1.5.0 of the checkout service."""
    return Rollout(service="checkout", version="1.5.0", replicas=3)


def runtime(store: go.Store | None = None, deployments: list[str] | None = None) -> go.Runtime:
    """A runtime with this example's graph, tools and guardrails."""
    return go.Runtime(store, graphs=[graph], tools=tools(deployments), guardrails=guardrails())


async def run_demo(
    store_path: str | Path, *, progress: Progress = quiet
) -> list[go.RunResult[Any]]:
    """Start a rollout, show the pending approval, approve as :data:`DEMO_APPROVER`,
    resume, and return the finished run's result."""
    async with go.SQLiteStore(store_path) as store:
        rt = runtime(store)
        run = await rt.start(graph, example_input())
        progress(f"devops run {run.id}: deploy checkout 1.5.0 (read-only until approved)")
        waiting = await drive(run, progress)
        progress(f"  -> {waiting.status.value}: {waiting.reason}")
        for pending in await rt.pending_approvals(run.id):
            args = (pending.args or b"").decode()
            progress(f"  pending approval {pending.approval_id}: {pending.tool} {args}")
            progress(f"  allowed approvers: {', '.join(pending.approvers)}")
        if waiting.status is not go.RunStatus.WAITING:
            return [waiting]
        await rt.approve(run.id, by=DEMO_APPROVER, comment="approved by the demo")
        progress(f"  approved by {DEMO_APPROVER}; resuming")
        result = await drive(await rt.resume(run.id), progress)
        progress(f"  -> {result.status.value}: {result.output}")
    return [result]


if __name__ == "__main__":  # pragma: no cover
    for r in anyio.run(lambda: run_demo("graphorch.db", progress=print)):
        print(r.status.value, r.output)
