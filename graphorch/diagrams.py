"""Drawing graphs and runs: DOT text, Mermaid text, SVG/PNG through Graphviz.

DOT and Mermaid are built in pure Python, deterministically (nodes and edges in the
order they were declared), so they can be snapshot-tested and work offline with nothing
installed. SVG and PNG need Graphviz's ``dot`` program; without it :func:`render` raises
:class:`RenderError` with the install hint instead of returning nothing.

A :class:`RunOverlay` (from :func:`overlay_for`) colours a run onto its graph: the path
taken with visit counts, the edges traversed, the next node, a failed node and a
waiting node, at any checkpoint of the run's history::

    overlay = await go.overlay_for(runtime, run.id, at=3)
    go.render(graph, "run.svg", run=overlay)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from .exceptions import CheckpointNotFoundError, GraphDefinitionError, RenderError
from .graph import START, FrozenGraph, Graph
from .nodes import ApproveNode, DelegateNode, Node, ToolNode
from .types import RunStatus

if TYPE_CHECKING:
    from .runtime import Runtime
    from .store.base import CheckpointInfo, RunRecord, Store

__all__ = [
    "RenderError",
    "RunOverlay",
    "overlay_for",
    "render",
    "to_dot",
    "to_mermaid",
    "to_png",
    "to_svg",
]

GraphLike = Graph[Any, Any] | FrozenGraph[Any, Any]

INSTALL_HINT = (
    "Install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
    "(macOS), or see https://graphviz.org/download/"
)

# kind -> (DOT shape, DOT style, fill colour)
_KINDS: dict[str, tuple[str, str, str]] = {
    "plan": ("box", "rounded,filled", "#DCEBFF"),
    "tool": ("component", "filled", "#FFF1C9"),
    "delegate": ("folder", "filled", "#E6DDF7"),
    "approve": ("octagon", "filled", "#FFE0CC"),
    "end": ("doublecircle", "filled", "#D8F3DC"),
}
_STROKE = {
    "plan": "#4A6FA5",
    "tool": "#B8860B",
    "delegate": "#7E57C2",
    "approve": "#D2691E",
    "end": "#2E7D32",
}
# overlay marks: mark -> (border colour, fill or "" to keep the kind's, extra style, text)
_MARKS: dict[str, tuple[str, str, str, str]] = {
    "current": ("#1565C0", "#BBDEFB", "bold", "▶ next"),
    "failed": ("#C62828", "#FFCDD2", "bold", "✖ failed"),
    "attention": ("#C62828", "#FFCDD2", "dashed", "⚠ needs attention"),
    "waiting": ("#EF6C00", "#FFE0B2", "dashed", "◔ waiting"),
}
_PATH = "#2E7D32"
_TIMES = "\u00d7"  # the multiplication sign of visit counts: "plan \u00d72"
_FADED = "#9E9E9E"
_BACKTRACK = "#8E24AA"
_ERROR_EDGE = "#D84315"
_DELEGATION = "#7E57C2"


# -- the run overlay ---------------------------------------------------------------


@dataclass(frozen=True)
class RunOverlay:
    """A run's progress at one checkpoint, to colour onto its graph.

    Build one with :func:`overlay_for` (from a store) or :meth:`from_history`.

    Attributes:
        run_id: the run.
        graph: the name of the run's graph.
        status: the run's status at that checkpoint.
        seq: the checkpoint shown.
        head_seq: the run's latest checkpoint.
        visits: how often each node ran up to that checkpoint.
        transitions: ``(source, target) -> count`` of routes taken (``START`` included).
        current: the nodes to run next (while the run is running).
        failed: the node to blame, when the run failed or needs attention.
        waiting: the nodes waiting for a person.
        reason: why the run stopped, if it did.
    """

    run_id: str
    graph: str
    status: RunStatus
    seq: int
    head_seq: int
    visits: Mapping[str, int] = field(default_factory=dict[str, int])
    transitions: Mapping[tuple[str, str], int] = field(default_factory=dict[tuple[str, str], int])
    current: tuple[str, ...] = ()
    failed: str | None = None
    waiting: tuple[str, ...] = ()
    reason: str | None = None

    @classmethod
    def from_history(
        cls,
        record: RunRecord,
        checkpoints: Sequence[CheckpointInfo],
        at: int | str | None = None,
    ) -> RunOverlay:
        """The overlay of a run from its record and checkpoints, at checkpoint ``at``.

        Args:
            record: the run's record (``store.get_run``).
            checkpoints: its history in order (``store.list_checkpoints``).
            at: a checkpoint's seq or id; None for the latest.

        Raises:
            CheckpointNotFoundError: the run has no such checkpoint.
        """
        history = sorted(checkpoints, key=lambda c: c.seq)
        if not history:
            raise CheckpointNotFoundError(f"run {record.run_id} has no checkpoints")
        index = _checkpoint_index(record.run_id, history, at)
        chosen = history[index]
        at_head = index == len(history) - 1
        visits: dict[str, int] = {}
        transitions: dict[tuple[str, str], int] = {}
        for i, cp in enumerate(history[: index + 1]):
            sources = cp.nodes if i else (() if record.forked_from else (START,))
            for node in cp.nodes:
                visits[node] = visits.get(node, 0) + 1
            for source in sources:
                for target in cp.next_nodes:
                    transitions[(source, target)] = transitions.get((source, target), 0) + 1
        status = record.status if at_head else chosen.status
        current: tuple[str, ...] = ()
        waiting: tuple[str, ...] = ()
        failed: str | None = None
        if status is RunStatus.RUNNING:
            current = chosen.next_nodes
        elif status is RunStatus.WAITING:
            waiting = chosen.next_nodes
        elif status in (RunStatus.FAILED, RunStatus.NEEDS_ATTENTION):
            failed = record.error_node
        return cls(
            run_id=record.run_id,
            graph=record.graph,
            status=status,
            seq=chosen.seq,
            head_seq=history[-1].seq,
            visits=visits,
            transitions=transitions,
            current=current,
            failed=failed,
            waiting=waiting,
            reason=record.reason if at_head else None,
        )

    @property
    def caption(self) -> str:
        """One line saying which run, where it stands and which checkpoint is shown."""
        text = f"run {self.run_id} · {self.status.value} · checkpoint {self.seq}/{self.head_seq}"
        return f"{text} · {self.reason}" if self.reason else text

    def mark(self, node: str) -> str | None:
        """How the node is marked: current, failed, attention, waiting, or None."""
        if node == self.failed:
            return "attention" if self.status is RunStatus.NEEDS_ATTENTION else "failed"
        if node in self.waiting:
            return "waiting"
        if node in self.current:
            return "current"
        return None


def _checkpoint_index(run_id: str, history: Sequence[CheckpointInfo], at: int | str | None) -> int:
    if at is None:
        return len(history) - 1
    for i, cp in enumerate(history):
        if isinstance(at, int) and cp.seq == at:
            return i
        if isinstance(at, str) and (cp.checkpoint_id == at or (at.isdigit() and cp.seq == int(at))):
            return i
    raise CheckpointNotFoundError(
        f"run {run_id} has no checkpoint {at!r}; its checkpoints are seq "
        f"{history[0].seq}..{history[-1].seq}"
    )


async def overlay_for(
    source: Runtime | Store, run_id: str, *, at: int | str | None = None
) -> RunOverlay:
    """Read a run's history from a runtime or store and make its overlay.

    Args:
        source: a :class:`~graphorch.Runtime` or a store.
        run_id: the run.
        at: a checkpoint's seq or id to show the run as it was then; None for now.

    Raises:
        RunNotFoundError: no such run.
        CheckpointNotFoundError: the run has no such checkpoint.
    """
    from .runtime import Runtime
    from .types import RunId

    store = source.store if isinstance(source, Runtime) else source
    record = await store.get_run(RunId(run_id))
    checkpoints = await store.list_checkpoints(record.run_id)
    return RunOverlay.from_history(record, checkpoints, at)


# -- the structure both writers draw -------------------------------------------------


@dataclass
class _Node:
    key: str
    kind: str  # a NodeKind value, "start" or "fork"
    lines: list[str]
    tooltip: str | None = None
    mark: str | None = None
    visited: bool | None = None  # None: no overlay


@dataclass
class _Link:
    src: str
    dst: str
    style: str  # plain, cond, default, backtrack, delegate
    label: str = ""
    arrow: bool = True
    pairs: tuple[tuple[str, str], ...] = ()  # (source, target) routes it stands for
    taken: int | None = None  # None: no overlay


@dataclass
class _Scope:
    label: str
    start: str
    nodes: list[_Node] = field(default_factory=list[_Node])
    clusters: list[_Scope] = field(default_factory=list["_Scope"])


@dataclass
class _Drawing:
    title: str
    caption: str | None
    root: _Scope
    links: list[_Link]


def _freeze(graph: GraphLike) -> FrozenGraph[Any, Any]:
    if isinstance(graph, FrozenGraph):
        return graph
    if not isinstance(graph, Graph):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise RenderError(f"expected a graphorch Graph, got {type(graph).__name__}")
    try:
        return graph.freeze()
    except GraphDefinitionError as err:
        err.add_note("rendering needs a valid graph: fix the problems listed above")
        raise


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _detail(node: Node) -> str | None:
    if isinstance(node, ToolNode):
        return f"tool: {node.tool}" if node.tool else "tool: (code)"
    if isinstance(node, DelegateNode):
        fan = " · each" if node.each is not None else ""
        return f"graph: {node.graph.name}{fan}"
    if isinstance(node, ApproveNode):
        who = sorted(node.approvers) + [f"role {r}" for r in sorted(node.roles)]
        return _short("by " + ", ".join(who))
    return None


class _Builder:
    def __init__(self, expand: bool) -> None:
        self.expand = expand
        self.used: set[str] = set()
        self.links: list[_Link] = []

    def key(self, preferred: str) -> str:
        key, n = preferred, 1
        while key in self.used:
            n += 1
            key = f"{preferred}#{n}"
        self.used.add(key)
        return key

    def scope(
        self, graph: FrozenGraph[Any, Any], prefix: str, stack: tuple[str, ...], top: bool
    ) -> _Scope:
        start = self.key(prefix + START)
        scope = _Scope(label=graph.name, start=start)
        scope.nodes.append(_Node(start, "start", []))
        ids = {START: start}
        for name in graph.nodes:
            ids[name] = self.key(prefix + name)
        for name, node in graph.nodes.items():
            detail = _detail(node)
            lines = [name] if detail is None else [name, detail]
            scope.nodes.append(_Node(ids[name], node.kind.value, lines, node.description))
        for source, outgoing in graph.edges.items():
            conditional = any(not e.is_default and not e.is_error for e in outgoing)
            forks = 0
            for edge in outgoing:
                style = (
                    "error"
                    if edge.is_error
                    else "cond"
                    if not edge.is_default
                    else "default"
                    if conditional
                    else "plain"
                )
                label = edge.display_label or ("else" if style == "default" else "")
                pairs = tuple((source, t) for t in edge.targets) if top else ()
                if len(edge.targets) == 1:
                    target = ids[edge.targets[0]]
                    self.links.append(_Link(ids[source], target, style, label, pairs=pairs))
                    continue
                forks += 1
                fork = self.key(f"{prefix}{source}/parallel{forks}")
                scope.nodes.append(_Node(fork, "fork", []))
                label = f"{label} (parallel)" if label else "parallel"
                self.links.append(_Link(ids[source], fork, style, label, False, pairs))
                for i, t in enumerate(edge.targets):
                    self.links.append(_Link(fork, ids[t], style, "", pairs=pairs[i : i + 1]))
        for name, node in graph.nodes.items():
            for target in node.backtrack:
                pairs = ((name, target),) if top else ()
                self.links.append(
                    _Link(ids[name], ids[target], "backtrack", "backtrack", True, pairs)
                )
        for name, node in graph.nodes.items():
            # a graph already being drawn further up is not expanded again (recursion)
            if isinstance(node, DelegateNode) and self.expand and node.graph.name not in stack:
                child = _freeze(node.graph)
                sub = self.scope(child, f"{prefix}{name}/", (*stack, child.name), False)
                sub.label = f"{name}: {child.name}"
                scope.clusters.append(sub)
                self.links.append(_Link(ids[name], sub.start, "delegate", "delegates"))
        return scope


def _drawing(graph: GraphLike, run: RunOverlay | None, expand: bool) -> _Drawing:
    frozen = _freeze(graph)
    builder = _Builder(expand)
    root = builder.scope(frozen, "", (frozen.name,), True)
    caption = None
    if run is not None:
        if run.graph != frozen.name:
            raise RenderError(
                f"run {run.run_id} belongs to graph {run.graph!r}, not {frozen.name!r}; "
                f"draw it on the graph it ran"
            )
        caption = run.caption
        _apply_overlay(root, builder.links, run, frozen)
    return _Drawing(frozen.name, caption, root, builder.links)


def _apply_overlay(
    root: _Scope, links: list[_Link], run: RunOverlay, graph: FrozenGraph[Any, Any]
) -> None:
    names = {START: root.start, **{n: n for n in graph.nodes}}
    by_key = {node.key: node for node in root.nodes}
    for name, key in names.items():
        node = by_key.get(key)
        if node is None:  # pragma: no cover - top-level keys always exist
            continue
        count = run.visits.get(name, 0)
        node.visited = count > 0 or name == START
        if count and node.lines:
            node.lines[0] = f"{node.lines[0]} {_TIMES}{count}"
        node.mark = run.mark(name)
        if node.mark is not None:
            node.lines.append(_MARKS[node.mark][3])
    for link in links:
        if link.pairs:
            link.taken = max(run.transitions.get(p, 0) for p in link.pairs)
            fork = by_key.get(link.dst)
            if link.taken and fork is not None and fork.kind == "fork":
                fork.visited = True  # a fork point is on the path when a route through it was


# -- DOT --------------------------------------------------------------------------


def _dot_text(text: str) -> str:
    """``text`` as a DOT quoted string: backslashes, quotes and newlines escaped."""
    text = text.replace("\r\n", "\n")
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch in "\n\r":
            out.append("\\n")
        elif ch < " " or "\x7f" <= ch < "\xa0":
            out.append(" ")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _dot_attrs(attrs: Mapping[str, str]) -> str:
    return "[" + ", ".join(f"{k}={_dot_text(v)}" for k, v in attrs.items()) + "]"


def _dot_node(node: _Node) -> dict[str, str]:
    if node.kind == "start":
        attrs = {"label": "", "shape": "circle", "style": "filled", "fillcolor": "#333333"}
        attrs |= {"color": "#333333", "width": "0.22", "fixedsize": "true"}
    elif node.kind == "fork":
        attrs = {"label": "", "shape": "point", "width": "0.08", "color": "#555555"}
    else:
        shape, style, fill = _KINDS[node.kind]
        attrs = {"label": "\n".join(node.lines), "shape": shape, "style": style}
        attrs |= {"fillcolor": fill, "color": _STROKE[node.kind]}
        if node.tooltip:
            attrs["tooltip"] = node.tooltip
    if node.mark is not None:
        colour, fill, extra, _ = _MARKS[node.mark]
        attrs |= {"color": colour, "penwidth": "3", "style": f"{attrs['style']},{extra}"}
        attrs["fillcolor"] = fill
    elif node.visited:
        attrs |= {"color": _PATH, "penwidth": "2"}
    elif node.visited is False:
        attrs |= {"color": _FADED, "fontcolor": "#757575"}
    return attrs


def _dot_link(link: _Link) -> dict[str, str]:
    attrs: dict[str, str] = {}
    label = link.label
    if link.taken and link.taken > 1 and label:
        label = f"{label} {_TIMES}{link.taken}"
    elif link.taken and link.taken > 1:
        label = f"{_TIMES}{link.taken}"
    if label:
        attrs["label"] = label
    if link.style == "default":
        attrs["style"] = "dashed"
    elif link.style == "error":
        attrs |= {"style": "dashed", "color": _ERROR_EDGE, "fontcolor": _ERROR_EDGE}
    elif link.style == "backtrack":
        attrs |= {"style": "dotted", "color": _BACKTRACK, "fontcolor": _BACKTRACK}
        attrs["constraint"] = "false"
    elif link.style == "delegate":
        attrs |= {"style": "dashed", "color": _DELEGATION, "fontcolor": _DELEGATION}
        attrs["arrowhead"] = "onormal"
    if not link.arrow:
        attrs["arrowhead"] = "none"
    if link.taken:
        attrs |= {"color": _PATH, "fontcolor": _PATH, "penwidth": "2.5"}
    elif link.taken == 0:
        attrs |= {"color": "#BDBDBD", "fontcolor": _FADED}
    return attrs


def _dot_scope(scope: _Scope, out: list[str], depth: int, clusters: list[int]) -> None:
    pad = "  " * depth
    for node in scope.nodes:
        out.append(f"{pad}{_dot_text(node.key)} {_dot_attrs(_dot_node(node))};")
    for sub in scope.clusters:
        clusters[0] += 1
        out.append(f"{pad}subgraph {_dot_text(f'cluster_{clusters[0]}')} {{")
        attrs = {"label": sub.label, "style": "rounded,dashed", "color": _DELEGATION}
        out.append(f"{pad}  graph {_dot_attrs(attrs)};")
        _dot_scope(sub, out, depth + 1, clusters)
        out.append(f"{pad}}}")


def to_dot(
    graph: GraphLike, *, run: RunOverlay | None = None, expand_delegates: bool = False
) -> str:
    """The graph as Graphviz DOT text, built in pure Python (no Graphviz needed).

    Each node kind has its own shape and colour; edge labels show their conditions;
    a default edge beside conditional ones is dashed and labelled "else"; an edge to
    several targets forks at a point; backtrack routes are dotted.

    Args:
        graph: the graph (frozen here) or a frozen graph.
        run: an overlay from :func:`overlay_for` colouring the run's progress.
        expand_delegates: draw each delegated graph as a cluster (recursively).

    Raises:
        GraphDefinitionError: the graph is invalid; the message lists every problem.
        RenderError: ``run`` belongs to another graph.
    """
    drawing = _drawing(graph, run, expand_delegates)
    label = drawing.title if drawing.caption is None else f"{drawing.title}\n{drawing.caption}"
    out = [f"digraph {_dot_text(drawing.title)} {{"]
    attrs = {"label": label, "labelloc": "t", "rankdir": "TB", "fontname": "Helvetica"}
    out.append(f"  graph {_dot_attrs(attrs)};")
    out.append(f"  node {_dot_attrs({'fontname': 'Helvetica', 'fontsize': '11'})};")
    out.append(f"  edge {_dot_attrs({'fontname': 'Helvetica', 'fontsize': '10'})};")
    _dot_scope(drawing.root, out, 1, [0])
    for link in drawing.links:
        attrs = _dot_link(link)
        tail = f" {_dot_attrs(attrs)}" if attrs else ""
        out.append(f"  {_dot_text(link.src)} -> {_dot_text(link.dst)}{tail};")
    out.append("}")
    return "\n".join(out) + "\n"


# -- Mermaid ------------------------------------------------------------------------

_MERMAID_SHAPES = {
    "start": ("((", "))"),
    "fork": ("((", "))"),
    "plan": ("(", ")"),
    "tool": ("{{", "}}"),
    "delegate": ("[[", "]]"),
    "approve": ("{", "}"),
    "end": ("(((", ")))"),
}
_MERMAID_ESCAPE = frozenset('"#&<>`|;')


def _mermaid_text(text: str) -> str:
    """``text`` for a quoted Mermaid label: special characters as ``#code;`` entities."""
    out: list[str] = []
    for ch in text.replace("\r\n", "\n"):
        if ch in "\n\r":
            out.append("<br>")
        elif ch in _MERMAID_ESCAPE:
            out.append(f"#{ord(ch)};")
        elif ch < " " or "\x7f" <= ch < "\xa0":
            out.append(" ")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class _MermaidIds:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.used: set[str] = set()

    def __call__(self, key: str, kind: str) -> str:
        found = self.ids.get(key)
        if found is not None:
            return found
        safe = re.sub(r"\W", "_", key, flags=re.ASCII)
        ident = self.fresh("start" if kind == "start" and key == START else "n_" + safe)
        self.ids[key] = ident
        return ident

    def fresh(self, base: str) -> str:
        ident, n = base, 1
        while ident in self.used:
            n += 1
            ident = f"{base}_{n}"
        self.used.add(ident)
        return ident


