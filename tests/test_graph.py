"""Defining graphs: node kinds, builder forms, edges, and validation on freeze."""

from __future__ import annotations

import networkx as nx
import pytest
from graph_helpers import S, chain, is_ok, one_problem, problems, step
from pydantic import BaseModel

import graphorch as go

# -- a valid graph -------------------------------------------------------------


def test_valid_graph_freezes() -> None:
    g = chain()
    frozen = g.freeze()
    assert isinstance(frozen, go.FrozenGraph)
    assert frozen.name == "g" and frozen.role == "g"
    assert frozen.state is S
    assert list(frozen.nodes) == ["a", "done"]
    assert [e.targets for e in frozen.edges[go.START]] == [("a",)]
    with pytest.raises(TypeError):
        frozen.nodes["x"] = frozen.nodes["a"]  # type: ignore[index]


def test_freeze_is_cached_and_invalidated_by_changes() -> None:
    g = chain()
    first = g.freeze()
    assert g.freeze() is first
    g.plan("b", step)
    with pytest.raises(go.GraphDefinitionError):
        g.freeze()
    g.edge("a", "b", when=is_ok)
    g.edge("b", "done")
    second = g.freeze()
    assert second is not first
    assert "b" in second.nodes and "b" not in first.nodes
    assert g.freeze() is second


# -- node kinds and builder forms ---------------------------------------------


def test_each_kind_is_its_own_type() -> None:
    child = chain("child")
    g: go.Graph[S, None] = go.Graph("g", state=S)
    g.plan("p", step)
    g.tool("t", tool="search", args=lambda s: {"q": s.text}, result="reply")
    g.delegate("d", graph=child)
    g.approve("a", approvers={"lead"})
    g.end("e")
    expected = {
        "p": (go.PlanNode, go.NodeKind.PLAN),
        "t": (go.ToolNode, go.NodeKind.TOOL),
        "d": (go.DelegateNode, go.NodeKind.DELEGATE),
        "a": (go.ApproveNode, go.NodeKind.APPROVE),
        "e": (go.EndNode, go.NodeKind.END),
    }
    for name, (cls, kind) in expected.items():
        node = g.nodes[name]
        assert type(node) is cls
        assert node.kind is kind and node.kind == kind.value
    assert len({type(n) for n in g.nodes.values()}) == 5


def test_plan_decorator_and_call_forms() -> None:
    g: go.Graph[S, None] = go.Graph("g", state=S)

    @g.plan
    def bare(state: S) -> None:
        return None

    @g.plan("named", retry=3, max_visits=2, timeout=1.5)
    def inner(state: S, ctx: go.Context) -> None:
        return None

    returned = g.plan("called", step)
    assert callable(bare) and bare.__name__ == "bare"  # the decorator gives the function back
    assert inner.__name__ == "inner" and returned is step
    assert list(g.nodes) == ["bare", "named", "called"]
    named = g.nodes["named"]
    assert isinstance(named, go.PlanNode) and named.fn is inner
    assert named.retry == go.Retry(attempts=3) and named.max_visits == 2 and named.timeout == 1.5


def test_tool_and_end_forms() -> None:
    g: go.Graph[S, None] = go.Graph("g", state=S)

    @g.tool
    async def lookup(state: S, ctx: go.Context) -> None:
        return None

    g.tool("search", tool="web_search", args={"q": "x"}, result="reply")

    @g.end
    def finish(state: S) -> str | None:
        return state.reply

    g.end("quiet")
    g.end("out", output=lambda s: s.reply)
    tool = g.nodes["search"]
    assert isinstance(tool, go.ToolNode) and tool.tool == "web_search" and tool.fn is None
    assert isinstance(g.nodes["lookup"], go.ToolNode) and g.nodes["lookup"].fn is lookup
    assert isinstance(g.nodes["finish"], go.EndNode) and g.nodes["finish"].output is finish
    quiet, out = g.nodes["quiet"], g.nodes["out"]
    assert isinstance(quiet, go.EndNode) and quiet.output is None
    assert isinstance(out, go.EndNode) and out.output is not None


