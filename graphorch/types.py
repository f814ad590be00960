"""Small shared types: ids and run statuses."""

from __future__ import annotations

import enum
import os
from typing import NewType

__all__ = ["CheckpointId", "RunId", "RunStatus", "new_run_id"]

RunId = NewType("RunId", str)
"""The id of a run (16 hex characters)."""

CheckpointId = NewType("CheckpointId", str)
"""The id of a checkpoint: ``"<run_id>:<seq>"``."""


def new_run_id() -> RunId:
    """A fresh random run id."""
    return RunId(os.urandom(8).hex())


def checkpoint_id(run_id: str, seq: int) -> CheckpointId:
    """The id of checkpoint ``seq`` of ``run_id``."""
    return CheckpointId(f"{run_id}:{seq}")


class RunStatus(enum.StrEnum):
    """Where a run stands. Every status but ``running`` carries a reason."""

    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NEEDS_ATTENTION = "needs_attention"

    @property
    def is_terminal(self) -> bool:
        """True when the run can never advance again (resume will not help)."""
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