def _mermaid_scope(
    scope: _Scope, out: list[str], ids: _MermaidIds, depth: int, styles: list[str]
) -> None:
    pad = "  " * depth
    for node in scope.nodes:
        ident = ids(node.key, node.kind)
        open_, close = _MERMAID_SHAPES[node.kind]
        text = (
            "start"
            if node.kind == "start"
            else " "
            if node.kind == "fork"
            else "\n".join(node.lines)
        )
        out.append(f"{pad}{ident}{open_}{_mermaid_text(text)}{close}")
        styles.append(f"  class {ident} k_{node.kind}")
        if node.mark is not None:
            colour, fill, extra, _ = _MARKS[node.mark]
            dash = ",stroke-dasharray:5 3" if extra == "dashed" else ""
            styles.append(f"  style {ident} fill:{fill},stroke:{colour},stroke-width:3px{dash}")
        elif node.visited and node.kind not in ("start", "fork"):
            styles.append(f"  style {ident} stroke:{_PATH},stroke-width:3px")
        elif node.visited is False:
            styles.append(f"  style {ident} stroke:{_FADED},color:#757575")
    for i, sub in enumerate(scope.clusters, 1):
        cid = ids.fresh(f"c_{ids.ids[scope.start]}_{i}")
        out.append(f"{pad}subgraph {cid} [{_mermaid_text(sub.label)}]")
        out.append(f"{pad}  direction TB")
        _mermaid_scope(sub, out, ids, depth + 1, styles)
        out.append(f"{pad}end")


