"""Resuming with an unchanged graph trusts the run's stored fingerprint: the structural
checks (and the import of networkx they need) are skipped. Any change that matters is
still caught, and an explicit ``freeze()`` still reports every problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from graph_helpers import S, chain, is_ok, problems, step
from pydantic import BaseModel

import graphorch as go
from graphorch._record import replace
from graphorch.graph import legacy_fingerprint

FLOWS = '''
from typing import Any

from pydantic import BaseModel

import graphorch as go


class Count(BaseModel):
    n: int = 0
    log: list[str] = []


def bump(s: Count) -> dict[str, Any]:
    return {"n": s.n + 1, "log": [*s.log, f"step {s.n + 1}"]}


def loop() -> go.Graph[Count, None]:
    """START -> work (x5, a cycle stopped by max_visits) -> done."""
    g: go.Graph[Count, None] = go.Graph("loop", state=Count)
    g.plan("work", bump, max_visits=10)
    g.end("done", output=lambda s: s.log)
    g.edge(go.START, "work")
    g.edge("work", "work", when=lambda s: s.n < 5)
    g.edge("work", "done")
    return g


def child() -> go.Graph[Count, None]:
    g: go.Graph[Count, None] = go.Graph("helper", state=Count)
    g.plan("help", bump)
    g.end("done", output=lambda s: s.n)
    g.edge(go.START, "help").edge("help", "done")
    return g


def parent() -> go.Graph[Count, None]:
    """START -> first -> hand_off (delegates to helper) -> done."""
    g: go.Graph[Count, None] = go.Graph("parent", state=Count)
    g.plan("first", bump)
    g.delegate("hand_off", graph=child(), input=lambda s: {"n": s.n * 10}, output="n")
    g.end("done", output=lambda s: s.n)
    g.edge(go.START, "first").edge("first", "hand_off").edge("hand_off", "done")
    return g
'''

START_ONE_STEP = """
import sys, anyio, graphorch as go, flows

async def main() -> None:
    rt = go.Runtime(go.SQLiteStore(sys.argv[1]))
    run = await rt.start(getattr(flows, sys.argv[2])(), flows.Count(), run_id="r")
    await run.step()
    await rt.store.close()

anyio.run(main)
"""

RESUME = """
import json, sys, anyio, graphorch as go, flows

async def main() -> None:
    rt = go.Runtime(go.SQLiteStore(sys.argv[1]), graphs=[getattr(flows, sys.argv[2])()])
    run = await rt.resume("r")
    first = await run.step()
    seen = {"after_first_step": "networkx" in sys.modules, "first": list(first.nodes)}
    result = await run.wait()
    seen |= {"networkx": "networkx" in sys.modules, "status": result.status.value,
             "output": result.output, "n": result.state.n, "steps": result.steps}
    await rt.store.close()
    print(json.dumps(seen))

anyio.run(main)
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


def python(cwd: Path, code: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), *sys.path])},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def uninterrupted(cwd: Path, graph: str) -> dict[str, Any]:
    code = f"""
import json, anyio, graphorch as go, flows
result = go.run(flows.{graph}(), flows.Count())
print(json.dumps({{"output": result.output, "n": result.state.n, "steps": result.steps}}))
"""
    return json.loads(python(cwd, code))


@pytest.mark.slow
@pytest.mark.parametrize(("graph", "first"), [("loop", ["work"]), ("parent", ["hand_off"])])
def test_resuming_an_unchanged_graph_never_imports_networkx(
    flows: Path, graph: str, first: list[str]
) -> None:
    db = str(flows / "runs.db")
    python(flows, START_ONE_STEP, db, graph)
    seen = json.loads(python(flows, RESUME, db, graph))
    assert seen["first"] == first
    # the parent's delegated graph is trusted along with it: a new child run of it
    # needs no structural checks either
    assert seen["after_first_step"] is False and seen["networkx"] is False
    assert seen["status"] == "succeeded"
    expected = uninterrupted(flows, graph)
    assert {k: seen[k] for k in expected} == expected  # as if never interrupted