def test_backtrack_accepts_one_name_or_several() -> None:
    g: go.Graph[S, None] = go.Graph("g", state=S)
    g.plan("a", step, backtrack="b")
    g.plan("b", step, backtrack=["a", "c"])
    assert g.nodes["a"].backtrack == ("b",)
    assert g.nodes["b"].backtrack == ("a", "c")


# -- edges ---------------------------------------------------------------------


def test_edge_labels() -> None:
    g = chain()
    g.plan("b", step)
    g.edge("b", "done", when=is_ok)
    g.edge("b", "done", when=lambda s: s.ok, label="approved")
    g.edge("b", "done", when=lambda s: not s.ok)
    g.edge("b", "done")
    labels = [e.display_label for e in g._edges["b"]]  # pyright: ignore[reportPrivateUsage]
    assert labels == ["is_ok", "approved", "condition", ""]
    assert [e.is_default for e in g._edges["b"]] == [False, False, False, True]  # pyright: ignore[reportPrivateUsage]


def test_parallel_targets_in_one_edge() -> None:
    g: go.Graph[S, None] = go.Graph("g", state=S)
    g.plan("a", step)
    g.plan("b", step)
    g.end("done")
    g.edge(go.START, ["a", "b"])
    g.edge("a", "done")
    g.edge("b", "done")
    assert g.freeze().edges[go.START][0].targets == ("a", "b")


def test_to_networkx() -> None:
    g = chain()
    g.plan("check", step, backtrack="a", max_visits=3)
    g.edge("a", "check", when=is_ok)
    g.edge("check", "done")
    dg = g.freeze().to_networkx()
    assert isinstance(dg, nx.DiGraph)
    assert set(dg.nodes) == {go.START, "a", "check", "done"}
    assert dg.nodes["a"]["kind"] == "plan" and dg.nodes["done"]["kind"] == "end"
    assert dg.edges["a", "check"]["label"] == "is_ok"
    assert dg.edges["a", "done"]["label"] == ""
    assert dg.edges["check", "a"]["backtrack"] is True
    assert nx.has_path(dg, go.START, "done")


def test_fingerprint_is_stable_and_tracks_structure() -> None:
    base = chain().freeze().fingerprint
    assert isinstance(base, str) and base
    assert chain().freeze().fingerprint == base  # same definition, new objects
    assert chain("other").freeze().fingerprint != base

    extra = chain()
    extra.plan("b", step)
    extra.edge("a", "b", when=is_ok)
    extra.edge("b", "done")
    assert extra.freeze().fingerprint != base

    rewired: go.Graph[S, None] = go.Graph("g", state=S)
    rewired.plan("a", step)
    rewired.end("done")
    rewired.edge(go.START, "a")
    rewired.edge("a", "done", when=is_ok)
    rewired.edge("a", "done", when=lambda s: True)
    assert rewired.freeze().fingerprint != base

    class T(BaseModel):
        other: int = 0

    typed: go.Graph[T, None] = go.Graph("g", state=T)
    typed.plan("a", step)
    typed.end("done")
    typed.edge(go.START, "a")
    typed.edge("a", "done")
    assert typed.freeze().fingerprint != base


# -- structural problems, one at a time ---------------------------------------


def test_duplicate_node_name() -> None:
    g = chain()
    g.plan("a", step)
    one_problem(g, "'a'", "defined twice")


def test_reserved_start_name() -> None:
    g = chain()
    g.plan(go.START, step)
    one_problem(g, repr(go.START), "reserved")


def test_edge_to_unknown_node() -> None:
    g = chain()
    g.edge("a", "nowhere", when=is_ok)
    one_problem(g, "'a'", "unknown node 'nowhere'")