def to_mermaid(
    graph: GraphLike, *, run: RunOverlay | None = None, expand_delegates: bool = False
) -> str:
    """The graph as a Mermaid flowchart, for Markdown (GitHub renders it).

    Shapes and colours follow the node kinds; node ids are made safe and labels
    escaped, so any node name works.

    Args:
        graph: the graph (frozen here) or a frozen graph.
        run: an overlay from :func:`overlay_for` colouring the run's progress.
        expand_delegates: draw each delegated graph as a subgraph (recursively).

    Raises:
        GraphDefinitionError: the graph is invalid; the message lists every problem.
        RenderError: ``run`` belongs to another graph.
    """
    drawing = _drawing(graph, run, expand_delegates)
    title = drawing.title if drawing.caption is None else f"{drawing.title} — {drawing.caption}"
    out = ["---", f"title: {json.dumps(title, ensure_ascii=False)}", "---", "flowchart TD"]
    ids = _MermaidIds()
    styles: list[str] = []
    _mermaid_scope(drawing.root, out, ids, 1, styles)
    link_styles: dict[str, list[int]] = {}
    for index, link in enumerate(drawing.links):
        dotted = link.style in ("default", "backtrack", "delegate", "error")
        arrow = ("-.->" if link.arrow else "-.-") if dotted else ("-->" if link.arrow else "---")
        label = link.label
        if link.taken and link.taken > 1:
            label = f"{label} {_TIMES}{link.taken}".strip()
        text = f"|{_mermaid_text(label)}|" if label else ""
        out.append(f"  {ids.ids[link.src]} {arrow}{text} {ids.ids[link.dst]}")
        kind = "taken" if link.taken else "skipped" if link.taken == 0 else link.style
        link_styles.setdefault(kind, []).append(index)
    for kind, (_, _, fill) in _KINDS.items():
        out.append(f"  classDef k_{kind} fill:{fill},stroke:{_STROKE[kind]},color:#000")
    out.append("  classDef k_start fill:#333,stroke:#333,color:#fff")
    out.append("  classDef k_fork fill:#555,stroke:#555")
    out.extend(styles)
    colours = {
        "backtrack": f"stroke:{_BACKTRACK},color:{_BACKTRACK}",
        "error": f"stroke:{_ERROR_EDGE},color:{_ERROR_EDGE}",
        "delegate": f"stroke:{_DELEGATION},color:{_DELEGATION}",
        "taken": f"stroke:{_PATH},stroke-width:3px,color:{_PATH}",
        "skipped": f"stroke:#BDBDBD,color:{_FADED}",
    }
    for kind, indexes in link_styles.items():
        if kind in colours:
            out.append(f"  linkStyle {','.join(map(str, indexes))} {colours[kind]}")
    return "\n".join(out) + "\n"


