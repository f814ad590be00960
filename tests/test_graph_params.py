"""Freezing refuses graph, node and edge parameters of the wrong kind, naming each."""

from __future__ import annotations

from typing import Any

import pytest
from graph_helpers import S, chain, is_ok, one_problem, problems, step
from pydantic import BaseModel

import graphorch as go


class Other(BaseModel):
    x: int = 0


@pytest.mark.parametrize("state", [dict, S(), "S", None, int])
def test_state_must_be_a_pydantic_model(state: Any) -> None:
    with pytest.raises(go.DefinitionError, match="state must be a pydantic BaseModel subclass"):
        go.Graph("g", state=state)


@pytest.mark.parametrize("name", ["", 3, None, b"g"])
def test_graph_name_must_be_a_str(name: Any) -> None:
    with pytest.raises(go.DefinitionError, match="name must be a non-empty str") as info:
        go.Graph(name, state=S)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"max_steps": 0}, "max_steps= must be an int >= 1, got 0"),
        ({"max_steps": "10"}, "max_steps= must be an int >= 1, got '10'"),
        ({"max_steps": True}, "max_steps= must be an int >= 1, got True"),
        ({"timeout": -1}, "timeout= must be a positive number of seconds, got -1"),
        ({"timeout": "5s"}, "timeout= must be a positive number of seconds, got '5s'"),
        ({"role": 7}, "role= must be a non-empty str, got 7"),
    ],
)
def test_graph_parameters_of_the_wrong_kind(kw: dict[str, Any], fragment: str) -> None:
    one_problem(chain(**kw), fragment)


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"retry": 0}, "retry= takes go.Retry(attempts>=1) or an int >= 1"),
        ({"retry": "3"}, "retry= takes go.Retry"),
        ({"retry": True}, "retry= takes go.Retry"),
        ({"retry": go.Retry(attempts=0)}, "retry= takes go.Retry"),
        ({"timeout": 0}, "timeout= must be a positive number of seconds, got 0"),
        ({"timeout": "1"}, "timeout= must be a positive number of seconds, got '1'"),
        ({"timeout": True}, "timeout= must be a positive number of seconds, got True"),
        ({"max_visits": 0}, "max_visits= must be an int >= 1, got 0"),
        ({"max_visits": 2.5}, "max_visits= must be an int >= 1, got 2.5"),
        ({"max_visits": True}, "max_visits= must be an int >= 1, got True"),
        ({"backtrack": 5}, "backtrack= must name nodes (str), got [5]"),
        ({"backtrack": "nowhere"}, "backtrack= names unknown node 'nowhere'"),
    ],
)
def test_node_parameters_of_the_wrong_kind(kw: dict[str, Any], fragment: str) -> None:
    g = chain()
    g.plan("bad", step, **kw)
    g.edge("a", "bad", when=is_ok)
    g.edge("bad", "done")
    msg = one_problem(g, "node 'bad'", fragment)
    assert msg.startswith("node 'bad': ")


def test_node_name_must_be_a_str() -> None:
    g = chain()
    g.plan("", step)
    one_problem(g, "plan node's name must be a non-empty str, got ''")


def test_plan_function_must_be_callable_with_state() -> None:
    g = chain()
    g.plan("notfn", "oops")  # pyright: ignore[reportArgumentType, reportCallIssue]
    g.plan("three", lambda a, b, c: None)
    for n in ("notfn", "three"):
        g.edge("a", n, when=is_ok)
        g.edge(n, "done")
    found = problems(g)
    assert found == [
        "node 'notfn': its function must be callable, got str",
        "node 'three': its function must take 1 or 2 positional argument(s)",
    ]


def test_tool_node_parameters() -> None:
    g = chain()
    g.tool("neither")
    g.tool("noargs", tool="t", args=5)  # pyright: ignore[reportArgumentType]
    g.tool("args2", tool="t", args=lambda s, extra: {})
    g.tool("both", step, tool="t")
    g.tool("unnamed", tool="")
    g.tool("result", tool="t", result="nope")
    for n in ("noargs", "args2", "both", "unnamed", "result"):
        g.edge("a", n, when=is_ok)
        g.edge(n, "done")
    found = "\n".join(problems(g))
    # g.tool("neither") with no tool= and no function is a decorator waiting for one
    assert "'neither'" not in found
    assert "node 'noargs': args= must be a dict or a function of the state" in found
    assert "node 'args2': args= must take 1 positional argument(s)" in found
    assert "node 'both': give a tool node tool= or a function, not both" in found
    assert "node 'unnamed': tool= must be a tool's name" in found
    assert "node 'result': result= names 'nope', which is not a field of S" in found
    assert "fields: items, ok, reply, text" in found


def test_tool_node_without_tool_or_function() -> None:
    g = chain()
    g.add_node(go.ToolNode(name="empty"))
    g.edge("a", "empty", when=is_ok)
    g.edge("empty", "done")
    one_problem(g, "node 'empty': a tool node needs tool='name' or a function")