def test_edge_from_unknown_node() -> None:
    g = chain()
    g.edge("ghost", "done")
    one_problem(g, "unknown node 'ghost'")


def test_node_unreachable_from_start() -> None:
    g = chain()
    g.plan("island", step)
    g.edge("island", "done")
    one_problem(g, "'island'", "unreachable from START")


def test_node_that_cannot_reach_an_end() -> None:
    g = chain()
    g.plan("trap", step, max_visits=3)
    g.edge("a", "trap", when=is_ok)
    g.edge("trap", "trap")
    one_problem(g, "'trap'", "cannot reach any end node")


def test_more_than_one_default_edge() -> None:
    g = chain()
    g.plan("b", step)
    g.edge("a", "b")
    g.edge("b", "done")
    one_problem(g, "'a'", "2 default edges", "'done'", "'b'")


def test_non_end_node_without_outgoing_edge() -> None:
    g = chain()
    g.plan("stuck", step)
    g.edge("a", "stuck", when=is_ok)
    one_problem(g, "'stuck'", "no outgoing edge", "not an end node")


def test_end_node_with_outgoing_edge() -> None:
    g = chain()
    g.edge("done", "a")
    found = problems(g)
    assert any("end node 'done' has outgoing edges" in p for p in found), found


def test_no_edge_from_start_and_no_end_node() -> None:
    g: go.Graph[S, None] = go.Graph("g", state=S)
    g.plan("a", step)
    g.edge("a", "a", when=is_ok)
    found = problems(g)
    assert any("nothing leaves START" in p and "'a'" in p for p in found), found
    assert any("no end node" in p for p in found), found


def test_edge_back_to_start() -> None:
    g = chain()
    g.edge("a", go.START, when=is_ok)
    one_problem(g, "'a'", "START", "nothing may lead back")


def test_cycle_without_stopping_rule() -> None:
    g = chain()
    g.plan("review", step)
    g.edge("a", "review", when=is_ok)
    g.edge("review", "a")
    msg = one_problem(g, "cycle through 'a', 'review'", "max_visits=", "max_steps=")
    assert "stopping rule" in msg


def test_self_loop_without_stopping_rule() -> None:
    g = chain()
    g.edge("a", "a", when=is_ok)
    one_problem(g, "cycle through 'a'")


def test_backtrack_route_is_a_cycle_too() -> None:
    g = chain()
    g.plan("check", step, backtrack="a")
    g.edge("a", "check", when=is_ok)
    g.edge("check", "done")
    one_problem(g, "cycle through 'a', 'check'")


@pytest.mark.parametrize("rule", ["max_visits", "max_steps"])
def test_cycle_with_a_stopping_rule_freezes(rule: str) -> None:
    g = chain(max_steps=50) if rule == "max_steps" else chain()
    g.plan("review", step, **({"max_visits": 3} if rule == "max_visits" else {}))
    g.edge("a", "review", when=is_ok)
    g.edge("review", "a")
    g.freeze()


def test_several_problems_in_one_error() -> None:
    g: go.Graph[S, None] = go.Graph("multi", state=S)
    g.plan("a", step)
    g.plan("a", step)
    g.plan("island", step)
    g.edge("island", "done")
    g.plan("stuck", step, retry=0)
    g.plan("loop", step)
    g.end("done")
    g.edge(go.START, "a")
    g.edge("a", "done")
    g.edge("a", "stuck")
    g.edge("a", "loop", when=is_ok)
    g.edge("loop", "loop", when=is_ok)
    g.edge("loop", "done")
    g.edge("a", "missing", when=is_ok)
    found = problems(g)
    wanted = [
        "'a' is defined twice",
        "'island' is unreachable from START",
        "'stuck' has no outgoing edge",
        "node 'a' has 2 default edges",
        "unknown node 'missing'",
        "cycle through 'loop'",
        "node 'stuck': retry=",
    ]
    for w in wanted:
        assert any(w in p for p in found), (w, found)
    assert len(found) == len(wanted), found
