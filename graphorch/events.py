"""Typed run events: what happened, in order, to a run.

Events are streamed live with ``async for event in run.events()`` and committed to the
store with the step that produced them, so a run's history can be replayed later.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, cast

from graphorch._record import KwRecord, field

__all__ = [
    "ApprovalDecided",
    "ApprovalRefused",
    "ApprovalRequested",
    "Backtracked",
    "CallResolved",
    "ChildRunStarted",
    "CustomEvent",
    "ErrorRouted",
    "Event",
    "ModelCalled",
    "Retrying",
    "RunCancelled",
    "RunFailed",
    "RunFinished",
    "RunNeedsAttention",
    "RunResumed",
    "RunStarted",
    "RunStopped",
    "RunWaiting",
    "StepFinished",
    "StepStarted",
    "ToolCalled",
    "event_from_data",
]


class Event(KwRecord):
    """Base of every run event.

    Attributes:
        run_id: the run it belongs to.
        step: the run's step count when it happened.
        at: wall-clock time (seconds since the epoch).
    """

    kind: ClassVar[str] = "event"
    stored: ClassVar[bool] = True
    """False for events only streamed live, never committed to the audit log."""
    run_id: str
    step: int
    at: float = field(default_factory=time.time)

    def to_data(self) -> dict[str, Any]:
        """A JSON-ready dict of this event, with its ``kind``."""
        data: dict[str, Any] = {"kind": self.kind}
        data.update(self.__dict__)  # a record's dict holds exactly its fields, in order
        return data


class RunStarted(Event):
    """A run was created from its input (or forked from a checkpoint)."""

    kind: ClassVar[str] = "run_started"
    graph: str
    forked_from: str | None = None


class RunResumed(Event):
    """A process took over a run from its last checkpoint."""

    kind: ClassVar[str] = "run_resumed"
    checkpoint: str


class StepStarted(Event):
    """A node began executing.

    Streamed live only, not stored: it would be committed in the same transaction as
    the step's :class:`StepFinished`, so the audit log would learn nothing from it.
    """

    kind: ClassVar[str] = "step_started"
    stored: ClassVar[bool] = False
    node: str


class StepFinished(Event):
    """A node finished; ``changes`` names the fields it changed."""

    kind: ClassVar[str] = "step_finished"
    node: str
    changed: tuple[str, ...]
    next_nodes: tuple[str, ...]
    checkpoint: str | None = None


class Retrying(Event):
    """A node failed an attempt and will be tried again after ``delay`` seconds."""

    kind: ClassVar[str] = "retrying"
    node: str
    attempt: int
    delay: float
    error: str


class Backtracked(Event):
    """A node sent the run back to an earlier node."""

    kind: ClassVar[str] = "backtracked"
    node: str
    to: str
    reason: str


class ErrorRouted(Event):
    """A node failed and the run took its error edge instead of failing."""

    kind: ClassVar[str] = "error_routed"
    node: str
    to: tuple[str, ...]
    error_type: str
    reason: str


class RunWaiting(Event):
    """The run paused for something outside it (a person's approval)."""

    kind: ClassVar[str] = "run_waiting"
    node: str
    reason: str


class RunFinished(Event):
    """The run reached an end node and succeeded."""

    kind: ClassVar[str] = "run_finished"
    node: str
    output: Any = None


class RunFailed(Event):
    """The run failed; ``reason`` says why and ``node`` where."""

    kind: ClassVar[str] = "run_failed"
    node: str | None
    reason: str
    error_type: str


class RunCancelled(Event):
    """The run was cancelled."""

    kind: ClassVar[str] = "run_cancelled"
    reason: str


class RunStopped(Event):
    """This process stopped advancing the run without ending it (lease lost)."""

    kind: ClassVar[str] = "run_stopped"
    reason: str


class CustomEvent(Event):
    """An event a node emitted with ``ctx.emit(name, **data)``."""

    kind: ClassVar[str] = "custom"
    node: str
    name: str
    data: dict[str, Any]


class ToolCalled(Event):
    """Audit: a tool call and its outcome.

    Attributes:
        role: the role the run acted under.
        node: the node that made the call.
        tool: the tool.
        key: the call's idempotency key.
        args: the arguments, after the redaction hook.
        outcome: ``succeeded``, ``failed``, ``replayed`` or ``denied``.
        decision: the policy decision (``allow`` or the refusing rule).
        duration: seconds the call took (0 when replayed or denied).
        error: what went wrong, if anything.
    """

    kind: ClassVar[str] = "tool_called"
    role: str
    node: str
    tool: str
    key: str
    args: dict[str, Any]
    outcome: str
    decision: str
    duration: float = 0.0
    error: str | None = None


class RunNeedsAttention(Event):
    """The run stopped: a call's outcome is unknown after a crash; a person must say."""

    kind: ClassVar[str] = "run_needs_attention"
    node: str
    tool: str
    key: str
    reason: str


class CallResolved(Event):
    """Audit: an operator marked an interrupted call done or failed."""

    kind: ClassVar[str] = "call_resolved"
    key: str
    tool: str
    outcome: str
    by: str


class ApprovalRequested(Event):
    """Audit: the run asks a person to decide."""

    kind: ClassVar[str] = "approval_requested"
    node: str
    approval_id: str
    prompt: str
    approvers: tuple[str, ...]
    roles: tuple[str, ...]
    tool: str | None = None
    expires_at: float | None = None


class ApprovalDecided(Event):
    """Audit: a person (or the expiry) decided an approval."""

    kind: ClassVar[str] = "approval_decided"
    approval_id: str
    outcome: str
    by: str
    comment: str | None = None
    edited: tuple[str, ...] = ()


class ApprovalRefused(Event):
    """Audit: someone not allowed to decide tried to."""

    kind: ClassVar[str] = "approval_refused"
    approval_id: str
    by: str
    reason: str


class ChildRunStarted(Event):
    """A delegate node started a child run (``index``: its fan-out item)."""

    kind: ClassVar[str] = "child_run_started"
    node: str
    child: str
    index: int = 0


class ModelCalled(Event):
    """Audit: a model call, its outcome and what it cost."""

    kind: ClassVar[str] = "model_called"
    role: str
    node: str
    model: str
    key: str
    outcome: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    duration: float = 0.0
    error: str | None = None


_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        RunResumed,
        StepStarted,
        StepFinished,
        Retrying,
        Backtracked,
        ErrorRouted,
        RunWaiting,
        RunFinished,
        RunFailed,
        RunCancelled,
        RunStopped,
        CustomEvent,
        ToolCalled,
        RunNeedsAttention,
        CallResolved,
        ApprovalRequested,
        ApprovalDecided,
        ApprovalRefused,
        ChildRunStarted,
        ModelCalled,
    )
}


_TUPLES = frozenset({"changed", "next_nodes", "to", "approvers", "roles", "edited"})


def event_from_data(data: dict[str, Any]) -> Event:
    """Rebuild an event from :meth:`Event.to_data` output (e.g. read from a store)."""
    values = dict(data)
    cls = _KINDS.get(values.pop("kind", ""))
    if cls is None:
        raise ValueError(f"unknown event kind in {data!r}")
    for name, value in values.items():
        if isinstance(value, list) and name in _TUPLES:
            values[name] = tuple(cast(list[Any], value))  # JSON has no tuples
    return cls(**values)
