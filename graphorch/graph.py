"""Defining graphs: the builder, edges, and the frozen, validated graph.

A :class:`Graph` collects nodes and edges. :meth:`Graph.freeze` validates the whole
structure with networkx and returns a :class:`FrozenGraph`, or raises ONE
:class:`~graphorch.GraphDefinitionError` listing every problem found.

The runtime freezes in two halves (:func:`freeze_unchecked`, then
:func:`check_structure`), so that resuming a run whose stored fingerprint matches the
graph skips the structural checks, and the import of networkx they need.
"""

from __future__ import annotations

import functools
import inspect
import json
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

from pydantic import BaseModel

from graphorch._record import Record

from .exceptions import DefinitionError, EdgeConditionError, GraphDefinitionError
from .nodes import (
    ApprovalOutcome,
    ApproveNode,
    DelegateNode,
    EndNode,
    Node,
    PlanNode,
    Retry,
    ToolNode,
    _arity,  # pyright: ignore[reportPrivateUsage]
    _has_signature,  # pyright: ignore[reportPrivateUsage]
    _is_count,  # pyright: ignore[reportPrivateUsage]
    _is_number,  # pyright: ignore[reportPrivateUsage]
)
from .state import StateSchema

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["START", "Edge", "FrozenGraph", "Graph"]

START = "__start__"
"""The name of the virtual node every run starts from: ``g.edge(go.START, "first")``."""

StateT = TypeVar("StateT", bound=BaseModel)
DepsT = TypeVar("DepsT")
F = TypeVar("F", bound=Callable[..., Any])


class Edge(Record):
    """A transition from ``source`` to one or more ``targets`` (several run in parallel).

    Attributes:
        when: a predicate over the state; None makes this the default edge.
        label: shown in diagrams (else the predicate's name).
        on_error: makes this an error edge: it fires only when the node fails with one
            of these exception types (matched against the error and its cause).
    """

    source: str
    targets: tuple[str, ...]
    when: Callable[[Any], bool] | None = None
    label: str | None = None
    on_error: tuple[type[BaseException], ...] | None = None

    @property
    def is_default(self) -> bool:
        """True when the edge has no condition (and is not an error edge)."""
        return self.when is None and self.on_error is None

    @property
    def is_error(self) -> bool:
        """True for an error edge (``on_error=``)."""
        return self.on_error is not None

    def catches(self, error: BaseException) -> bool:
        """Whether this error edge fires for ``error`` (or the exception that caused it)."""
        if self.on_error is None:
            return False
        cause = error.__cause__
        return isinstance(error, self.on_error) or (
            cause is not None and isinstance(cause, self.on_error)
        )

    @property
    def display_label(self) -> str:
        """The label to show: ``label=``, else the predicate's name, else empty."""
        if self.label is not None:
            return self.label
        if self.on_error is not None:
            return "on " + " | ".join(t.__name__ for t in self.on_error)
        if self.when is None:
            return ""
        name = getattr(self.when, "__name__", "condition")
        return "condition" if name == "<lambda>" else name


def fire(edges: Iterable[Edge], state: Any, source: str) -> list[str]:
    """The targets of the edges that fire for ``state``: every conditional edge whose
    ``when`` holds (in declared order), else the default edge. Error edges and approval
    outcomes are not considered. Empty when nothing fires.

    Raises:
        EdgeConditionError: a predicate raised (naming the edge).
    """
    targets: list[str] = []
    default: tuple[str, ...] = ()
    for edge in edges:
        if edge.on_error is not None or isinstance(edge.when, ApprovalOutcome):
            continue
        if edge.when is None:
            default = edge.targets
            continue
        try:
            fired = edge.when(state)
        except Exception as exc:
            raise EdgeConditionError(
                f"condition {edge.display_label!r} of edge {source!r} -> "
                f"{','.join(edge.targets)!r} raised {type(exc).__name__}: {exc}",
                node=source,
            ) from exc
        if fired:
            targets.extend(edge.targets)
    return targets or list(default)


