"""Fingerprints: a short hash of everything about a graph that changes how its runs go.

A run stores its graph's fingerprint. Resuming compares it with the graph's current one,
to refuse a changed graph and, when they match, to skip the structural checks the run's
start already passed. :func:`legacy_graph_fingerprint` is the narrower hash older
versions stored, so their runs can still be resumed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ._edges import Edge
from .nodes import ApprovalOutcome, ApproveNode, DelegateNode, Node, ToolNode

__all__ = ["graph_fingerprint", "legacy_graph_fingerprint"]


def graph_fingerprint(
    graph_name: str,
    role: str,
    fields: Iterable[str],
    max_steps: int | None,
    nodes: Mapping[str, Node],
    edges: Mapping[str, Iterable[Edge]],
    approval_required: Iterable[str],
    seen: frozenset[int],
) -> str:
    """The fingerprint of a graph with these parts; ``seen`` holds the ids of the graphs
    being fingerprinted, this one included, so delegation cycles end."""
    # Everything the structural checks depend on is in here (a resumed run whose
    # fingerprint matches skips them), and everything else that changes how a run
    # goes: limits, the tools a node calls, who approves, delegated graphs.
    entries: list[list[Any]] = []
    for name, node in nodes.items():
        entry: list[Any] = [name, node.kind.value, list(node.backtrack), node.max_visits]
        if isinstance(node, ToolNode):
            entry += [node.tool, list(node.uses)]
        elif isinstance(node, ApproveNode):
            entry += [sorted(node.approvers), sorted(node.roles)]
        elif isinstance(node, DelegateNode):
            child = node.graph
            # a graph delegating back to one being fingerprinted is named, not expanded
            entry.append(
                ["cycle", child.name] if id(child) in seen else child._fingerprint(seen)  # pyright: ignore[reportPrivateUsage]
            )
        entries.append(entry)
    doc = {
        "graph": graph_name,
        "role": role,
        "state": list(fields),
        "max_steps": max_steps,
        "nodes": entries,
        "approval_required": sorted(approval_required),
        "edges": [
            [source, list(e.targets), e.is_default, e.is_error, *_condition(e)]
            for source, outgoing in edges.items()
            for e in outgoing
        ],
    }
    return _hash(doc)


def legacy_graph_fingerprint(
    graph_name: str,
    fields: Iterable[str],
    nodes: Mapping[str, Node],
    edges: Mapping[str, Iterable[Edge]],
    approval_required: Iterable[str],
) -> str:
    """The fingerprint graphorch stored before it covered limits, tools, approvers and
    delegated graphs, so runs started by an older version can still be resumed."""
    return _hash(
        {
            "graph": graph_name,
            "state": list(fields),
            "nodes": [[n, node.kind.value, list(node.backtrack)] for n, node in nodes.items()],
            "approval_required": sorted(approval_required),
            "edges": [
                [source, list(e.targets), e.is_default, e.is_error]
                for source, outgoing in edges.items()
                for e in outgoing
            ],
        }
    )


def _condition(edge: Edge) -> list[Any]:
    """What of an edge's condition the fingerprint covers: an approval outcome and the
    error types (a predicate's own code is not: it may be edited between processes)."""
    outcome = edge.when.outcome if isinstance(edge.when, ApprovalOutcome) else None
    # no module: a script's own types live in __main__ there, in its module under the CLI
    errors = [t.__qualname__ for t in edge.on_error or ()]
    return [outcome, errors]


def _hash(doc: object) -> str:
    import hashlib  # only when freezing: keeps `import graphorch` light

    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]
