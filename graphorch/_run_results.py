"""The records a run hands back: :class:`StepResult` for one step and :class:`RunResult`
once :meth:`~graphorch.runs.Run.wait` returns, with their rich notebook display (drawn
by :mod:`graphorch.notebook`, imported only when a notebook asks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel

from graphorch._record import Record

from .exceptions import RunCancelledError, RunError
from .types import CheckpointId, RunId, RunStatus

__all__ = ["RunResult", "StateT", "StepResult"]

StateT = TypeVar("StateT", bound=BaseModel)


class StepResult(Record):
    """What one step did.

    Attributes:
        run_id: the run.
        nodes: the node(s) that ran (several for a parallel superstep).
        changes: the fields that changed, with their new values.
        next_nodes: what runs next (empty once the run stopped).
        status: the run's status after the step.
        step: the run's step count after the step.
        checkpoint: the checkpoint committed, or None if the step failed.
        error: the error that stopped the run, if any.
    """

    run_id: RunId
    nodes: tuple[str, ...]
    changes: Mapping[str, Any]
    next_nodes: tuple[str, ...]
    status: RunStatus
    step: int
    checkpoint: CheckpointId | None
    error: RunError | None = None

    @property
    def node(self) -> str:
        """The node that ran (names joined with "," for a parallel superstep)."""
        return ",".join(self.nodes)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Jupyter's rich display: what the step changed."""
        from .notebook import step_mimebundle

        return step_mimebundle(self, include, exclude)


class RunResult(Record, Generic[StateT]):
    """Where a run stands once :meth:`Run.wait` returns.

    Attributes:
        run_id: the run.
        status: succeeded, failed, cancelled, waiting or needs_attention.
        state: the state at the last committed checkpoint.
        output: the end node's output (None unless succeeded).
        reason: why it stopped.
        node: the node to blame or waiting, if any.
        steps: steps taken.
        error: the error that stopped it, if it failed in this process.
    """

    run_id: RunId
    status: RunStatus
    state: StateT
    output: Any
    reason: str | None
    node: str | None
    steps: int
    error: RunError | None = None

    @property
    def succeeded(self) -> bool:
        """True when the run reached an end node."""
        return self.status is RunStatus.SUCCEEDED

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Jupyter's rich display: status, output and final state."""
        from .notebook import result_mimebundle

        return result_mimebundle(self, include, exclude)

    def raise_for_status(self) -> Self:
        """Raise the run's error if it failed or was cancelled; return self otherwise."""
        if self.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            if self.error is not None:
                raise self.error
            cls = RunCancelledError if self.status is RunStatus.CANCELLED else RunError
            raise cls(self.reason or self.status.value, run_id=self.run_id, node=self.node)
        return self
