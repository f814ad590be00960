"""Approval records: a request for a person's decision, and the decision."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from graphorch.types import RunId

__all__ = ["ApprovalRecord", "ApprovalStatus"]


class ApprovalStatus(enum.StrEnum):
    """Where an approval stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
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