@pytest.mark.slow
def test_cli_resume_never_imports_networkx(flows: Path) -> None:
    db = str(flows / "runs.db")
    python(flows, START_ONE_STEP, db, "loop")
    code = """
import sys
from graphorch.cli import main
code = main(["resume", "r", "--db", sys.argv[1], "--graph", "flows:loop", "--json"])
print("networkx" in sys.modules, code)
"""
    out = python(flows, code, db).splitlines()
    assert out[-1] == "False 0"
    assert json.loads("\n".join(out[:-1]))["status"] == "succeeded"


# -- a changed graph is still told apart ------------------------------------------------


class Count(BaseModel):
    n: int = 0


def bump(s: Count) -> dict[str, Any]:
    return {"n": s.n + 1}


def helper(tool: str = "lookup") -> go.Graph[Count, None]:
    g: go.Graph[Count, None] = go.Graph("helper", state=Count)
    g.tool("fetch", tool=tool)
    g.end("done")
    g.edge(go.START, "fetch").edge("fetch", "done")
    return g


def flow(**change: Any) -> go.Graph[Count, None]:
    """START -> work (a loop) -> act (a tool) -> check (approve) -> hand_off -> done."""
    g: go.Graph[Count, None] = go.Graph(
        "flow", state=Count, role=change.get("role"), max_steps=change.get("max_steps")
    )
    g.plan("work", bump, max_visits=change.get("max_visits", 3))
    g.tool("act", tool=change.get("tool", "search"))
    g.approve("check", approvers=change.get("approvers", {"lead"}))
    g.delegate("hand_off", graph=change.get("child", helper()))
    g.end("done")
    g.edge(go.START, "work")
    g.edge("work", "work", when=lambda s: s.n < 2)
    g.edge("work", "act")
    g.edge("act", "check")
    g.edge("check", "hand_off", when=go.approved).edge("check", "done", when=go.rejected)
    g.edge("hand_off", "done")
    if change.get("extra_edge"):
        g.edge("act", "done", when=lambda s: s.n > 100)
    if change.get("approval"):
        g.require_approval("lookup")  # the helper's tool, called only after check
    return g


CHANGES = {
    "max_visits": {"max_visits": 4},
    "max_steps": {"max_steps": 50},
    "role": {"role": "ops"},
    "an added edge": {"extra_edge": True},
    "another tool": {"tool": "browse"},
    "approvers": {"approvers": {"lead", "cto"}},
    "require_approval": {"approval": True},
    "the child graph": {"child": helper(tool="lookup_v2")},
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=list(CHANGES))
def test_every_change_that_matters_changes_the_fingerprint(change: dict[str, Any]) -> None:
    assert flow().freeze().fingerprint == flow().freeze().fingerprint
    assert flow(**change).freeze().fingerprint != flow().freeze().fingerprint


def test_code_predicates_descriptions_and_timeouts_may_change() -> None:
    def edited(state: S) -> dict[str, Any]:
        return {"ok": True}

    def also_ok(state: S) -> bool:
        return bool(state.items)

    def variant(fn: Any, when: Any, **kw: Any) -> str:
        g: go.Graph[S, None] = go.Graph("g", state=S, **kw)
        g.plan("a", fn, **{k: v for k, v in kw.items() if k == "timeout"})
        g.end("done")
        g.edge(go.START, "a")
        g.edge("a", "done", when=when).edge("a", "done")
        return g.freeze().fingerprint

    base = variant(step, is_ok)
    assert variant(edited, also_ok, timeout=5) == base


async def started(graph: go.Graph[Count, None]) -> tuple[go.Runtime, str]:
    rt = go.Runtime(go.MemoryStore())
    run = await rt.start(graph, Count())
    await run.step()
    await run._release()  # pyright: ignore[reportPrivateUsage]
    return rt, run.id


