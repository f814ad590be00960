"""Edges and their conditions: the :class:`Edge` record, which edges fire for a state,
and the checks on ``Graph.edge()``'s arguments.

Also home to :data:`START`, the virtual node the first edges leave, so the checks can
name it without importing ``graph`` (which re-exports it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from graphorch._record import Record

from .exceptions import EdgeConditionError
from .nodes import (
    ApprovalOutcome,
    _arity,  # pyright: ignore[reportPrivateUsage]
    _has_signature,  # pyright: ignore[reportPrivateUsage]
    is_async_callable,
)

__all__ = ["START", "Edge", "edge_name", "edge_problems", "error_types", "fire"]

START = "__start__"
"""The name of the virtual node every run starts from: ``g.edge(go.START, "first")``."""


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


def error_types(value: object) -> tuple[type[BaseException], ...] | None:
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


def edge_name(source: object, targets: Iterable[object]) -> str:
    """How problems name an edge: ``edge 'a' -> 'b', 'c'``."""
    return f"edge {source!r} -> {', '.join(repr(t) for t in targets)}"


def edge_problems(
    source: str,
    targets: tuple[str, ...],
    when: Callable[[Any], bool] | None,
    label: str | None,
) -> list[str]:
    """The problems of ``Graph.edge()``'s source, targets, ``when=`` and ``label=``
    (``on_error=`` is checked by the caller, which may then drop the edge)."""
    found: list[str] = []
    where = edge_name(source, targets)
    if not isinstance(source, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        found.append(f"{where}: the source must be a node's name (str)")
    if not targets:
        found.append(f"edge from {source!r} has no target")
    for t in targets:
        if not isinstance(t, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"{where}: a target must be a node's name (str), got {t!r}")
    if when is not None and not callable(when):
        found.append(f"{where}: when= must be a function of the state, got {type(when).__name__}")
    elif when is not None and is_async_callable(when):
        found.append(
            f"{where}: when= must be a plain function; {getattr(when, '__name__', 'it')} "
            f"is async, and a coroutine would always count as true"
        )
    elif when is not None and _has_signature(when) and _arity(when) != 1:
        found.append(
            f"{where}: when= must take exactly one argument (the state), "
            f"{getattr(when, '__name__', 'it')} takes {_arity(when)}"
        )
    if label is not None and not isinstance(label, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        found.append(f"{where}: label= must be a str, got {type(label).__name__}")
    return found