# -- SVG and PNG through Graphviz ----------------------------------------------------


def _missing_dot(fmt: str) -> RenderError:
    return RenderError(
        f"cannot render {fmt.upper()}: Graphviz's `dot` program was not found on PATH. "
        f"{INSTALL_HINT}. The DOT text still works without it: graphorch.to_dot(graph) "
        f"(and graphorch.to_mermaid(graph) for Markdown)."
    )


def _pipe(dot: str, fmt: str) -> bytes:
    if shutil.which("dot") is None:
        raise _missing_dot(fmt)
    try:
        import graphviz  # pyright: ignore[reportMissingTypeStubs]
    except ImportError:  # pragma: no cover - a declared dependency
        raise RenderError(
            f"cannot render {fmt.upper()}: the graphviz Python package is missing; "
            f"`pip install graphviz`. The DOT text still works: graphorch.to_dot(graph)."
        ) from None
    gv = cast(Any, graphviz)
    try:
        return cast(bytes, gv.Source(dot).pipe(format=fmt, engine="dot", quiet=True))
    except gv.ExecutableNotFound:
        raise _missing_dot(fmt) from None
    except gv.CalledProcessError as err:
        stderr = cast(bytes | str | None, err.stderr) or b""
        detail = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        raise RenderError(f"Graphviz's `dot` failed to render {fmt.upper()}: {detail}") from err