@pytest.mark.parametrize("change", CHANGES.values(), ids=list(CHANGES))
async def test_resuming_with_a_changed_graph_is_refused(change: dict[str, Any]) -> None:
    rt, run_id = await started(flow())
    fresh = go.Runtime(rt.store)
    with pytest.raises(go.IncompatibleGraphError, match="changed shape"):
        await fresh.resume(run_id, flow(**change))
    run = await fresh.resume(run_id, flow(**change), allow_graph_change=True)
    assert run.steps == 1 and run.status is go.RunStatus.RUNNING


async def test_a_changed_graph_allowed_on_resume_gets_every_check() -> None:
    rt, run_id = await started(flow())
    broken = flow()
    broken.plan("orphan", bump)  # nothing leads here
    broken.edge("orphan", "done")
    with pytest.raises(go.GraphDefinitionError, match="'orphan' is unreachable from START"):
        await go.Runtime(rt.store).resume(run_id, broken, allow_graph_change=True)


async def test_a_run_fingerprinted_by_an_older_version_still_resumes() -> None:
    frozen = chain().freeze()
    # what graphorch stored before the fingerprint covered limits, tools and approvers
    assert legacy_fingerprint(frozen) == "57710504be188195"
    old = replace(frozen, fingerprint=legacy_fingerprint(frozen))
    rt = go.Runtime(go.MemoryStore())
    run = await rt.start(old, S())
    await run._release()  # pyright: ignore[reportPrivateUsage]
    resumed = await go.Runtime(rt.store).resume(run.id, chain())
    result = await resumed.wait()
    assert result.status is go.RunStatus.SUCCEEDED and result.steps == 2


# -- explicit freezing is unchanged ------------------------------------------------------


def structurally_broken() -> go.Graph[S, None]:
    """Valid node by node, but with an unreachable node and an unstoppable cycle."""
    g = chain()
    g.plan("orphan", step)
    g.edge("orphan", "done")
    g.plan("spin", step)
    g.edge("a", "spin", when=lambda s: s.ok)
    g.edge("spin", "spin", when=lambda s: not s.ok)
    g.edge("spin", "done")
    return g


STRUCTURAL = ["'orphan' is unreachable", "'spin' has no stopping rule"]


def test_freeze_reports_every_problem_after_a_runtime_registered_the_graph() -> None:
    g = structurally_broken()
    go.Runtime(graphs=[g])  # only the definition checks: a run may still come to trust it
    found = problems(g)
    assert len(found) == 2 and all(any(p in f for f in found) for p in STRUCTURAL)
    g.plan("lonely", step)  # a definition problem as well: still one error listing all
    found = problems(g)
    assert len(found) == 4 and any("'lonely' has no outgoing edge" in f for f in found)
    with pytest.raises(go.GraphDefinitionError) as info:
        go.Runtime(graphs=[g])
    assert info.value.problems == found


async def test_a_new_run_always_gets_the_structural_checks() -> None:
    g = structurally_broken()
    rt = go.Runtime(graphs=[g])
    with pytest.raises(go.GraphDefinitionError) as info:
        await rt.start(g, S())
    assert len(info.value.problems) == 2


async def test_a_registered_form_is_checked_as_it_was_frozen() -> None:
    g = structurally_broken()
    rt = go.Runtime()
    registered = rt.register(g)
    g.edge("spin", "orphan", when=lambda s: s.ok)  # the graph changes; the form does not
    with pytest.raises(go.GraphDefinitionError, match="unreachable"):
        await rt.start(registered, S())
    fine = chain()
    form = rt.register(fine)
    fine.plan("extra", step)  # invalid now, but the registered form is fine
    run = await rt.start(form, S())
    assert (await run.wait()).status is go.RunStatus.SUCCEEDED
