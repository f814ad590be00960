"""The Context a node function receives next to the state."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from graphorch._record import Record

from .types import RunId

if TYPE_CHECKING:
    from .planning import ModelBox
    from .toolbox import ToolBox

__all__ = ["BacktrackInfo", "Context", "ErrorInfo"]

DepsT = TypeVar("DepsT")


class ErrorInfo(Record):
    """Why the run came here along an error edge: ``source`` failed with ``error_type``."""

    source: str
    error_type: str
    reason: str


class BacktrackInfo(Record):
    """Why a node is running again: ``source`` sent the run back, because ``reason``."""

    source: str
    reason: str


class Context(Generic[DepsT]):
    """What a node may know and use besides the state.

    Attributes:
        run_id: the run being advanced.
        graph: the graph's name.
        role: the role the run acts under.
        node: the node running.
        step: the run's step count before this step.
        attempt: 1 on the first try, then 2, 3, ... on retries.
        deps: the dependencies (HTTP clients, connections, ...) the runtime injected.
            They are never checkpointed; a resumed run gets fresh ones.
        backtracked: set when a later node sent the run back here, saying why.
        error: set when the run came here along an error edge, saying what failed.
    """

    __slots__ = (
        "_emit",
        "_model",
        "_model_factory",
        "_tools",
        "_tools_factory",
        "attempt",
        "backtracked",
        "deps",
        "error",
        "graph",
        "node",
        "role",
        "run_id",
        "step",
    )

    def __init__(
        self,
        *,
        run_id: RunId,
        graph: str,
        role: str,
        node: str,
        step: int,
        attempt: int,
        deps: DepsT,
        backtracked: BacktrackInfo | None,
        emit: Callable[[str, str, dict[str, Any]], None],
        tools: Callable[[], ToolBox] | None = None,
        error: ErrorInfo | None = None,
        model: Callable[[], ModelBox] | None = None,
    ) -> None:
        self.run_id = run_id
        self.graph = graph
        self.role = role
        self.node = node
        self.step = step
        self.attempt = attempt
        self.deps = deps
        self.backtracked = backtracked
        self._emit = emit
        self.error = error
        self._tools_factory = tools
        self._tools: ToolBox | None = None
        self._model_factory = model
        self._model: ModelBox | None = None

    @property
    def model(self) -> ModelBox:
        """The runtime's model; every call is journaled, budgeted and audited."""
        if self._model is None:
            if self._model_factory is None:
                raise RuntimeError("this context has no model")
            self._model = self._model_factory()
        return self._model

    @property
    def tools(self) -> ToolBox:
        """The tools this run's role may call; every call is policed and journaled."""
        if self._tools is None:
            if self._tools_factory is None:
                raise RuntimeError("this context has no tools")
            self._tools = self._tools_factory()
        return self._tools

    def emit(self, name: str, **data: Any) -> None:
        """Emit a custom event, streamed live and committed with the step."""
        self._emit(self.node, name, data)

    def __repr__(self) -> str:
        return f"<Context run={self.run_id} node={self.node!r} step={self.step} attempt={self.attempt}>"