def test_delegate_node_parameters() -> None:
    child = chain("child")
    g = chain()
    g.delegate("notgraph", graph="child")  # pyright: ignore[reportArgumentType]
    g.delegate("frozen", graph=child.freeze())  # pyright: ignore[reportArgumentType]
    g.delegate("fields", graph=child, output="nope", each="nor_this")
    g.delegate("kinds", graph=child, output=3, each=4, concurrency=0, on_error="ignore")  # pyright: ignore[reportArgumentType]
    for n in ("notgraph", "frozen", "fields", "kinds"):
        g.edge("a", n, when=is_ok)
        g.edge(n, "done")
    found = "\n".join(problems(g))
    assert "node 'notgraph': graph= must be a graphorch Graph, got str" in found
    assert "node 'frozen': graph= must be a graphorch Graph, got FrozenGraph" in found
    assert "node 'fields': output= names 'nope', which is not a field of S" in found
    assert "node 'fields': each= names 'nor_this', which is not a field of S" in found
    assert "node 'kinds': output= must name a state field or be a function" in found
    assert "node 'kinds': each= must name a list field or be a function" in found
    assert "node 'kinds': concurrency= must be an int >= 1" in found
    assert "node 'kinds': on_error= must be 'fail_fast' or 'collect'" in found


def test_delegated_child_graph_must_be_valid() -> None:
    child: go.Graph[Other, None] = go.Graph("child", state=Other)
    child.plan("orphan", step)
    child.end("fin")
    child.edge(go.START, "fin")
    g = chain()
    g.delegate("sub", graph=child, output="nope")
    g.edge("a", "sub", when=is_ok)
    g.edge("sub", "done")
    found = problems(g)
    assert any(
        p.startswith("node 'sub': delegated graph 'child' is invalid:")
        and "'orphan' is unreachable from START" in p
        for p in found
    ), found
    # the child's problems do not hide the parent's own
    assert any("node 'sub': output= names 'nope'" in p for p in found), found


def test_graph_delegating_to_itself_does_not_recurse() -> None:
    g = chain("recursive")
    g.delegate("again", graph=g, max_visits=2)
    g.edge("a", "again", when=is_ok)
    g.edge("again", "done")
    assert "again" in g.freeze().nodes


def test_approve_node_parameters() -> None:
    g = chain()
    g.approve("nobody")
    g.approve("garbage", approvers=5, roles=[""])  # pyright: ignore[reportArgumentType]
    g.approve("decides", roles={"leads"}, decision="verdict", expires_after=-1)
    for n in ("nobody", "garbage", "decides"):
        g.edge("a", n, when=is_ok)
        g.edge(n, "done")
    found = "\n".join(problems(g))
    assert "node 'nobody': an approve node needs approvers= or roles=" in found
    assert "node 'garbage': approvers= must be a set of non-empty names, got 5" in found
    assert "node 'garbage': roles= must be a set of non-empty names, got ['']" in found
    assert "node 'decides': decision= names 'verdict', which is not a field of S" in found
    assert "node 'decides': expires_after= must be a positive number of seconds" in found


def test_approvers_as_one_name() -> None:
    g = chain()
    node = g.approve("ok", approvers="alice")
    assert node.approvers == frozenset({"alice"})


def test_end_output_must_be_a_function() -> None:
    g = chain()
    g.end("bad", output="reply")  # pyright: ignore[reportArgumentType]
    g.edge("a", "bad", when=is_ok)
    one_problem(g, "node 'bad': output= must be callable, got str")


@pytest.mark.parametrize(
    ("when", "fragment"),
    [
        ("yes", "when= must be a function of the state, got str"),
        (lambda: True, "when= must take exactly one argument (the state)"),
        (lambda s, ctx: True, "when= must take exactly one argument (the state)"),
    ],
)
def test_edge_condition_of_the_wrong_kind(when: Any, fragment: str) -> None:
    g = chain()
    g.edge("a", "done", when=when)
    one_problem(g, "edge 'a' -> 'done'", fragment)


def test_edge_condition_must_not_be_async() -> None:
    async def ready(state: S) -> bool:
        return True

    g = chain()
    g.edge("a", "done", when=ready)  # pyright: ignore[reportArgumentType]
    one_problem(g, "edge 'a' -> 'done'", "when= must be a plain function; ready is async")


def test_edge_label_and_target_of_the_wrong_kind() -> None:
    g = chain()
    g.edge("a", "done", when=is_ok, label=5)  # pyright: ignore[reportArgumentType]
    g.edge("a", 7, when=is_ok)  # pyright: ignore[reportArgumentType]
    g.edge("a", [], when=is_ok)
    found = problems(g)
    assert "edge 'a' -> 'done': label= must be a str, got int" in found
    assert "edge 'a' -> 7: a target must be a node's name (str), got 7" in found
    assert "edge from 'a' has no target" in found


def test_add_node_takes_a_node() -> None:
    g = chain()
    with pytest.raises(go.DefinitionError, match=r"add_node\(\) takes a node.*got str"):
        g.add_node("a")  # pyright: ignore[reportArgumentType]


def test_error_edges_take_exception_types_and_no_condition() -> None:
    g = chain()
    g.edge("a", "done", on_error="oops")  # type: ignore[arg-type]
    one_problem(g, "on_error=", "exception class")
    g = chain()
    g.edge("a", "done", on_error=ValueError, when=is_ok)
    one_problem(g, "when= or on_error=, not both")


def test_a_node_with_only_error_edges_is_refused() -> None:
    g = go.Graph("only_errors", state=S)
    g.plan("a", step)
    g.end("done")
    g.edge(go.START, "a").edge("a", "done", on_error=True)
    one_problem(g, "'a'", "only error edges")


def test_an_error_edge_is_not_a_second_default_edge() -> None:
    g = chain()
    g.edge("a", "done", on_error=go.ToolError)
    frozen = g.freeze()
    [normal, error] = frozen.edges["a"]
    assert normal.is_default and not error.is_default and error.is_error
    assert error.display_label == "on ToolError"
    assert error.catches(go.ToolError("x", tool="t")) and not error.catches(ValueError())
