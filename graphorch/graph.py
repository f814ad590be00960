"""Defining graphs: the builder and the frozen, validated graph.

A :class:`Graph` collects nodes and edges. :meth:`Graph.freeze` validates the whole
structure with networkx and returns a :class:`FrozenGraph`, or raises ONE
:class:`~graphorch.GraphDefinitionError` listing every problem found.

The runtime freezes in two halves (:func:`freeze_unchecked`, then
:func:`check_structure`), so that resuming a run whose stored fingerprint matches the
graph skips the structural checks, and the import of networkx they need.

Edges live in ``_edges``, the checks in ``_checks`` (cheap) and ``_structure``
(networkx), fingerprints in ``_fingerprint``, the builder's argument handling in
``_node_args``; this module joins them into the graph and freezes it.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

from pydantic import BaseModel

from graphorch._record import Record

from ._checks import limit_problems, reference_problems, wiring_problems
from ._edges import START, Edge, edge_name, edge_problems, error_types
from ._edges import fire as fire  # re-exported: the runtime routes with it
from ._fingerprint import graph_fingerprint, legacy_graph_fingerprint
from ._node_args import common_fields, name_set
from ._structure import digraph, structure_problems, unapproved_paths
from .exceptions import DefinitionError, GraphDefinitionError
from .nodes import ApproveNode, DelegateNode, EndNode, Node, PlanNode, Retry, ToolNode
from .state import StateSchema

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["START", "Edge", "FrozenGraph", "Graph"]

StateT = TypeVar("StateT", bound=BaseModel)
DepsT = TypeVar("DepsT")
F = TypeVar("F", bound=Callable[..., Any])


class FrozenGraph(Record, Generic[StateT, DepsT]):
    """A validated graph, ready to run. Build one with :meth:`Graph.freeze`.

    Attributes:
        name: the graph's name.
        role: the role its runs act under (for tool allowlists).
        schema: the state schema.
        nodes: every node by name, in the order added.
        edges: each node's outgoing edges in declared order (``START`` included).
        max_steps: the most steps one run may take, or None.
        timeout: the most seconds one run may take, or None.
        fingerprint: a hash of the structure, limits, tools, approvers and delegated
            graphs, to recognise the same graph on resume.
    """

    # two graphs (tools) are the same only if they are the same object
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    name: str
    role: str
    schema: StateSchema[StateT]
    nodes: Mapping[str, Node]
    edges: Mapping[str, tuple[Edge, ...]]
    max_steps: int | None
    timeout: float | None
    fingerprint: str
    source: Graph[StateT, DepsT]
    approval_required: frozenset[str] = frozenset()

    @functools.cached_property
    def tracked_visits(self) -> tuple[str, ...]:
        """Nodes whose visit counts a resumed run needs: those with ``max_visits``
        and those a node may backtrack to."""
        names: dict[str, None] = {}
        for name, node in self.nodes.items():
            if node.max_visits is not None:
                names[name] = None
            names.update(dict.fromkeys(node.backtrack))
        return tuple(names)

    @property
    def state(self) -> type[StateT]:
        """The state model."""
        return cast("type[StateT]", self.schema.model)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Jupyter's rich display: the diagram (SVG when Graphviz is installed)."""
        from .notebook import graph_mimebundle

        return graph_mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        return (
            f"<FrozenGraph {self.name!r}: {len(self.nodes)} nodes, fingerprint {self.fingerprint}>"
        )

    def to_networkx(self) -> nx.DiGraph[str]:
        """The structure as a networkx DiGraph (backtrack routes included)."""
        return digraph(self.nodes, self.edges)


# The frozen graphs whose structure passed the networkx checks, or was proven to have by
# a run's stored fingerprint. Kept beside the immutable records rather than in them.
_CHECKED: weakref.WeakSet[FrozenGraph[Any, Any]] = weakref.WeakSet()


