"""Journal records: one row per tool (or model) call, keyed by its idempotency key."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime

from graphorch._record import Record
from graphorch.exceptions import StoreError
from graphorch.types import RunId

__all__ = ["CallStatus", "ToolCallRecord", "check_calls"]


class CallStatus(enum.StrEnum):
    """Where a journaled call stands."""

    STARTED = "started"
    """Begun; no outcome recorded. After a crash its effect is unknown."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ToolCallRecord(Record):
    """A journaled call.

    Attributes:
        key: the idempotency key ``"<run_id>:<seq>:<node>:<index>"``.
        run_id: its run.
        seq: the checkpoint the step making the call started from.
        node: the node making it.
        index: its position among the node's calls in that step.
        tool: the tool (or ``model:<name>`` for model calls).
        args: the arguments as JSON, after the redaction hook.
        status: started, succeeded or failed.
        result: the result as JSON once succeeded.
        error: what went wrong once failed.
        error_type: the error's class name once failed.
        cost: what the call cost.
        started_at: when it began.
        finished_at: when it ended.
        resolved_by: the operator who settled it by hand, if any.
    """

    key: str
    run_id: RunId
    seq: int
    node: str
    index: int
    tool: str
    args: bytes
    status: CallStatus
    started_at: datetime
    result: bytes | None = None
    error: str | None = None
    error_type: str | None = None
    cost: float = 0.0
    finished_at: datetime | None = None
    resolved_by: str | None = None


def check_calls(run_id: str, calls: Sequence[ToolCallRecord]) -> None:
    """Refuse call records of another run than the one being written."""
    for call in calls:
        if call.run_id != run_id:
            raise StoreError(
                f"call {call.key!r} belongs to run {call.run_id}, not to run {run_id} being "
                "written; nothing was written"
            )
