"""The CLI's knowledge of graphs: importing ``MODULE:GRAPH`` and remembering it.

A graph's module may also define (each either the object or a function returning it):

- ``tools``: a :class:`~graphorch.ToolRegistry` for the runs,
- ``guardrails``: the :class:`~graphorch.Guardrails` applied to every tool call,
- ``roles_of``: a function ``person -> roles`` for approve nodes' ``roles=``,
- ``model``: the :class:`~graphorch.ChatModel` plan nodes and ``ctx.model`` use,
- ``example_input``: the input ``graphorch run`` uses when ``--input`` is not given.

To resume or approve runs of a graph in a later process, the CLI records each graph's
``module:attribute`` in a small table of the database (``graphorch_cli_graphs``); the
seed examples are known without it.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast

import graphorch as go
from graphorch.exceptions import GraphorchError
from graphorch.graph import freeze_unchecked
from graphorch.nodes import DelegateNode

__all__ = ["CliError", "Target", "builtin_targets", "load_target", "lookup", "remember"]

SIDECAR = "graphorch_cli_graphs"


class CliError(GraphorchError):
    """A usage or input error: one line for the user and a hint (exit code 2)."""

    def __init__(self, message: str, hint: str | None = None, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


@dataclass
class Target:
    """An imported graph with what its module offers the runtime."""

    spec: str
    graph: go.FrozenGraph[Any, Any]
    module: ModuleType
    tools: go.ToolRegistry | None = None
    guardrails: go.Guardrails | None = None
    roles_of: Callable[[str], Iterable[str]] | None = None
    model: go.ChatModel | None = None
    children: dict[str, go.FrozenGraph[Any, Any]] = field(default_factory=lambda: {})

    def example_input(self) -> Any:
        """The module's ``example_input()``, or None."""
        fn = getattr(self.module, "example_input", None)
        return fn() if callable(fn) else None


def _call_or_value(module: ModuleType, name: str) -> Any:
    value = getattr(module, name, None)
    if value is None:
        return None
    if (
        callable(value)
        and not isinstance(value, go.ToolRegistry | go.Guardrails)
        and name != "roles_of"
    ):
        return value()
    return value


def _model(module: ModuleType) -> go.ChatModel | None:
    value = getattr(module, "model", None)
    if value is not None and not isinstance(value, go.ChatModel) and callable(value):
        value = value()
    return value if isinstance(value, go.ChatModel) else None


def _children(graph: go.FrozenGraph[Any, Any]) -> dict[str, go.FrozenGraph[Any, Any]]:
    found: dict[str, go.FrozenGraph[Any, Any]] = {}
    todo = [graph]
    while todo:
        current = todo.pop()
        for node in current.nodes.values():
            if isinstance(node, DelegateNode):
                # checked along with the root when it was, else when a run needs it
                child = freeze_unchecked(node.graph)
                if child.name not in found and child.name != graph.name:
                    found[child.name] = child
                    todo.append(child)
    return found


def load_target(spec: str, *, check: bool = True) -> Target:
    """Import ``module:attribute`` (the attribute may be dotted, or a function
    returning a graph) and freeze the graph.

    Args:
        check: validate the whole structure now. Without, only the definition checks
            run; the runtime does the rest when a run starts, and a resumed run whose
            graph is unchanged skips them (and the slow import of networkx).

    Raises:
        CliError: malformed spec, a module that does not import, a missing attribute,
            or not a graph.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(
            f"{spec!r} is not MODULE:GRAPH",
            "name the graph like graphorch.examples.support:graph",
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # like `python -m`, so local modules import
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CliError(
            f"cannot import module {module_name!r}: {err}",
            "check the module path; it must be importable from the current directory",
        ) from err
    except Exception as err:
        raise CliError(
            f"importing module {module_name!r} raised {type(err).__name__}: {err}",
            "run `python -c 'import " + module_name + "'` to see the full error",
        ) from err
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise CliError(
                f"module {module_name!r} has no attribute {attr!r}",
                "name the graph object, e.g. my_module:graph",
            )
        value = getattr(value, part)
    if callable(value) and not isinstance(value, go.Graph | go.FrozenGraph):
        value = value()
    if not isinstance(value, go.Graph | go.FrozenGraph):
        raise CliError(
            f"{spec} is a {type(value).__name__}, not a graphorch Graph",
            "point MODULE:GRAPH at a go.Graph object",
        )
    graph = cast("go.Graph[Any, Any] | go.FrozenGraph[Any, Any]", value)
    if isinstance(graph, go.FrozenGraph):
        frozen: go.FrozenGraph[Any, Any] = graph
    else:
        frozen = graph.freeze() if check else freeze_unchecked(graph)
    roles_of = getattr(module, "roles_of", None)
    return Target(
        spec=spec,
        graph=frozen,
        module=module,
        tools=_typed(_call_or_value(module, "tools"), go.ToolRegistry),
        guardrails=_typed(_call_or_value(module, "guardrails"), go.Guardrails),
        roles_of=cast(Callable[[str], Iterable[str]], roles_of) if callable(roles_of) else None,
        model=_model(module),
        children=_children(frozen),
    )


T = TypeVar("T")


def _typed(value: Any, cls: type[T]) -> T | None:
    return value if isinstance(value, cls) else None


def builtin_targets() -> dict[str, str]:
    """The seed examples' graphs (and their agents) by graph name."""
    from graphorch.examples import EXAMPLES

    found: dict[str, str] = {}
    for spec in EXAMPLES.values():
        target = load_target(spec, check=False)  # only their names are needed
        found[target.graph.name] = spec
        module = spec.split(":")[0]
        for name in target.children:
            found.setdefault(name, f"{module}:{name}")
    return found


def _connect(db: str) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SIDECAR} (graph TEXT PRIMARY KEY, target TEXT NOT NULL, updated_at TEXT)"
    )
    return conn


def remember(db: str, graph: str, spec: str) -> None:
    """Record that runs of ``graph`` come from ``spec`` (call only once the store
    created the database)."""
    conn = _connect(db)
    try:
        conn.execute(
            f"INSERT INTO {SIDECAR} (graph, target, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(graph) DO UPDATE SET target = excluded.target, updated_at = excluded.updated_at",
            (graph, spec, datetime.now(UTC).isoformat()),
        )
    finally:
        conn.close()


def lookup(db: str, graph: str) -> str | None:
    """The ``module:attribute`` recorded for ``graph``, else the built-in one, else None."""
    conn = sqlite3.connect(Path(db).resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(f"SELECT target FROM {SIDECAR} WHERE graph = ?", (graph,)).fetchone()
    except sqlite3.OperationalError:
        row = None  # no table yet: nothing recorded
    finally:
        conn.close()
    if row is not None:
        return str(row[0])
    return builtin_targets().get(graph)
