"""What the graph-definition tests share: a state, a valid chain, problem checks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import graphorch as go


class S(BaseModel):
    text: str = ""
    items: list[str] = []
    reply: str | None = None
    ok: bool = False


def step(state: S) -> dict[str, Any]:
    return {}


def is_ok(state: S) -> bool:
    return state.ok


def chain(name: str = "g", **kw: Any) -> go.Graph[S, None]:
    """START -> a -> done, valid."""
    g: go.Graph[S, None] = go.Graph(name, state=S, **kw)
    g.plan("a", step)
    g.end("done")
    g.edge(go.START, "a")
    g.edge("a", "done")
    return g


def problems(g: go.Graph[Any, Any]) -> list[str]:
    with pytest.raises(go.GraphDefinitionError) as info:
        g.freeze()
    err = info.value
    assert err.graph == g.name
    assert str(err).startswith(f"graph {g.name!r} has {len(err.problems)} problem")
    for p in err.problems:
        assert p in str(err)
    return err.problems


def one_problem(g: go.Graph[Any, Any], *fragments: str) -> str:
    found = problems(g)
    assert len(found) == 1, found
    for f in fragments:
        assert f in found[0], (f, found[0])
    return found[0]