def _error_types(value: object) -> tuple[type[BaseException], ...] | None:
    """The exception types of ``on_error=`` (True: every recoverable error)."""
    if value is True:
        return (Exception,)
    if isinstance(value, type) and issubclass(value, BaseException):
        return (value,)
    if (
        isinstance(value, tuple)
        and value
        and all(isinstance(t, type) and issubclass(t, BaseException) for t in value)  # pyright: ignore[reportUnknownVariableType]
    ):
        return cast("tuple[type[BaseException], ...]", value)
    return None


def _retry(value: Retry | int | None) -> Retry | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return Retry(attempts=value)
    return cast("Retry | None", value)  # a bool or anything else is refused by Node.problems


def _is_async(fn: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    call: object = getattr(fn, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _edge_name(source: object, targets: Iterable[object]) -> str:
    return f"edge {source!r} -> {', '.join(repr(t) for t in targets)}"


def _names(value: object) -> tuple[frozenset[str], bool]:
    """A set of names from a str (one name) or an iterable of str; False when neither."""
    if isinstance(value, str):
        return frozenset((value,)), True
    if isinstance(value, Iterable):
        items = list(cast(Iterable[object], value))
        if all(isinstance(i, str) and i for i in items):
            return frozenset(cast(list[str], items)), True
    return frozenset[str](), False


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
        return _digraph(self.nodes, self.edges)


# The frozen graphs whose structure passed the networkx checks, or was proven to have by
# a run's stored fingerprint. Kept beside the immutable records rather than in them.
_CHECKED: weakref.WeakSet[FrozenGraph[Any, Any]] = weakref.WeakSet()


def _digraph(nodes: Mapping[str, Node], edges: Mapping[str, Iterable[Edge]]) -> nx.DiGraph[str]:
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

    def _common(
        self,
        retry: Retry | int | None,
        timeout: float | None,
        max_visits: int | None,
        backtrack: Iterable[str] | str | None,
        description: str | None,
    ) -> dict[str, Any]:
        if backtrack is None:
            routes: tuple[str, ...] = ()
        elif isinstance(backtrack, str):
            routes = (backtrack,)
        elif isinstance(backtrack, Iterable):  # pyright: ignore[reportUnnecessaryIsInstance]
            routes = tuple(backtrack)
        else:
            routes = (backtrack,)  # refused by Node.problems, naming the node
        return {
            "retry": _retry(retry),
            "timeout": timeout,
            "max_visits": max_visits,
            "backtrack": routes,
            "description": description,
        }

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
        common = self._common(retry, timeout, max_visits, backtrack, description)
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
        common = self._common(retry, timeout, max_visits, backtrack, description)

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
            **self._common(retry, timeout, max_visits, backtrack, description),
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
        people, people_ok = _names(approvers)
        groups, groups_ok = _names(roles)
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
        where = _edge_name(source, targets)
        if not isinstance(source, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            self._problems.append(f"{where}: the source must be a node's name (str)")
        if not targets:
            self._problems.append(f"edge from {source!r} has no target")
        for t in targets:
            if not isinstance(t, str):  # pyright: ignore[reportUnnecessaryIsInstance]
                self._problems.append(f"{where}: a target must be a node's name (str), got {t!r}")
        if when is not None and not callable(when):
            self._problems.append(
                f"{where}: when= must be a function of the state, got {type(when).__name__}"
            )
        elif when is not None and _is_async(when):
            self._problems.append(
                f"{where}: when= must be a plain function; {getattr(when, '__name__', 'it')} "
                f"is async, and a coroutine would always count as true"
            )
        elif when is not None and _has_signature(when) and _arity(when) != 1:
            self._problems.append(
                f"{where}: when= must take exactly one argument (the state), "
                f"{getattr(when, '__name__', 'it')} takes {_arity(when)}"
            )
        if label is not None and not isinstance(label, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            self._problems.append(f"{where}: label= must be a str, got {type(label).__name__}")
        errors = _error_types(on_error)
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
        # Everything the structural checks depend on is in here (a resumed run whose
        # fingerprint matches skips them), and everything else that changes how a run
        # goes: limits, the tools a node calls, who approves, delegated graphs.
        seen = _seen | {id(self)}
        nodes: list[list[Any]] = []
        for name, node in self._nodes.items():
            entry: list[Any] = [name, node.kind.value, list(node.backtrack), node.max_visits]
            if isinstance(node, ToolNode):
                entry += [node.tool, list(node.uses)]
            elif isinstance(node, ApproveNode):
                entry += [sorted(node.approvers), sorted(node.roles)]
            elif isinstance(node, DelegateNode):
                child = node.graph
                # a graph delegating back to one being fingerprinted is named, not expanded
                entry.append(
                    ["cycle", child.name] if id(child) in seen else child._fingerprint(seen)
                )
            nodes.append(entry)
        doc = {
            "graph": self.name,
            "role": self.role,
            "state": list(self.schema.fields),
            "max_steps": self.max_steps,
            "nodes": nodes,
            "approval_required": sorted(self._approval_required),
            "edges": [
                [source, list(e.targets), e.is_default, e.is_error, *_condition(e)]
                for source, outgoing in self._edges.items()
                for e in outgoing
            ],
        }
        return _hash(doc)

    def _graph_problems(self) -> list[str]:
        found: list[str] = []
        if not isinstance(self.role, str) or not self.role:  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"role= must be a non-empty str, got {self.role!r}")
        if self.max_steps is not None and (not _is_count(self.max_steps) or self.max_steps < 1):
            found.append(f"max_steps= must be an int >= 1, got {self.max_steps!r}")
        if self.timeout is not None and (not _is_number(self.timeout) or self.timeout <= 0):
            found.append(f"timeout= must be a positive number of seconds, got {self.timeout!r}")
        return found

    def _validate(self, *, structure: bool) -> list[str]:
        """The graph's problems; with ``structure``, the networkx checks' too."""
        found = self._graph_problems()
        nodes = self._nodes
        fields = set(self.schema.fields)
        for node in nodes.values():
            found += node.problems()
            found += self._field_problems(node, fields, structure=structure)
            for target in node.backtrack:
                if isinstance(target, str) and target not in nodes:  # pyright: ignore[reportUnnecessaryIsInstance]
                    found.append(f"node {node.name!r}: backtrack= names unknown node {target!r}")
        if not any(isinstance(n, EndNode) for n in nodes.values()):
            found.append("the graph has no end node; add one with g.end('done')")
        if START not in self._edges:
            found.append(
                f"nothing leaves START; add g.edge(go.START, {next(iter(nodes), 'first')!r})"
            )
        known = set(nodes) | {START}
        for source, outgoing in self._edges.items():
            if source not in known:
                found.append(f"edge from unknown node {source!r}")
            defaults = [e for e in outgoing if e.is_default]
            if outgoing and all(e.is_error for e in outgoing) and source in nodes:
                found.append(
                    f"node {source!r} has only error edges; add an edge for when it succeeds"
                )
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
        for name in self._dead_ends():
            found.append(f"node {name!r} has no outgoing edge and is not an end node")
        return found + self._structure_problems() if structure else found

    def _dead_ends(self) -> set[str]:
        return {
            name
            for name, node in self._nodes.items()
            if not isinstance(node, EndNode) and not self._edges.get(name)
        }

    def _structure_problems(self) -> list[str]:
        """The checks over the whole structure, with networkx: reachability, ends,
        approvals and stopping rules (slow to import, so skipped when trusted)."""
        import networkx as nx

        found: list[str] = []
        nodes = self._nodes
        known = set(nodes) | {START}
        dead_ends = self._dead_ends()
        g = _digraph(nodes, {k: v for k, v in self._edges.items() if k in known})
        g.remove_nodes_from([n for n in list(g.nodes) if n not in known])
        g.remove_edges_from(list(g.in_edges(START)))
        if START in self._edges:
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
            if name in reachable and name not in can_end and name not in dead_ends:
                found.append(f"node {name!r} cannot reach any end node")
        found += self._approval_problems(g)
        if self.max_steps is None:
            for scc in nx.strongly_connected_components(g):
                members = sorted(scc)
                looped = len(members) > 1 or g.has_edge(members[0], members[0])
                if looped and not any(
                    n in nodes and nodes[n].max_visits is not None for n in members
                ):
                    found.append(
                        f"cycle through {', '.join(map(repr, members))} has no stopping rule; "
                        f"set max_visits= on one of its nodes or max_steps= on the graph"
                    )
        return found

    def unapproved_calls(
        self, required: frozenset[str] | None = None, _seen: frozenset[str] = frozenset()
    ) -> dict[str, list[str]]:
        """Tools of ``required`` reachable from START without passing an approve node,
        each with one offending path (node names, delegated graphs spelled inline).
        """
        import networkx as nx

        required = self.approval_required if required is None else required
        if not required:
            return {}
        g = _digraph(self._nodes, {k: v for k, v in self._edges.items()})
        g.remove_edges_from(list(g.in_edges(START)))
        g.remove_nodes_from([n for n, node in self._nodes.items() if isinstance(node, ApproveNode)])
        found: dict[str, list[str]] = {}
        for name, node in self._nodes.items():
            if name not in g or not nx.has_path(g, START, name):
                continue
            calls: dict[str, str] = {}
            if isinstance(node, ToolNode):
                calls = {t: f"{name} (calls {t!r})" for t in node.calls if t in required}
            elif isinstance(node, DelegateNode) and isinstance(node.graph, Graph):  # pyright: ignore[reportUnnecessaryIsInstance]
                child = node.graph
                if child.name not in _seen:
                    inner = child.unapproved_calls(required, _seen | {self.name})
                    calls = {
                        t: f"{name} (delegates to {child.name!r}: {' -> '.join(p)})"
                        for t, p in inner.items()
                    }
            for tool, last in calls.items():
                if tool not in found:
                    path: list[str] = nx.shortest_path(g, START, name)  # pyright: ignore[reportUnknownMemberType, reportAssignmentType]
                    found[tool] = ["START", *path[1:-1], last]
        return found

    def _approval_problems(self, g: nx.DiGraph[str]) -> list[str]:
        del g  # the proof works on its own copy without approve nodes
        return [
            f"tool {tool!r} needs approval but is reachable without passing an approve "
            f"node: {' -> '.join(path)}"
            for tool, path in sorted(self.unapproved_calls().items())
        ]

    def _field_problems(self, node: Node, fields: set[str], *, structure: bool) -> list[str]:
        named: list[tuple[str, object]] = []
        found: list[str] = []
        if isinstance(node, ToolNode):
            named.append(("result=", node.result))
        elif isinstance(node, DelegateNode):
            named += [("output=", node.output), ("each=", node.each)]
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
        elif isinstance(node, ApproveNode):
            named.append(("decision=", node.decision))
        return found + [
            f"node {node.name!r}: {what} names {value!r}, which is not a field of "
            f"{self.schema.model.__name__} (fields: {', '.join(sorted(fields))})"
            for what, value in named
            if isinstance(value, str) and value not in fields
        ]


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
    return _hash(
        {
            "graph": frozen.name,
            "state": list(frozen.schema.fields),
            "nodes": [
                [n, node.kind.value, list(node.backtrack)] for n, node in frozen.nodes.items()
            ],
            "approval_required": sorted(frozen.approval_required),
            "edges": [
                [source, list(e.targets), e.is_default, e.is_error]
                for source, outgoing in frozen.edges.items()
                for e in outgoing
            ],
        }
    )
