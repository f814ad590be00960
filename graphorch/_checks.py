"""The cheap checks of a graph's definition, the ones that need no networkx: its limits,
what its nodes' arguments name, and how its edges are wired. ``Graph`` runs them on every
freeze; the structural checks over the whole graph live in ``_structure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._edges import START, Edge
from .nodes import (
    ApprovalOutcome,
    ApproveNode,
    DelegateNode,
    EndNode,
    Node,
    ToolNode,
    _is_count,  # pyright: ignore[reportPrivateUsage]
    _is_number,  # pyright: ignore[reportPrivateUsage]
)

__all__ = ["dead_ends", "limit_problems", "reference_problems", "wiring_problems"]


def limit_problems(role: str, max_steps: int | None, timeout: float | None) -> list[str]:
    """The problems of a graph's ``role=``, ``max_steps=`` and ``timeout=``."""
    found: list[str] = []
    if not isinstance(role, str) or not role:  # pyright: ignore[reportUnnecessaryIsInstance]
        found.append(f"role= must be a non-empty str, got {role!r}")
    if max_steps is not None and (not _is_count(max_steps) or max_steps < 1):
        found.append(f"max_steps= must be an int >= 1, got {max_steps!r}")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        found.append(f"timeout= must be a positive number of seconds, got {timeout!r}")
    return found


def reference_problems(
    node: Node, nodes: Mapping[str, Node], fields: set[str], model: str
) -> list[str]:
    """The state fields (of the state model named ``model``) and nodes that ``node``'s
    arguments name but that do not exist."""
    named: list[tuple[str, object]] = []
    if isinstance(node, ToolNode):
        named.append(("result=", node.result))
    elif isinstance(node, DelegateNode):
        named += [("output=", node.output), ("each=", node.each)]
    elif isinstance(node, ApproveNode):
        named.append(("decision=", node.decision))
    found = [
        f"node {node.name!r}: {what} names {value!r}, which is not a field of "
        f"{model} (fields: {', '.join(sorted(fields))})"
        for what, value in named
        if isinstance(value, str) and value not in fields
    ]
    for target in node.backtrack:
        if isinstance(target, str) and target not in nodes:  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"node {node.name!r}: backtrack= names unknown node {target!r}")
    return found


def wiring_problems(nodes: Mapping[str, Node], edges: Mapping[str, Sequence[Edge]]) -> list[str]:
    """The problems of how the edges join the nodes: a missing end node or start, edges
    from or to unknown nodes, several default edges, nodes nothing leaves."""
    found: list[str] = []
    if not any(isinstance(n, EndNode) for n in nodes.values()):
        found.append("the graph has no end node; add one with g.end('done')")
    if START not in edges:
        found.append(f"nothing leaves START; add g.edge(go.START, {next(iter(nodes), 'first')!r})")
    known = set(nodes) | {START}
    for source, outgoing in edges.items():
        if source not in known:
            found.append(f"edge from unknown node {source!r}")
        defaults = [e for e in outgoing if e.is_default]
        if outgoing and all(e.is_error for e in outgoing) and source in nodes:
            found.append(f"node {source!r} has only error edges; add an edge for when it succeeds")
        if len(defaults) > 1:
            targets = ", ".join(repr(",".join(e.targets)) for e in defaults)
            found.append(
                f"node {source!r} has {len(defaults)} default edges (to {targets}); "
                f"at most one edge may lack when=; list parallel targets in one edge"
            )
        for e in outgoing:
            if isinstance(e.when, ApprovalOutcome) and not isinstance(
                nodes.get(source), ApproveNode
            ):
                found.append(
                    f"edge {source!r} -> {','.join(e.targets)!r}: when=go.{e.when.outcome} "
                    f"only routes edges that leave an approve node"
                )
            for t in e.targets:
                if t == START:
                    found.append(f"edge {source!r} -> START: nothing may lead back to START")
                elif t not in nodes:
                    found.append(f"edge {source!r} -> {t!r}: unknown node {t!r}")
        node = nodes.get(source)
        if isinstance(node, EndNode) and outgoing:
            found.append(f"end node {source!r} has outgoing edges; an end node ends the run")
    for name in dead_ends(nodes, edges):
        found.append(f"node {name!r} has no outgoing edge and is not an end node")
    return found


def dead_ends(nodes: Mapping[str, Node], edges: Mapping[str, Sequence[Edge]]) -> set[str]:
    """The nodes, other than end nodes, that no edge leaves."""
    return {
        name
        for name, node in nodes.items()
        if not isinstance(node, EndNode) and not edges.get(name)
    }
