"""Human approval: runs that wait for a person, and the people allowed to decide.

An approve node (or a destructive tool call in read-only mode) records a pending
:class:`~graphorch.ApprovalRecord` and the run becomes ``waiting``; nothing is held in
memory, so the process may exit. A decision is given through the runtime with the
decider's identity; only allowed approvers may decide, exactly one decision wins, and
every request and decision is in the audit log. Any process may then resume the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json, to_jsonable_python

from graphorch._record import replace

from .events import ApprovalDecided, ApprovalRefused, ApprovalRequested
from .exceptions import (
    AlreadyDecidedError,
    ApprovalNotFoundError,
    InputValidationError,
    NotAuthorizedError,
    PolicyDeniedError,
    StateUpdateError,
)
from .nodes import ApproveNode
from .store.approvals import ApprovalRecord, ApprovalStatus
from .types import RunId, RunStatus

if TYPE_CHECKING:
    from .runs import Run
    from .runtime import Runtime

__all__ = ["ApprovalDesk", "Authorizer", "Pause", "WaitForApproval"]

Authorizer = Callable[[str, ApprovalRecord], bool]
"""``authorize(person, approval) -> bool``: your own identity check."""


class Pause(BaseException):
    """Internal: the step must wait for something outside the run.

    A BaseException so that node code catching ``Exception`` around a tool call does
    not swallow the pause.

    Attributes:
        record: an approval to store with the waiting run (None: nothing new).
        reason: what the run waits for, in words.
    """

    def __init__(self, reason: str, record: ApprovalRecord | None = None) -> None:
        self.reason = reason
        self.record = record
        super().__init__(reason)


class WaitForApproval(Pause):
    """Internal: the step waits for a person's decision on ``record``."""

    def __init__(self, record: ApprovalRecord, *, created: bool) -> None:
        who = ", ".join([*record.approvers, *(f"role {r}" for r in record.roles)])
        what = f"the call to {record.tool!r}" if record.tool else f"node {record.node!r}"
        super().__init__(
            f"waiting for {who or 'a person'} to approve {what}", record if created else None
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _expired(record: ApprovalRecord, now: datetime) -> bool:
    return record.expires_at is not None and now >= record.expires_at


class ApprovalDesk:
    """The runtime's approvals: asking, deciding, expiring. One per runtime."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        roles_of: Callable[[str], Iterable[str]] | None = None,
        authorize: Authorizer | None = None,
    ) -> None:
        self._rt = runtime
        self._roles_of = roles_of
        self._authorize = authorize

    # -- asking --------------------------------------------------------------------

    async def run_node(self, run: Run[Any], node: ApproveNode) -> tuple[dict[str, Any], str]:
        """Execute an approve node: the decision's changes and outcome, or wait."""
        approval_id = f"{run.id}:{run.seq}:{node.name}"
        record = await self._settled(approval_id)
        if record is None:
            prompt = node.prompt(run.state) if callable(node.prompt) else node.prompt
            context: Any = node.context(run.state) if node.context is not None else {}
            now = _now()
            record = ApprovalRecord(
                approval_id=approval_id,
                run_id=run.id,
                seq=run.seq,
                node=node.name,
                prompt=prompt or f"approve {node.name!r} of run {run.id}?",
                context=to_json(to_jsonable_python(context, fallback=repr)),
                approvers=tuple(sorted(node.approvers)),
                roles=tuple(sorted(node.roles)),
                requested_at=now,
                status=ApprovalStatus.PENDING,
                expires_at=None
                if node.expires_after is None
                else now + timedelta(seconds=node.expires_after),
            )
            raise WaitForApproval(record, created=True)
        if record.status is ApprovalStatus.PENDING:
            raise WaitForApproval(record, created=False)
        changes: dict[str, Any] = {}
        if record.status is ApprovalStatus.APPROVED and record.edits is not None:
            changes.update(json.loads(record.edits))
        if node.decision is not None:
            changes[node.decision] = record.status.value
        return changes, record.status.value

    async def gate_call(
        self, run: Run[Any], node: str, key: str, tool: str, args: Mapping[str, Any]
    ) -> None:
        """Pause a destructive call in read-only mode until a person decides.

        Returns when approved; raises PolicyDeniedError when rejected or expired.
        """
        guard = self._rt.guardrails
        approval_id = f"{key}:approval"
        record = await self._settled(approval_id)
        if record is None:
            now = _now()
            record = ApprovalRecord(
                approval_id=approval_id,
                run_id=run.id,
                seq=run.seq,
                node=node,
                prompt=f"run {run.id} (read-only) wants to call destructive tool {tool!r}",
                context=to_json({"tool": tool, "args": args}),
                approvers=tuple(sorted(guard.approvers)),
                roles=tuple(sorted(guard.approver_roles)),
                requested_at=now,
                status=ApprovalStatus.PENDING,
                expires_at=None
                if guard.approval_expires_after is None
                else now + timedelta(seconds=guard.approval_expires_after),
                tool=tool,
                call_key=key,
                args=to_json(args),
            )
            raise WaitForApproval(record, created=True)
        if record.status is ApprovalStatus.PENDING:
            raise WaitForApproval(record, created=False)
        if record.status is not ApprovalStatus.APPROVED:
            said = f": {record.comment}" if record.comment else ""
            raise PolicyDeniedError(
                f"the call to {tool!r} was {record.status.value} by {record.decided_by}{said}",
                tool=tool,
                rule="approval",
                run_id=run.id,
                node=node,
                key=key,
            )

    def requested_event(self, run: Run[Any], record: ApprovalRecord) -> ApprovalRequested:
        """The audit row of a new request."""
        return ApprovalRequested(
            run_id=run.id,
            step=run.steps,
            node=record.node,
            approval_id=record.approval_id,
            prompt=record.prompt,
            approvers=record.approvers,
            roles=record.roles,
            tool=record.tool,
            expires_at=None if record.expires_at is None else record.expires_at.timestamp(),
        )

    async def _settled(self, approval_id: str) -> ApprovalRecord | None:
        """The approval, with a pending one past its expiry marked expired first."""
        record = await self._rt.store.get_approval(approval_id)
        if record is not None and record.status is ApprovalStatus.PENDING:
            now = _now()
            if _expired(record, now):
                record = await self._expire(record, now)
        return record

    async def _expire(self, record: ApprovalRecord, now: datetime) -> ApprovalRecord:
        expired = replace(
            record, status=ApprovalStatus.EXPIRED, decided_by="expiry", decided_at=now
        )
        event = ApprovalDecided(
            run_id=record.run_id,
            step=await self._step_of(record.run_id),
            approval_id=record.approval_id,
            outcome="expired",
            by="expiry",
        )
        try:
            await self._rt.store.decide_approval(expired, [event])
        except AlreadyDecidedError:
            found = await self._rt.store.get_approval(record.approval_id)
            assert found is not None
            return found
        return expired

    async def _step_of(self, run_id: RunId) -> int:
        record = await self._rt.store.get_run(run_id)
        stored = await self._rt.store.get_checkpoint(run_id, record.head)
        return int(json.loads(stored.meta).get("steps", 0)) if stored.meta else 0

    # -- deciding ------------------------------------------------------------------

    def may_decide(self, person: str, record: ApprovalRecord) -> bool:
        """Whether ``person`` may decide ``record`` (your ``authorize`` hook, if given)."""
        if self._authorize is not None:
            return bool(self._authorize(person, record))
        if person in record.approvers:
            return True
        if record.roles and self._roles_of is not None:
            return bool(set(self._roles_of(person)) & set(record.roles))
        return False

    async def pending(self, run_id: RunId | None = None) -> list[ApprovalRecord]:
        """Pending approvals, oldest first (expired ones are marked expired, not listed)."""
        now = _now()
        found: list[ApprovalRecord] = []
        for record in await self._rt.store.list_approvals(
            run_id=run_id, status=ApprovalStatus.PENDING
        ):
            if _expired(record, now):
                await self._expire(record, now)
            else:
                found.append(record)
        return found

    async def find(self, run_id: str, approval_id: str | None) -> ApprovalRecord:
        """The approval to decide: by id, or the run's one pending approval."""
        if approval_id is not None:
            record = await self._rt.store.get_approval(approval_id)
            if record is None or record.run_id != run_id:
                raise ApprovalNotFoundError(
                    f"run {run_id} has no approval {approval_id!r}",
                    approval_id=approval_id,
                    run_id=run_id,
                )
            return record
        await self._rt.store.get_run(RunId(run_id))  # RunNotFoundError for a wrong id
        waiting = await self._pending_within(RunId(run_id))
        if not waiting:
            run = await self._rt.store.get_run(RunId(run_id))
            decided = await self._rt.store.list_approvals(run_id=RunId(run_id))
            if decided and decided[-1].seq == run.seq:
                # a decider who arrives just after someone else decided this approval
                raise self._already(decided[-1])
            raise ApprovalNotFoundError(
                f"run {run_id} has no pending approval; list them with "
                f"`graphorch runs --status waiting`",
                run_id=run_id,
            )
        return waiting[0]

    async def _pending_within(self, run_id: RunId) -> list[ApprovalRecord]:
        """Pending approvals of a run, else of its child runs (delegation), depth first."""
        store = self._rt.store
        found = await store.list_approvals(run_id=run_id, status=ApprovalStatus.PENDING)
        if found:
            return found
        for child in await store.list_runs(parent_run=run_id, limit=None):
            if child.status is RunStatus.WAITING:
                found = await self._pending_within(child.run_id)
                if found:
                    return found
        return []

    async def decide(
        self,
        run_id: str,
        *,
        by: str,
        approve: bool,
        comment: str | None = None,
        edits: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> ApprovalRecord:
        """Record one decision; see :meth:`Runtime.approve` and :meth:`Runtime.reject`."""
        if not isinstance(by, str) or not by.strip():  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InputValidationError("a decision needs the decider's identity: by='name'")
        record = await self.find(run_id, approval_id)
        step = await self._step_of(record.run_id)
        if not self.may_decide(by, record):
            allowed = ", ".join([*record.approvers, *(f"role {r}" for r in record.roles)])
            reason = f"{by!r} may not decide this approval (allowed: {allowed or 'nobody'})"
            refused = ApprovalRefused(
                run_id=record.run_id,
                step=step,
                approval_id=record.approval_id,
                by=by,
                reason=reason,
            )
            await self._rt.store.journal(None, [], [refused], run_id=record.run_id)
            raise NotAuthorizedError(
                reason, approval_id=record.approval_id, run_id=record.run_id, node=record.node
            )
        now = _now()
        if record.status is ApprovalStatus.PENDING and _expired(record, now):
            await self._expire(record, now)
            raise AlreadyDecidedError(
                f"approval {record.approval_id} expired at {record.expires_at:%Y-%m-%d %H:%M:%S} "
                f"UTC before {by} decided",
                approval_id=record.approval_id,
                run_id=record.run_id,
                node=record.node,
            )
        if record.status is not ApprovalStatus.PENDING:
            raise self._already(record)
        edit_json: bytes | None = None
        if edits:
            if not approve:
                raise InputValidationError("edits come with an approval, not a rejection")
            edit_json = await self._validate_edits(record, edits)
        decided = replace(
            record,
            status=ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED,
            decided_by=by,
            decided_at=now,
            comment=comment,
            edits=edit_json,
        )
        event = ApprovalDecided(
            run_id=record.run_id,
            step=step,
            approval_id=record.approval_id,
            outcome=decided.status.value,
            by=by,
            comment=comment,
            edited=tuple(edits or ()),
        )
        try:
            await self._rt.store.decide_approval(decided, [event])
        except AlreadyDecidedError:
            latest = await self._rt.store.get_approval(record.approval_id)
            raise self._already(latest or record) from None
        return decided

    @staticmethod
    def _already(record: ApprovalRecord) -> AlreadyDecidedError:
        return AlreadyDecidedError(
            f"approval {record.approval_id} was already {record.status.value} by "
            f"{record.decided_by}",
            approval_id=record.approval_id,
            run_id=record.run_id,
            node=record.node,
        )

    async def _validate_edits(self, record: ApprovalRecord, edits: Mapping[str, Any]) -> bytes:
        if record.tool is not None:
            raise InputValidationError("a paused tool call is approved or rejected, not edited")
        run = await self._rt.store.get_run(record.run_id)
        graph = self._rt.graph_named(run.graph)
        unknown = [k for k in edits if k not in graph.schema.fields]
        if unknown:
            raise InputValidationError(
                f"edits name unknown field(s) {unknown}; {graph.state.__name__} has "
                f"{', '.join(graph.schema.fields)}"
            )
        stored = await self._rt.store.get_checkpoint(record.run_id, record.seq)
        state = graph.schema.load(stored.state)
        try:
            new_state, changed = graph.schema.apply(
                state, [(record.node, dict(edits))], reduce=False
            )
        except StateUpdateError as err:
            raise InputValidationError(f"the edit does not fit the state: {err.reason}") from None
        del new_state
        return to_json(to_jsonable_python(changed))
