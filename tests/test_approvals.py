"""Human approval: waiting runs, the right people deciding, governance by construction."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, Field

import graphorch as go


class Change(BaseModel):
    service: str = "api"
    replicas: int = Field(default=2, ge=1, le=10)
    decision: str | None = None
    deployed: int = 0
    log: list[str] = []


def release_graph(**approve: Any) -> go.Graph[Change, Any]:
    g = go.Graph("release", state=Change)
    g.plan("prepare", lambda s: {"log": [*s.log, "prepared"]})
    g.approve(
        "confirm",
        approvers=approve.pop("approvers", {"lead"}),
        prompt=lambda s: f"deploy {s.service} with {s.replicas} replicas?",
        context=lambda s: {"service": s.service},
        decision="decision",
        **approve,
    )
    g.plan("deploy", lambda s: {"deployed": s.deployed + 1, "log": [*s.log, "deployed"]})
    g.plan("rollback", lambda s: {"log": [*s.log, "skipped"]})
    g.end("done", output=lambda s: s.log)
    g.edge(go.START, "prepare").edge("prepare", "confirm")
    g.edge("confirm", "deploy", when=go.approved)
    g.edge("confirm", "rollback", when=go.rejected)
    g.edge("deploy", "done").edge("rollback", "done")
    return g


async def test_the_run_waits_and_a_decision_lets_it_go_on() -> None:
    rt = go.Runtime()
    g = release_graph()
    run = await rt.start(g, Change())
    waiting = await run.wait()
    assert waiting.status is go.RunStatus.WAITING
    assert "lead" in (waiting.reason or "") and waiting.node == "confirm"
    [pending] = await rt.pending_approvals()
    assert pending.prompt == "deploy api with 2 replicas?"
    assert pending.approvers == ("lead",) and pending.status is go.ApprovalStatus.PENDING
    decided = await rt.approve(run.id, by="lead", comment="ship it")
    assert decided.status is go.ApprovalStatus.APPROVED and decided.decided_by == "lead"
    result = await (await rt.resume(run.id)).wait()
    assert result.output == ["prepared", "deployed"]
    assert result.state.decision == "approved"
    assert await rt.pending_approvals() == []
    kinds = [e.kind for e in await rt.store.list_events(run.id)]
    assert "approval_requested" in kinds and "approval_decided" in kinds


async def test_reject_takes_the_rejected_edge() -> None:
    rt = go.Runtime()
    run = await rt.start(release_graph(), Change())
    await run.wait()
    await rt.reject(run.id, by="lead", comment="not today")
    result = await (await rt.resume(run.id)).wait()
    assert result.output == ["prepared", "skipped"] and result.state.deployed == 0
    assert result.state.decision == "rejected"


async def test_a_rejection_without_a_rejected_edge_fails_the_run_saying_so() -> None:
    g = go.Graph("strict", state=Change)
    g.approve("confirm", approvers={"lead"})
    g.end("done")
    g.edge(go.START, "confirm").edge("confirm", "done")
    rt = go.Runtime()
    run = await rt.start(g, Change())
    await run.wait()
    await rt.reject(run.id, by="lead")
    result = await (await rt.resume(run.id)).wait()
    assert isinstance(result.error, go.ApprovalRejectedError)
    assert "rejected" in (result.reason or "") and result.node == "confirm"


async def test_edit_with_the_approval_and_an_invalid_edit_is_refused() -> None:
    rt = go.Runtime()
    run = await rt.start(release_graph(), Change())
    await run.wait()
    with pytest.raises(go.InputValidationError, match="replicas"):
        await rt.approve(run.id, by="lead", edits={"replicas": 50})
    with pytest.raises(go.InputValidationError, match="unknown field"):
        await rt.approve(run.id, by="lead", edits={"colour": "red"})
    [still] = await rt.pending_approvals()
    assert still.status is go.ApprovalStatus.PENDING
    await rt.approve(run.id, by="lead", edits={"replicas": 5})
    result = await (await rt.resume(run.id)).wait()
    assert result.state.replicas == 5 and result.state.deployed == 1


async def test_only_allowed_approvers_decide_and_refusals_are_audited() -> None:
    rt = go.Runtime(roles_of=lambda person: {"sre"} if person == "sam" else set())
    run = await rt.start(release_graph(approvers={"lead"}, roles={"sre"}), Change())
    await run.wait()
    with pytest.raises(go.NotAuthorizedError, match="'mallory' may not decide"):
        await rt.approve(run.id, by="mallory")
    refused = [e for e in await rt.store.list_events(run.id) if isinstance(e, go.ApprovalRefused)]
    assert [r.by for r in refused] == ["mallory"]
    decided = await rt.approve(run.id, by="sam")  # allowed through the sre role
    assert decided.decided_by == "sam"


async def test_a_custom_identity_hook_decides_who_is_who() -> None:
    rt = go.Runtime(authorize=lambda person, approval: person.endswith("@corp.example"))
    run = await rt.start(release_graph(), Change())
    await run.wait()
    with pytest.raises(go.NotAuthorizedError):
        await rt.approve(run.id, by="lead")
    await rt.approve(run.id, by="ann@corp.example")


async def test_racing_deciders_exactly_one_wins() -> None:
    rt = go.Runtime()
    run = await rt.start(release_graph(approvers={"a", "b", "c", "d"}), Change())
    await run.wait()
    wins: list[str] = []
    losses: list[go.AlreadyDecidedError] = []

    async def decide(person: str) -> None:
        try:
            await rt.approve(run.id, by=person)
            wins.append(person)
        except go.AlreadyDecidedError as err:
            losses.append(err)

    async with anyio.create_task_group() as tg:
        for person in "abcd":
            tg.start_soon(decide, person)
    assert len(wins) == 1 and len(losses) == 3
    assert all(f"already approved by {wins[0]}" in str(e) for e in losses)


async def test_an_expired_request_takes_its_edge_and_says_so() -> None:
    rt = go.Runtime()
    run = await rt.start(release_graph(expires_after=0.01), Change())
    await run.wait()
    [pending] = await rt.store.list_approvals(status=go.ApprovalStatus.PENDING)
    assert pending.expires_at is not None
    await anyio.sleep(max(0.0, (pending.expires_at - datetime.now(UTC)).total_seconds()))
    with pytest.raises(go.AlreadyDecidedError, match="expired"):
        await rt.approve(run.id, by="lead")
    result = await (await rt.resume(run.id)).wait()
    assert result.output == ["prepared", "skipped"]  # expiry counts as rejected here
    assert result.state.decision == "expired"
    decided = [e for e in await rt.store.list_events(run.id) if isinstance(e, go.ApprovalDecided)]
    assert [(d.outcome, d.by) for d in decided] == [("expired", "expiry")]


async def test_pending_approvals_across_runs_oldest_first() -> None:
    rt = go.Runtime()
    ids = []
    for _ in range(3):
        run = await rt.start(release_graph(), Change())
        await run.wait()
        ids.append(run.id)
    pending = await rt.pending_approvals()
    assert [p.run_id for p in pending] == ids
    assert [p.requested_at for p in pending] == sorted(p.requested_at for p in pending)


async def test_approve_after_the_waiting_process_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "approvals.db"
    g = release_graph()
    store = go.SQLiteStore(db)
    run = await go.Runtime(store).start(g, Change())
    assert (await run.wait()).status is go.RunStatus.WAITING
    await store.close()
    # a new process: a new store on the same file, nothing held in memory
    store = go.SQLiteStore(db)
    rt = go.Runtime(store, graphs=[g])
    await rt.approve(run.id, by="lead")
    result = await (await rt.resume(run.id)).wait()
    assert result.output == ["prepared", "deployed"]
    await store.close()


def devops() -> tuple[go.Graph[Change, Any], go.ToolRegistry, list[str]]:
    deployed: list[str] = []
    tools = go.ToolRegistry()

    @tools.tool(idempotent=True)
    async def read_status(service: str) -> str:
        return f"{service}: healthy"

    @tools.tool(destructive=True)
    async def deploy_service(service: str, replicas: int) -> str:
        deployed.append(f"{service}x{replicas}")
        return "ok"

    g = go.Graph("devops", state=Change, role="devops")
    g.tool("inspect", tool="read_status", args=lambda s: {"service": s.service})
    g.tool(
        "ship",
        tool="deploy_service",
        args=lambda s: {"service": s.service, "replicas": s.replicas},
    )
    g.end("done", output=lambda s: s.service)
    g.edge(go.START, "inspect").edge("inspect", "ship").edge("ship", "done")
    return g, tools, deployed


async def test_devops_story_read_only_until_a_person_approves_then_deploy_once() -> None:
    g, tools, deployed = devops()
    guard = go.Guardrails(read_only={"devops"}, on_destructive="approve", approvers={"oncall"})
    rt = go.Runtime(tools=tools, guardrails=guard)
    run = await rt.start(g, Change())
    waiting = await run.wait()
    assert waiting.status is go.RunStatus.WAITING and deployed == []
    [pending] = await rt.pending_approvals()
    assert pending.tool == "deploy_service" and b'"replicas":2' in (pending.args or b"")
    with pytest.raises(go.NotAuthorizedError):
        await rt.approve(run.id, by="intern")
    await rt.approve(run.id, by="oncall")
    result = await (await rt.resume(run.id)).wait()
    assert result.succeeded and deployed == ["apix2"]
    # resuming again changes nothing: the call ran exactly once
    again = await (await rt.resume(run.id)).wait()
    assert again.succeeded and deployed == ["apix2"]


async def test_rejecting_a_paused_call_routes_to_the_denial_path() -> None:
    g, tools, deployed = devops()
    guard = go.Guardrails(read_only=True, on_destructive="approve", approvers={"oncall"})
    rt = go.Runtime(tools=tools, guardrails=guard)
    run = await rt.start(g, Change())
    await run.wait()
    await rt.reject(run.id, by="oncall", comment="freeze week")
    result = await (await rt.resume(run.id)).wait()
    assert isinstance(result.error, go.PolicyDeniedError) and result.error.rule == "approval"
    assert "freeze week" in str(result.error) and deployed == []


def governed(skip_on_one_branch: bool) -> go.Graph[Change, Any]:
    g = go.Graph("governed", state=Change)
    g.plan("plan", lambda s: None)
    g.approve("confirm", approvers={"lead"})
    g.tool("ship", tool="deploy_service", args={"service": "api", "replicas": 1}, result=None)
    g.end("done")
    g.edge(go.START, "plan")
    if skip_on_one_branch:
        g.edge("plan", "ship", when=lambda s: s.replicas > 5, label="big")
    g.edge("plan", "confirm")
    g.edge("confirm", "ship", when=go.approved).edge("confirm", "done", when=go.rejected)
    g.edge("ship", "done")
    g.require_approval("deploy_service")
    return g


def test_every_path_to_a_governed_tool_passes_an_approval() -> None:
    governed(skip_on_one_branch=False).freeze()
    with pytest.raises(go.GraphDefinitionError) as info:
        governed(skip_on_one_branch=True).freeze()
    [problem] = info.value.problems
    assert "'deploy_service' needs approval" in problem
    assert "START -> plan -> ship (calls 'deploy_service')" in problem


def test_governance_sees_through_delegation() -> None:
    child = go.Graph("ops", state=Change)
    child.tool("ship", tool="deploy_service", args={"service": "x", "replicas": 1}, result=None)
    child.end("done")
    child.edge(go.START, "ship").edge("ship", "done")
    parent = go.Graph("orchestrator", state=Change)
    parent.delegate("hand_off", graph=child)
    parent.end("done")
    parent.edge(go.START, "hand_off").edge("hand_off", "done")
    parent.require_approval("deploy_service")
    with pytest.raises(go.GraphDefinitionError) as info:
        parent.freeze()
    assert "START -> hand_off (delegates to 'ops': START -> ship (calls 'deploy_service'))" in str(
        info.value
    )


async def test_a_node_calling_a_governed_tool_must_declare_it() -> None:
    _, tools, deployed = devops()
    g = go.Graph("sneaky", state=Change)
    g.approve("confirm", approvers={"lead"})

    @g.tool
    async def ship(s: Change, ctx: go.Context[None]) -> None:
        await ctx.tools.call("deploy_service", service="api", replicas=1)

    g.end("done")
    g.edge(go.START, "confirm").edge("confirm", "ship", when=go.approved)
    g.edge("confirm", "done", when=go.rejected).edge("ship", "done")
    g.require_approval("deploy_service")
    rt = go.Runtime(tools=tools)
    run = await rt.start(g, Change())
    await run.wait()
    await rt.approve(run.id, by="lead")
    result = await (await rt.resume(run.id)).wait()
    assert isinstance(result.error, go.PolicyDeniedError)
    assert result.error.rule == "undeclared_tool" and deployed == []


def test_approval_outcomes_only_route_approve_nodes() -> None:
    g = go.Graph("misuse", state=Change)
    g.plan("a", lambda s: None)
    g.end("done")
    g.edge(go.START, "a").edge("a", "done", when=go.approved).edge("a", "done")
    with pytest.raises(go.GraphDefinitionError, match="only routes edges that leave an approve"):
        g.freeze()


def test_unknown_run_or_no_pending_approval() -> None:
    async def main() -> None:
        rt = go.Runtime()
        with pytest.raises(go.RunNotFoundError):
            await rt.approve("nope", by="lead")
        run = await rt.start(release_graph(), Change())
        with pytest.raises(go.ApprovalNotFoundError, match="no pending approval"):
            await rt.approve(run.id, by="lead")

    anyio.run(main)


ROOT = Path(__file__).resolve().parent.parent

PAUSED = """
import os, signal, sys, anyio
import graphorch as go
from tests.test_approvals import Change, release_graph

async def main() -> None:
    store = go.SQLiteStore(sys.argv[1])
    run = await go.Runtime(store).start(release_graph(), Change(), run_id="paused")
    result = await run.wait()
    print(result.status.value, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the process that paused dies without a goodbye

anyio.run(main)
"""


@pytest.mark.slow
async def test_approve_after_the_process_that_paused_was_killed(tmp_path: Path) -> None:
    db = tmp_path / "paused.db"
    proc = await anyio.run_process([sys.executable, "-c", PAUSED, str(db)], cwd=ROOT, check=False)
    assert proc.returncode == -9 and proc.stdout.decode().strip() == "waiting"
    store = go.SQLiteStore(db)
    rt = go.Runtime(store, graphs=[release_graph()])
    [pending] = await rt.pending_approvals()
    assert pending.run_id == "paused"
    await rt.approve("paused", by="lead")
    result = await (await rt.resume("paused")).wait()
    assert result.output == ["prepared", "deployed"]
    await store.close()
