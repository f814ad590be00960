"""Every error graphorch raises, in one tree.

Definition errors mean the graph or its input is wrong and nothing has run or been
stored. Run errors happen while a run advances; they carry the ``run_id`` and, where
one is to blame, the ``node``. Store errors come from the durable layer.

    GraphorchError
    ├── DefinitionError                 the graph or a call's arguments are wrong
    │   ├── GraphDefinitionError        freezing found problems (all listed at once)
    │   └── InputValidationError        input or patch does not fit the state schema
    ├── RunError                        raised while a run advances (run_id, node)
    │   ├── NodeError                   a node function raised (after its retries)
    │   ├── NodeTimeoutError            a node ran past its timeout
    │   ├── EdgeConditionError          a ``when=`` predicate raised
    │   ├── StateUpdateError            a node returned a bad change
    │   │   ├── ConflictingUpdateError  parallel branches wrote one field, no reducer
    │   │   └── UnserializableStateError  a value cannot be checkpointed
    │   ├── RunLimitError               a stopping rule ended the run
    │   │   ├── MaxStepsExceededError
    │   │   ├── VisitLimitExceededError
    │   │   └── RunTimeoutError
    │   ├── RunCancelledError
    │   ├── RunNotActiveError           stepping a run that has already stopped
    │   └── LeaseLostError              another owner took over the run
    └── StoreError                      the durable layer
        ├── RunNotFoundError
        ├── CheckpointNotFoundError
        ├── RunLockedError              another live process owns the run
        ├── IncompatibleGraphError      resuming with a graph that does not fit
        └── DatabaseError               not a graphorch database, corrupt, too new
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CheckpointNotFoundError",
    "ConflictingUpdateError",
    "DatabaseError",
    "DefinitionError",
    "EdgeConditionError",
    "GraphDefinitionError",
    "GraphorchError",
    "IncompatibleGraphError",
    "InputValidationError",
    "LeaseLostError",
    "MaxStepsExceededError",
    "NodeError",
    "NodeTimeoutError",
    "RunCancelledError",
    "RunError",
    "RunLimitError",
    "RunLockedError",
    "RunNotActiveError",
    "RunNotFoundError",
    "RunTimeoutError",
    "StateUpdateError",
    "StoreError",
    "UnserializableStateError",
    "VisitLimitExceededError",
]


class GraphorchError(Exception):
    """Base of every error graphorch raises."""


class DefinitionError(GraphorchError, ValueError):
    """A graph, a node or an argument is defined wrongly; nothing ran."""


class GraphDefinitionError(DefinitionError):
    """Freezing a graph found one or more problems.

    Attributes:
        graph: the graph's name.
        problems: every problem found, each naming the nodes involved.
    """

    def __init__(self, graph: str, problems: Iterable[str]) -> None:
        self.graph = graph
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"graph {graph!r} has {n} problem{'s' if n != 1 else ''}:\n{lines}")


class InputValidationError(DefinitionError):
    """Input, a patch or an edit does not validate against the state schema."""

    def __init__(self, message: str, *, errors: list[str] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)


class RunError(GraphorchError):
    """An error raised while a run advances.

    Attributes:
        run_id: the run it happened in.
        node: the node to blame, if any.
    """

    def __init__(self, message: str, *, run_id: str | None = None, node: str | None = None):
        self.run_id = run_id
        self.node = node
        where: list[str] = []
        if run_id is not None:
            where.append(f"run {run_id}")
        if node is not None:
            where.append(f"node {node!r}")
        prefix = f"[{', '.join(where)}] " if where else ""
        self.reason = message
        super().__init__(prefix + message)


class NodeError(RunError):
    """A node function raised; ``__cause__`` is the original exception."""


class NodeTimeoutError(RunError):
    """A node ran past its ``timeout=``."""


class EdgeConditionError(RunError):
    """An edge's ``when=`` predicate raised."""


class StateUpdateError(RunError):
    """A node returned a change that does not fit the state schema.

    Attributes:
        field: the offending field, if one is to blame.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        node: str | None = None,
        field: str | None = None,
    ):
        self.field = field
        super().__init__(message, run_id=run_id, node=node)


class ConflictingUpdateError(StateUpdateError):
    """Parallel branches wrote the same field and the field has no reducer."""


class UnserializableStateError(StateUpdateError):
    """A state value cannot be serialized to JSON for checkpointing."""


class RunLimitError(RunError):
    """A stopping rule (steps, visits, time) ended the run."""


class MaxStepsExceededError(RunLimitError):
    """The run took more steps than ``max_steps``."""


class VisitLimitExceededError(RunLimitError):
    """A node was entered more often than its ``max_visits``."""


class RunTimeoutError(RunLimitError):
    """The run ran past its ``timeout``."""


class RunCancelledError(RunError):
    """The run was cancelled."""


class RunNotActiveError(RunError):
    """The run has already stopped (or waits for a person) and cannot step."""


class LeaseLostError(RunError):
    """This process lost the run's lease to another owner; it wrote nothing more."""


class StoreError(GraphorchError):
    """An error from the durable store."""


class RunNotFoundError(StoreError, KeyError):
    """No run with that id exists in the store."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(run_id)

    def __str__(self) -> str:
        return f"no run {self.run_id!r} in this store; list runs with `graphorch runs`"


class CheckpointNotFoundError(StoreError, KeyError):
    """No checkpoint with that id or sequence number exists for the run."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class RunLockedError(StoreError):
    """Another live owner holds the run's lease."""


class IncompatibleGraphError(StoreError):
    """The run was started with another graph, or its stored state no longer fits."""


class DatabaseError(StoreError):
    """The file is not a graphorch database, is corrupt, or is from a newer version."""
