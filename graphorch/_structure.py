"""The structural checks over a whole graph, with networkx: every node reachable from
START, every reachable node able to end, tools that need approval guarded by an approve
node, and a stopping rule on every cycle. networkx is slow to import, so it is imported
only here and only when these checks run (a resumed run with a matching fingerprint
skips them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ._checks import dead_ends
from ._edges import START, Edge
from .nodes import ApproveNode, DelegateNode, EndNode, Node, ToolNode

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["digraph", "structure_problems", "unapproved_paths"]


def digraph(nodes: Mapping[str, Node], edges: Mapping[str, Iterable[Edge]]) -> nx.DiGraph[str]:
    """The graph as a networkx DiGraph, START and backtrack routes included."""
    import networkx as nx

    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_node(START)
    for name, node in nodes.items():
        g.add_node(name, kind=node.kind.value)
    for source, outgoing in edges.items():
        for edge in outgoing:
            for target in edge.targets:
                g.add_edge(source, target, label=edge.display_label)
    for name, node in nodes.items():
        for target in node.backtrack:
            if not g.has_edge(name, target):
                g.add_edge(name, target, label="backtrack", backtrack=True)
    return g


def structure_problems(
    nodes: Mapping[str, Node],
    edges: Mapping[str, Sequence[Edge]],
    max_steps: int | None,
    unapproved: Callable[[], Mapping[str, list[str]]],
) -> list[str]:
    """The checks over the whole structure, with networkx: reachability, ends,
    approvals and stopping rules (slow to import, so skipped when trusted).

    ``unapproved`` gives the graph's tools that need approval but are reachable without
    it, each with one offending path (``Graph.unapproved_calls``).
    """
    import networkx as nx

    found: list[str] = []
    known = set(nodes) | {START}
    ends = dead_ends(nodes, edges)
    g = digraph(nodes, {k: v for k, v in edges.items() if k in known})
    g.remove_nodes_from([n for n in list(g.nodes) if n not in known])
    g.remove_edges_from(list(g.in_edges(START)))
    if START in edges:
        reachable: set[str] = nx.descendants(g, START)  # pyright: ignore[reportUnknownMemberType]
        for name in nodes:
            if name not in reachable:
                found.append(f"node {name!r} is unreachable from START")
    else:
        reachable = set()
    can_end: set[str] = set()
    for name, node in nodes.items():
        if isinstance(node, EndNode):
            can_end.add(name)
            can_end |= nx.ancestors(g, name)  # pyright: ignore[reportUnknownMemberType]
    for name in nodes:
        if name in reachable and name not in can_end and name not in ends:
            found.append(f"node {name!r} cannot reach any end node")
    found += [
        f"tool {tool!r} needs approval but is reachable without passing an approve "
        f"node: {' -> '.join(path)}"
        for tool, path in sorted(unapproved().items())
    ]
    if max_steps is None:
        for scc in nx.strongly_connected_components(g):
            members = sorted(scc)
            looped = len(members) > 1 or g.has_edge(members[0], members[0])
            if looped and not any(n in nodes and nodes[n].max_visits is not None for n in members):
                found.append(
                    f"cycle through {', '.join(map(repr, members))} has no stopping rule; "
                    f"set max_visits= on one of its nodes or max_steps= on the graph"
                )
    return found


def unapproved_paths(
    nodes: Mapping[str, Node],
    edges: Mapping[str, Iterable[Edge]],
    required: frozenset[str],
    delegated: Callable[[DelegateNode], Mapping[str, list[str]]],
) -> dict[str, list[str]]:
    """Tools of ``required`` reachable from START without passing an approve node,
    each with one offending path (node names, delegated graphs spelled inline).

    ``delegated`` gives the same for the graph a delegate node starts (empty for one
    already being searched), so ``Graph.unapproved_calls`` can recurse.
    """
    import networkx as nx

    if not required:
        return {}
    g = digraph(nodes, {k: v for k, v in edges.items()})
    g.remove_edges_from(list(g.in_edges(START)))
    g.remove_nodes_from([n for n, node in nodes.items() if isinstance(node, ApproveNode)])
    found: dict[str, list[str]] = {}
    for name, node in nodes.items():
        if name not in g or not nx.has_path(g, START, name):
            continue
        calls: dict[str, str] = {}
        if isinstance(node, ToolNode):
            calls = {t: f"{name} (calls {t!r})" for t in node.calls if t in required}
        elif isinstance(node, DelegateNode):
            calls = {
                t: f"{name} (delegates to {node.graph.name!r}: {' -> '.join(p)})"
                for t, p in delegated(node).items()
            }
        for tool, last in calls.items():
            if tool not in found:
                path: list[str] = nx.shortest_path(g, START, name)  # pyright: ignore[reportUnknownMemberType, reportAssignmentType]
                found[tool] = ["START", *path[1:-1], last]
    return found
