"""Approval records: a request for a person's decision, and the decision."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime

from graphorch._record import Record
from graphorch.exceptions import AlreadyDecidedError, ApprovalNotFoundError, StoreError
from graphorch.types import RunId

__all__ = [
    "ApprovalRecord",
    "ApprovalStatus",
    "already_decided",
    "check_approvals",
    "check_decision",
    "decision_refused",
]


class ApprovalStatus(enum.StrEnum):
    """Where an approval stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ApprovalRecord(Record):
    """A request for a person's decision, and (once made) the decision.

    Attributes:
        approval_id: ``"<run_id>:<seq>:<node>"``, or the call's key plus ``":approval"``
            for one destructive tool call paused in read-only mode.
        run_id: the waiting run.
        seq: the checkpoint the run waits at.
        node: the node that asked.
        prompt: what is asked.
        context: what a person needs to decide, as JSON.
        approvers: people allowed to decide.
        roles: roles whose members may decide.
        requested_at: when it was asked.
        expires_at: when it expires, if ever.
        status: pending, approved, rejected or expired.
        tool: for a paused tool call, the tool.
        call_key: for a paused tool call, its idempotency key.
        args: for a paused tool call, its arguments as JSON (after redaction).
        decided_by: who decided.
        decided_at: when.
        comment: what they said.
        edits: state changes made with an approval, as JSON.
    """

    approval_id: str
    run_id: RunId
    seq: int
    node: str
    prompt: str
    context: bytes
    approvers: tuple[str, ...]
    roles: tuple[str, ...]
    requested_at: datetime
    status: ApprovalStatus
    expires_at: datetime | None = None
    tool: str | None = None
    call_key: str | None = None
    args: bytes | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    edits: bytes | None = None


def check_approvals(run_id: str, approvals: Sequence[ApprovalRecord]) -> None:
    """Refuse approval requests of another run than the one being written, or twice
    the same id."""
    seen: set[str] = set()
    for record in approvals:
        if record.run_id != run_id:
            raise StoreError(
                f"approval {record.approval_id!r} belongs to run {record.run_id}, not to run "
                f"{run_id} being written; nothing was written"
            )
        if record.approval_id in seen:
            raise StoreError(f"approval {record.approval_id!r} is given twice; nothing was written")
        seen.add(record.approval_id)


def check_decision(record: ApprovalRecord) -> None:
    """Refuse a "decision" that leaves the approval pending."""
    if ApprovalStatus(record.status) is ApprovalStatus.PENDING:
        raise ValueError(
            f"approval {record.approval_id!r}: a decision is approved, rejected or expired, "
            "not pending"
        )


def decision_refused(record: ApprovalRecord, stored: ApprovalRecord | None) -> Exception | None:
    """Why ``record``'s decision cannot be stored over ``stored`` (None: it can)."""
    if stored is None:
        return ApprovalNotFoundError(
            f"no approval {record.approval_id!r}",
            approval_id=record.approval_id,
            run_id=record.run_id,
            node=record.node,
        )
    if stored.status is not ApprovalStatus.PENDING:
        return already_decided(stored)
    if record.run_id != stored.run_id:
        return StoreError(
            f"approval {record.approval_id!r} belongs to run {stored.run_id}, not "
            f"{record.run_id}; nothing was written"
        )
    return None


def already_decided(stored: ApprovalRecord) -> AlreadyDecidedError:
    """The error for deciding ``stored``, which is no longer pending."""
    by = f" by {stored.decided_by}" if stored.decided_by else ""
    return AlreadyDecidedError(
        f"approval {stored.approval_id} was already {stored.status.value}{by}; nothing was written",
        approval_id=stored.approval_id,
        run_id=stored.run_id,
        node=stored.node,
    )