def to_svg(
    graph: GraphLike, run: RunOverlay | None = None, *, expand_delegates: bool = False
) -> str:
    """The graph as SVG text (needs Graphviz's ``dot``).

    Raises:
        RenderError: ``dot`` is not installed (the message says how to install it).
    """
    dot = to_dot(graph, run=run, expand_delegates=expand_delegates)
    return _pipe(dot, "svg").decode("utf-8")


def to_png(
    graph: GraphLike, run: RunOverlay | None = None, *, expand_delegates: bool = False
) -> bytes:
    """The graph as PNG bytes (needs Graphviz's ``dot``).

    Raises:
        RenderError: ``dot`` is not installed (the message says how to install it).
    """
    return _pipe(to_dot(graph, run=run, expand_delegates=expand_delegates), "png")


_TextFormat = Literal["svg", "dot", "mmd", "mermaid"]
_EXTENSIONS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot", ".mmd": "mmd"}


@overload
def render(  # pyright: ignore[reportOverlappingOverload]  (a format name is not a path)
    graph: GraphLike,
    target: _TextFormat,
    *,
    run: RunOverlay | None = None,
    expand_delegates: bool = False,
) -> str: ...
@overload
def render(
    graph: GraphLike,
    target: Literal["png"],
    *,
    run: RunOverlay | None = None,
    expand_delegates: bool = False,
) -> bytes: ...
@overload
def render(
    graph: GraphLike,
    target: os.PathLike[str] | str,
    *,
    run: RunOverlay | None = None,
    expand_delegates: bool = False,
) -> Path: ...
def render(
    graph: GraphLike,
    target: os.PathLike[str] | str,
    *,
    run: RunOverlay | None = None,
    expand_delegates: bool = False,
) -> str | bytes | Path:
    """Draw the graph as ``"svg"``, ``"png"``, ``"dot"`` or ``"mmd"``, or into a file.

    Given a format name, returns the content (``bytes`` for PNG, else ``str``). Given
    a path, writes the file chosen by its extension (``.svg``, ``.png``, ``.dot``,
    ``.gv``, ``.mmd``) and returns the path.

    Raises:
        RenderError: unknown format, or SVG/PNG without Graphviz's ``dot`` (the
            message gives the install hint; DOT and Mermaid need nothing installed).
        GraphDefinitionError: the graph is invalid; the message lists every problem.
    """
    path: Path | None = None
    if isinstance(target, str) and target.lower() in ("svg", "png", "dot", "mmd", "mermaid"):
        fmt = target.lower()
    else:
        path = Path(target)
        found = _EXTENSIONS.get(path.suffix.lower())
        if found is None:
            raise RenderError(
                f"cannot tell the format of {str(path)!r} from its extension; "
                f"use .svg, .png, .dot (or .gv) or .mmd"
            )
        fmt = found
    content: str | bytes
    if fmt in ("mmd", "mermaid"):
        content = to_mermaid(graph, run=run, expand_delegates=expand_delegates)
    else:
        content = to_dot(graph, run=run, expand_delegates=expand_delegates)
        if fmt in ("svg", "png"):
            data = _pipe(content, fmt)
            content = data if fmt == "png" else data.decode("utf-8")
    if path is None:
        return content
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path