class Graph(Generic[StateT, DepsT]):
    """A workflow: typed nodes joined by conditional edges over a pydantic state.

    Args:
        name: the graph's name (also its role unless ``role=`` is given).
        state: the pydantic model of the run's state.
        role: the role its runs act under; tool allowlists are per role.
        deps: the type of the dependencies injected into ``ctx.deps`` (documentation
            and type checking only).
        max_steps: the most steps one run may take (a stopping rule for cycles).
        timeout: the most seconds one run may take.
    """

    def __init__(
        self,
        name: str,
        *,
        state: type[StateT],
        role: str | None = None,
        deps: type[DepsT] | None = None,
        max_steps: int | None = None,
        timeout: float | None = None,
        description: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise DefinitionError(f"a graph's name must be a non-empty str, got {name!r}")
        self.name = name
        self.schema: StateSchema[StateT] = StateSchema(state)
        self.role = role if role is not None else name
        self.deps = deps
        self.max_steps = max_steps
        self.timeout = timeout
        self.description = description
        self._nodes: dict[str, Node] = {}
        self._edges: dict[str, list[Edge]] = {}
        self._problems: list[str] = []
        self._frozen: FrozenGraph[StateT, DepsT] | None = None
        self._freezing = False
        self._approval_required: set[str] = set()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Jupyter's rich display: the diagram (SVG when Graphviz is installed)."""
        from .notebook import graph_mimebundle

        return graph_mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        return (
            f"<Graph {self.name!r}: {len(self._nodes)} nodes, state={self.schema.model.__name__}>"
        )

    @property
    def state(self) -> type[StateT]:
        """The state model."""
        return cast("type[StateT]", self.schema.model)

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The nodes added so far, by name."""
        return dict(self._nodes)

    # -- adding nodes ----------------------------------------------------------

    def add_node(self, node: Node) -> Node:
        """Add a node built by hand (the builder methods call this)."""
        self._frozen = None
        if not isinstance(node, Node):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise DefinitionError(
                f"graph {self.name!r}: add_node() takes a node (PlanNode, ToolNode, ...), "
                f"got {type(node).__name__}"
            )
        if not isinstance(node.name, str) or not node.name:  # pyright: ignore[reportUnnecessaryIsInstance]
            self._problems.append(
                f"a {node.kind.value} node's name must be a non-empty str, got {node.name!r}"
            )
            return node
        if node.name == START:
            self._problems.append(f"{START!r} is reserved for the start of the graph")
            return node
        if node.name in self._nodes:
            self._problems.append(f"node {node.name!r} is defined twice")
            return node
        self._nodes[node.name] = node
        return node

    @overload
    def plan(self, fn: F, /) -> F: ...
    @overload
    def plan(
        self,
        name: str | None = None,
        fn: None = None,
        /,
        *,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        max_visits: int | None = None,
        backtrack: Iterable[str] | str | None = None,
        description: str | None = None,
    ) -> Callable[[F], F]: ...
    @overload
    def plan(
        self,
        name: str,
        fn: F,
        /,
        *,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        max_visits: int | None = None,
        backtrack: Iterable[str] | str | None = None,
        description: str | None = None,
    ) -> F: ...
    @overload
    def plan(
        self,
        name: str,
        /,
        *,
        prompt: str | Callable[..., Any],
        schema: type[BaseModel],
        result: str | Callable[..., Any] | None = None,
        attempts: int = 3,
        model: str | None = None,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        max_visits: int | None = None,
        backtrack: Iterable[str] | str | None = None,
        description: str | None = None,
    ) -> PlanNode: ...
    def plan(
        self,
        name: Any = None,
        fn: Any = None,
        /,
        *,
        prompt: str | Callable[..., Any] | None = None,
        schema: type[BaseModel] | None = None,
        result: str | Callable[..., Any] | None = None,
        attempts: int = 3,
        model: str | None = None,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        max_visits: int | None = None,
        backtrack: Iterable[str] | str | None = None,
        description: str | None = None,
    ) -> Any:
        """Add a plan node running ``fn(state[, ctx])``; usable as a decorator.

        ``fn`` returns a dict of changes, a new state, None, or :class:`Backtrack`.

        With ``prompt=`` and ``schema=`` instead of a function, the node asks the
        runtime's model (``Runtime(model=...)``) for an answer of that schema, feeding
        validation errors back up to ``attempts`` times, and writes it to ``result``
        (a field, or ``fn(answer, state) -> changes``). Plans (:class:`~graphorch.Plan`)
        naming a tool the role may not use, or arguments that do not fit, are refused.
        """
        common = common_fields(retry, timeout, max_visits, backtrack, description)
        if prompt is not None and fn is None and not callable(name):
            node = PlanNode(
                name=name,
                prompt=prompt,
                schema=schema,
                result=result,
                attempts=attempts,
                model=model,
                **common,
            )
            self.add_node(node)
            return node

        def register(f: Any, node_name: str | None) -> Any:
            label = node_name if node_name is not None else getattr(f, "__name__", None) or "plan"
            self.add_node(PlanNode(name=label, fn=f, **common))
            return f

        if callable(name):
            return register(name, None)
        if fn is not None:
            return register(fn, name)

        def decorator(f: F) -> F:
            return register(f, name)

        return decorator

    def tool(
        self,
        name: Any = None,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        tool: str | None = None,
        args: Callable[[Any], Mapping[str, Any]] | Mapping[str, Any] | None = None,
        result: str | None = None,
        uses: Iterable[str] | str = (),
        retry: Retry | int | None = None,
        timeout: float | None = None,
        max_visits: int | None = None,
        backtrack: Iterable[str] | str | None = None,
        description: str | None = None,
    ) -> Any:
        """Add a tool node: ``g.tool("n", tool="search", args=..., result="field")``
        calls one tool declaratively; ``@g.tool(uses=["search"])`` on a function calls
        tools from code through ``ctx.tools`` (``uses=`` declares which, so approval
        requirements can be proven; it is required for tools that need approval).
        """
        used = (uses,) if isinstance(uses, str) else tuple(uses)
        common = common_fields(retry, timeout, max_visits, backtrack, description)

        def register(f: Callable[..., Any] | None, node_name: str | None) -> Any:
            label = (
                node_name
                if node_name is not None
                else getattr(f, "__name__", None) or tool or "tool"
            )
            self.add_node(
                ToolNode(name=label, tool=tool, args=args, result=result, fn=f, uses=used, **common)
            )
            return f

        if callable(name):
            return register(name, None)
        if fn is not None or tool is not None:
            register(fn, name)
            return fn

        def decorator(f: F) -> F:
            return register(f, name)

        return decorator

    def delegate(
        self,
        name: str,
        /,
        *,
        graph: Graph[Any, Any],
        input: Callable[..., Any] | None = None,
        output: str | Callable[..., Mapping[str, Any]] | None = None,
        each: str | Callable[[Any], Any] | None = None,
        concurrency: int | None = None,
        on_error: Literal["fail_fast", "collect"] = "fail_fast",
        retry: Retry | int | None = None,
        timeout: float | None = None,
        max_visits: int | None = None,
        backtrack: Iterable[str] | str | None = None,
        description: str | None = None,
    ) -> DelegateNode:
        """Add a delegate node starting child runs of ``graph`` (one per item with ``each=``)."""
        node = DelegateNode(
            name=name,
            graph=graph,
            input=input,
            output=output,
            each=each,
            concurrency=concurrency,
            on_error=on_error,
            **common_fields(retry, timeout, max_visits, backtrack, description),
        )
        self.add_node(node)
        return node

    def approve(
        self,
        name: str,
        /,
        *,
        approvers: Iterable[str] = (),
        roles: Iterable[str] = (),
        prompt: str | Callable[[Any], str] | None = None,
        context: Callable[[Any], Mapping[str, Any]] | None = None,
        expires_after: float | None = None,
        decision: str | None = None,
        max_visits: int | None = None,
        description: str | None = None,
    ) -> ApproveNode:
        """Add an approve node: the run waits until an allowed person decides.

        ``approvers=`` and ``roles=`` take a set of names (a single str is one name).
        """
        people, people_ok = name_set(approvers)
        groups, groups_ok = name_set(roles)
        for what, ok, value in (("approvers", people_ok, approvers), ("roles", groups_ok, roles)):
            if not ok:
                self._problems.append(
                    f"node {name!r}: {what}= must be a set of non-empty names, got {value!r}"
                )
        node = ApproveNode(
            name=name,
            approvers=people,
            roles=groups,
            prompt=prompt,
            context=context,
            expires_after=expires_after,
            decision=decision,
            max_visits=max_visits,
            description=description,
        )
        self.add_node(node)
        return node

    def end(
        self,
        name: Any = None,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        output: Callable[..., Any] | None = None,
        description: str | None = None,
    ) -> Any:
        """Add an end node; ``output(state[, ctx])`` (or the decorated function) gives
        the run's output. ``g.end("done")`` ends with no output.
        """

        def register(f: Callable[..., Any] | None, node_name: str | None) -> Any:
            label = node_name if node_name is not None else getattr(f, "__name__", None) or "end"
            self.add_node(EndNode(name=label, output=f, description=description))
            return f

        if callable(name):
            return register(name, None)
        if isinstance(name, str):
            register(fn if fn is not None else output, name)
            return fn

        def decorator(f: F) -> F:
            return register(f, name)

        return decorator

    # -- governance ------------------------------------------------------------

    def require_approval(self, *tools: str | Iterable[str]) -> Graph[StateT, DepsT]:
        """Require that every path from START to a call of these tools passes through
        an approve node (e.g. ``g.require_approval(registry.destructive())``).

        Freezing proves it over the graph's structure, delegated graphs included, or
        fails naming one offending path. At run time a node may only call such a tool
        if it declared it (``tool=`` or ``uses=``).
        """
        self._frozen = None
        for entry in tools:
            names = (entry,) if isinstance(entry, str) else tuple(entry)
            for name in names:
                if not isinstance(name, str) or not name:  # pyright: ignore[reportUnnecessaryIsInstance]
                    self._problems.append(f"require_approval() takes tool names, got {name!r}")
                else:
                    self._approval_required.add(name)
        return self

    @property
    def approval_required(self) -> frozenset[str]:
        """The tools that may only be called after an approve node."""
        return frozenset(self._approval_required)

    # -- edges -----------------------------------------------------------------

    def edge(
        self,
        source: str,
        target: str | Iterable[str],
        *,
        when: Callable[[StateT], bool] | None = None,
        label: str | None = None,
        on_error: type[BaseException] | tuple[type[BaseException], ...] | bool | None = None,
    ) -> Graph[StateT, DepsT]:
        """Add a transition. Edges from one node are tried in the order declared: every
        edge whose ``when`` holds fires (their targets run in parallel); the one edge
        without ``when`` fires only when none did. A list of targets runs them in parallel.

        ``on_error=`` makes an error edge instead: when the node fails (after its
        retries) with one of those exception types (``True``: any error a node can
        recover from, such as a tool error, a failed node or a bad change), the run
        goes there with its state unchanged, and the target sees ``ctx.error``.
        """
        self._frozen = None
        if isinstance(target, str):
            targets: tuple[str, ...] = (target,)
        elif isinstance(target, Iterable):  # pyright: ignore[reportUnnecessaryIsInstance]
            targets = tuple(target)
        else:
            targets = (target,)
        where = edge_name(source, targets)
        self._problems += edge_problems(source, targets, when, label)
        errors = error_types(on_error)
        if on_error is not None and on_error is not False and errors is None:
            self._problems.append(
                f"{where}: on_error= takes an exception class, a tuple of them, or True"
            )
            return self
        if errors is not None and when is not None:
            self._problems.append(f"{where}: an edge takes when= or on_error=, not both")
        if isinstance(source, str) and all(isinstance(t, str) for t in targets):  # pyright: ignore[reportUnnecessaryIsInstance]
            self._edges.setdefault(source, []).append(Edge(source, targets, when, label, errors))
        return self

    # -- freezing --------------------------------------------------------------

    def freeze(self) -> FrozenGraph[StateT, DepsT]:
        """Validate the graph and return its frozen form (cached until it changes).

        Raises:
            GraphDefinitionError: listing every problem, with node names.
        """
        frozen = self._frozen
        if frozen is not None and frozen in _CHECKED:
            return frozen
        self._freezing = True
        try:
            problems = list(self._problems) + self._validate(structure=True)
        finally:
            self._freezing = False
        if problems:
            raise GraphDefinitionError(self.name, problems)
        # a form frozen before without the structural checks passed them now: keep it
        frozen = self._frozen if self._frozen is not None else self._build()
        _CHECKED.add(frozen)
        self._frozen = frozen
        return frozen

    def _freeze_unchecked(self) -> FrozenGraph[StateT, DepsT]:
        """The frozen form after only the checks that need no networkx (the cheap ones).

        The structural checks (reachability, stopping rules, approvals) are left to
        :func:`check_structure`, or skipped by :func:`trust_structure` when a run's
        stored fingerprint proves they passed. A graph with any problem gets the full
        :meth:`freeze`, so its error still lists every problem.
        """
        if self._frozen is not None:
            return self._frozen
        self._freezing = True
        try:
            problems = list(self._problems) + self._validate(structure=False)
        finally:
            self._freezing = False
        if problems:
            return self.freeze()  # raises, listing every problem
        self._frozen = self._build()
        return self._frozen

    def _build(self) -> FrozenGraph[StateT, DepsT]:
        edges = {k: tuple(v) for k, v in self._edges.items()}
        return FrozenGraph(
            name=self.name,
            role=self.role,
            schema=self.schema,
            nodes=MappingProxyType(dict(self._nodes)),
            edges=MappingProxyType(edges),
            max_steps=self.max_steps,
            timeout=self.timeout,
            fingerprint=self._fingerprint(),
            source=self,
            approval_required=frozenset(self._approval_required),
        )

    def _fingerprint(self, _seen: frozenset[int] = frozenset()) -> str:
        return graph_fingerprint(
            self.name,
            self.role,
            self.schema.fields,
            self.max_steps,
            self._nodes,
            self._edges,
            self._approval_required,
            _seen | {id(self)},
        )

    # -- checking --------------------------------------------------------------

    def _validate(self, *, structure: bool) -> list[str]:
        """The graph's problems; with ``structure``, the networkx checks' too."""
        found = limit_problems(self.role, self.max_steps, self.timeout)
        nodes = self._nodes
        fields = set(self.schema.fields)
        for node in nodes.values():
            found += node.problems()
            found += self._delegate_problems(node, structure=structure)
            found += reference_problems(node, nodes, fields, self.schema.model.__name__)
        found += wiring_problems(nodes, self._edges)
        if not structure:
            return found
        return found + structure_problems(nodes, self._edges, self.max_steps, self.unapproved_calls)

    def unapproved_calls(
        self, required: frozenset[str] | None = None, _seen: frozenset[str] = frozenset()
    ) -> dict[str, list[str]]:
        """Tools of ``required`` reachable from START without passing an approve node,
        each with one offending path (node names, delegated graphs spelled inline).
        """
        required = self.approval_required if required is None else required

        def delegated(node: DelegateNode) -> dict[str, list[str]]:
            child = node.graph
            if not isinstance(child, Graph) or child.name in _seen:  # pyright: ignore[reportUnnecessaryIsInstance]
                return {}
            return child.unapproved_calls(required, _seen | {self.name})

        return unapproved_paths(self._nodes, self._edges, required, delegated)

    def _delegate_problems(self, node: Node, *, structure: bool) -> list[str]:
        """The problems of the graph a delegate node starts, found by freezing it."""
        found: list[str] = []
        if isinstance(node, DelegateNode):
            child = node.graph
            # A graph delegating to itself (directly or not) is checked where freezing began.
            if isinstance(child, Graph) and not child._freezing:  # pyright: ignore[reportUnnecessaryIsInstance]
                try:
                    if structure:
                        child.freeze()
                    else:
                        child._freeze_unchecked()  # pyright: ignore[reportPrivateUsage]
                except GraphDefinitionError as err:
                    found += [
                        f"node {node.name!r}: delegated graph {child.name!r} is invalid: {p}"
                        for p in err.problems
                    ]
        return found


def freeze_unchecked(graph: Graph[StateT, DepsT]) -> FrozenGraph[StateT, DepsT]:
    """The runtime's freeze: every check but the structural ones, which wait for
    :func:`check_structure` (a new run) or :func:`trust_structure` (a resumed one).

    Raises:
        GraphDefinitionError: listing every problem, as :meth:`Graph.freeze` does.
    """
    return graph._freeze_unchecked()  # pyright: ignore[reportPrivateUsage]


def check_structure(frozen: FrozenGraph[Any, Any]) -> None:
    """Run the structural checks on a graph frozen without them (once per graph).

    Raises:
        GraphDefinitionError: listing every problem, as :meth:`Graph.freeze` does.
    """
    if frozen in _CHECKED:
        return
    source = frozen.source
    if source._frozen is frozen:  # pyright: ignore[reportPrivateUsage]
        source.freeze()  # validates and marks this very object
        return
    # The graph changed after this form was frozen: check the form, not the graph.
    copy: Graph[Any, Any] = Graph(
        frozen.name,
        state=frozen.state,
        role=frozen.role,
        max_steps=frozen.max_steps,
        timeout=frozen.timeout,
    )
    copy._nodes = dict(frozen.nodes)  # pyright: ignore[reportPrivateUsage]
    copy._edges = {k: list(v) for k, v in frozen.edges.items()}  # pyright: ignore[reportPrivateUsage]
    copy._approval_required = set(frozen.approval_required)  # pyright: ignore[reportPrivateUsage]
    copy.freeze()
    _CHECKED.add(frozen)


def trust_structure(frozen: FrozenGraph[Any, Any]) -> None:
    """Skip the structural checks of a graph (and the graphs it delegates to) whose
    fingerprint equals a stored run's: that run's start proved the same structure."""
    todo = [frozen]
    while todo:
        current = todo.pop()
        if current in _CHECKED:
            continue
        _CHECKED.add(current)
        for node in current.nodes.values():
            if isinstance(node, DelegateNode):
                todo.append(freeze_unchecked(node.graph))


def legacy_fingerprint(frozen: FrozenGraph[Any, Any]) -> str:
    """The fingerprint graphorch stored before it covered limits, tools, approvers and
    delegated graphs, so runs started by an older version can still be resumed."""
    return legacy_graph_fingerprint(
        frozen.name, frozen.schema.fields, frozen.nodes, frozen.edges, frozen.approval_required
    )
