"""How a run handle's steps reach the store: direct and queued (pipelined) commits, the
rollback of the handle when a queued commit fails, journal writes of tool calls, the
writes that stop a run (failed, needs attention, cancelled, lease lost), and the lease
that fences them all, kept alive and released. :class:`RunCommits` is a mixin of
:class:`~graphorch.runs.Run`, which owns the state it reads and writes.
"""

from __future__ import annotations

import contextlib
import operator
import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from pydantic_core import to_json

from ._run_results import StepResult
from .context import BacktrackInfo, ErrorInfo
from .events import Event, RunCancelled, RunFailed, RunNeedsAttention, RunStopped
from .exceptions import (
    LeaseLostError,
    NeedsAttentionError,
    RunCancelledError,
    RunError,
)
from .store.approvals import ApprovalRecord
from .store.base import CheckpointWrite, Lease, PipelinedStore, RunUpdate
from .store.journal import ToolCallRecord
from .toolbox import CallLedger
from .types import RunId, RunStatus

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["RunCommits", "_CommitFailed", "_Queued", "_Stop", "_meta", "_now"]

# Commits wait() may have queued and not yet seen durable. Several queued commits of
# one run share a transaction in the writer (group commit); the bound keeps a run of
# CPU-only steps from getting far ahead of its durable history.
_MAX_QUEUED_COMMITS = 64


class _CommitFailed(RunError):
    """Internal: a queued commit failed (not for a lost lease); ``original`` says why.

    It ends the step in flight like a fatal error, so no error edge, retry or
    ``except`` in node code lets a step built on the dropped commits go on; once the
    step is over, ``original`` is raised to the caller as a direct commit's error is.
    """

    def __init__(self, original: BaseException, *, run_id: str) -> None:
        super().__init__(f"a queued commit failed: {original}", run_id=run_id)
        self.original = original


class _Stop(Exception):
    """Internal: ends a step with a run error (carried in ``error``)."""

    def __init__(self, error: RunError, status: RunStatus = RunStatus.FAILED):
        self.error = error
        self.status = status


# what a step changes on its handle, put back if its queued commit fails
_ROLLED_BACK = (
    "state",
    "seq",
    "steps",
    "next_nodes",
    "_backtracked",
    "_error",
    "status",
    "reason",
    "output",
)
_snapshot = operator.attrgetter(*_ROLLED_BACK)


_Queued = tuple[Any, ...]
"""A queued commit and the handle as it was before it (put back if the commit fails):
``(pending, *values of _ROLLED_BACK, visits, calls, cost, budget_error, attention)``,
visits None when no visit count matters to the run. One flat tuple, not a record of
tuples: with many runs stepping at once, each queued commit outlives young-generation
collections, and every object in it is work for the full ones."""
_VISITS = 1 + len(_ROLLED_BACK)  # where the values after _ROLLED_BACK's start


class RunCommits:
    """The store side of :class:`~graphorch.runs.Run`: its commits, journal and lease."""

    # set by Run.__init__
    _rt: Runtime
    id: RunId
    steps: int
    visits: dict[str, int]
    next_nodes: tuple[str, ...]
    status: RunStatus
    reason: str | None
    error_node: str | None
    error: RunError | None
    ledger: CallLedger
    _lease: Lease | None
    _lease_renewed: float
    _pending: list[Event]
    _scope: anyio.CancelScope | None
    _cancel_reason: str | None
    _pipelined: PipelinedStore | None
    _inflight: deque[_Queued]
    _broken: _Stop | None
    _visits_before: dict[str, int] | None

    if TYPE_CHECKING:

        def _publish(self, event: Event) -> None: ...

    @property
    def _lease_ttl(self) -> float:
        return self._rt.lease_ttl

    def _lease_due(self, now: float) -> bool:
        """Whether a third of the lease's time to live has passed since its renewal."""
        return self._lease is not None and now - self._lease_renewed >= self._rt.lease_ttl / 3

    async def _keep_alive(self) -> None:
        """Renew the lease while a step may be in flight (see :mod:`._lease_keeper`).

        Raises:
            LeaseLostError: another owner holds the run now.
        """
        lease = self._lease
        if lease is None:
            return
        renewed = await self._rt.store.renew_lease(lease, self._rt.lease_ttl)
        if self._lease is lease:  # not released or renewed by a step meanwhile
            self._lease = renewed
            self._lease_renewed = time.monotonic()

    async def _renew_lease(self) -> None:
        lease = self._lease
        now = time.monotonic()
        if lease is None or not self._lease_due(now):
            return
        await self._settle()
        try:
            self._lease = await self._rt.store.renew_lease(lease, self._rt.lease_ttl)
        except LeaseLostError as err:
            raise _Stop(err, RunStatus.RUNNING) from None
        self._lease_renewed = now

    async def _journal(self, records: list[ToolCallRecord]) -> None:
        await self._settle()  # no call starts before the previous step is durable
        events, unsent = self._take_unsent()
        calls = [*unsent, *records]
        try:
            with anyio.CancelScope(shield=True):
                await self._rt.store.journal(self._lease, calls, events, run_id=self.id)
        except LeaseLostError as err:
            err.run_id = self.id
            raise _Stop(err, RunStatus.RUNNING) from None

    async def _queue_commit(
        self, store: PipelinedStore, write: CheckpointWrite, update: RunUpdate
    ) -> None:
        """Queue the step's commit and let the next step start while it runs.

        Later steps' node work overlaps this commit, and their commits queue behind it
        (the store applies them in order, several per transaction). Any tool or model
        call that must not repeat, any lease or approval write, and every answer to
        the user wait for all of them first, so nothing is acknowledged or sent out
        before the steps it follows are durable.
        """
        inflight = self._inflight
        # Commits already durable need no snapshot to roll back to. Held until the run
        # next waits, a short run's every commit (with its state and checkpoint) stayed
        # alive to its end: with 1,000 runs in flight, 200,000 objects for the garbage
        # collector to walk again and again.
        while inflight:
            durable = getattr(inflight[0][0], "durable", None)  # optional for a store
            if durable is None or not durable():
                break
            inflight.popleft()
        if len(inflight) >= _MAX_QUEUED_COMMITS:
            await self._settle(keep=_MAX_QUEUED_COMMITS - 1)
        events, calls = self._take_unsent()
        ledger = self.ledger
        pending = store.submit_step(
            self._lease, write, update, events, run_id=self.id, **_calls_kw(calls)
        )
        inflight.append(
            (
                pending,
                *_snapshot(self),
                self._visits_before,
                ledger.calls,
                ledger.cost,
                ledger.budget_error,
                ledger.attention,
            )
        )

    def _take_unsent(self) -> tuple[list[Event], list[ToolCallRecord]]:
        """The events and call records that ride the next commit (handed over once)."""
        events, self._pending = self._pending, []
        calls, self.ledger.unsent = self.ledger.unsent, []
        return events, calls

    async def _settle(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` queued commits are still in flight.

        If one failed, every commit queued after it fails too (its parent checkpoint
        is missing, see :class:`PipelinedStore`): this handle goes back to how it was
        before the failed one, and the step in flight stops. Commits stay queued until
        their outcome is known, so tasks settling at once (parallel branches calling
        tools) all wait for the same commits and all see a failure.
        """
        if self._broken is not None:
            raise self._broken
        inflight = self._inflight
        while len(inflight) > keep:
            before = inflight[0]
            pending = before[0]
            try:
                await pending.wait()
            except BaseException as exc:
                if self._broken is None:
                    self._broken = await self._roll_back(before, exc)
                raise self._broken from None
            if inflight and inflight[0][0] is pending:
                inflight.popleft()
        if self._broken is not None:  # another task saw a failure while this one waited
            raise self._broken

    async def _roll_back(self, before: _Queued, exc: BaseException) -> _Stop:
        """After a queued commit failed: back to the handle as it was before it."""
        later = list(self._inflight)
        self._inflight.clear()
        for queued in later:  # they fail too; wait so none is still being written
            with contextlib.suppress(Exception):
                await queued[0].wait()
        for name, value in zip(_ROLLED_BACK, before[1:_VISITS], strict=True):
            setattr(self, name, value)
        visits = before[_VISITS]
        if visits is not None:
            self.visits = visits
        ledger = self.ledger
        ledger.calls, ledger.cost, ledger.budget_error, ledger.attention = before[_VISITS + 1 :]
        ledger.unsent = []
        ledger.replay.clear()
        self._pending.clear()  # the step in flight is void, and its events with it
        if isinstance(exc, LeaseLostError):
            return _Stop(self._lost(exc), RunStatus.RUNNING)
        return _Stop(_CommitFailed(exc, run_id=self.id))

    def _lost(self, err: LeaseLostError) -> LeaseLostError:
        """Another process owns the run now: stop quietly, write nothing more."""
        err.run_id = self.id
        self.status = RunStatus.RUNNING
        self.next_nodes = ()
        self.reason = f"stopped: {err.reason}"
        self.error = err
        self._lease = None
        self._publish(RunStopped(run_id=self.id, step=self.steps, reason=self.reason))
        self._pending.clear()
        return err

    async def _write(
        self,
        write: CheckpointWrite | None,
        update: RunUpdate,
        *,
        approvals: Sequence[ApprovalRecord] = (),
    ) -> None:
        if self._inflight:
            await self._settle()
        events, calls = self._take_unsent()
        scope = self._scope
        try:
            commit = self._rt.store.commit_step(
                self._lease, write, update, events, run_id=self.id, **_calls_kw(calls, approvals)
            )
            # a commit is never interrupted half-way: memory must match the store
            if scope is not None:
                scope.shield = True
                try:
                    await commit
                finally:
                    scope.shield = False
            else:
                with anyio.CancelScope(shield=True):
                    await commit
        except LeaseLostError as err:
            raise _Stop(self._lost(err), RunStatus.RUNNING) from None

    async def _stop(self, stop: _Stop, nodes: tuple[str, ...]) -> StepResult:
        self._broken = None  # the void step ends here
        err = stop.error
        if isinstance(err, _CommitFailed):
            # as when a direct commit fails: the caller gets the store's error, the
            # handle shows the last durable step, and the run can be driven again
            raise err.original
        err.run_id = err.run_id or self.id
        if isinstance(err, LeaseLostError):
            self.error = err
            self.next_nodes = ()
            if self.reason is None:
                self.reason = f"stopped: {err.reason}"
                self._publish(RunStopped(run_id=self.id, step=self.steps, reason=self.reason))
            self._pending.clear()
            return self._stopped_result(nodes, err)
        status = RunStatus.FAILED
        if isinstance(err, NeedsAttentionError):
            status = RunStatus.NEEDS_ATTENTION
            self._publish(
                RunNeedsAttention(
                    run_id=self.id,
                    step=self.steps,
                    node=err.node or "",
                    tool=err.tool,
                    key=err.key,
                    reason=err.reason,
                )
            )
        else:
            self._publish(
                RunFailed(
                    run_id=self.id,
                    step=self.steps,
                    node=err.node,
                    reason=err.reason,
                    error_type=type(err).__name__,
                )
            )
        update = RunUpdate(status=status, reason=err.reason, error_node=err.node)
        try:
            await self._write(None, update)
        except _Stop as lost:
            return self._stopped_result(nodes, lost.error)
        self.status = status
        self.reason = err.reason
        self.error_node = err.node
        self.error = err
        await self._release()
        return self._stopped_result(nodes, err)

    async def _finish_cancelled(self) -> None:
        reason = self._cancel_reason or "cancelled"
        self._publish(RunCancelled(run_id=self.id, step=self.steps, reason=reason))
        try:
            await self._write(None, RunUpdate(status=RunStatus.CANCELLED, reason=reason))
        except _Stop:
            return
        self.status = RunStatus.CANCELLED
        self.reason = reason
        self.error = RunCancelledError(reason, run_id=self.id)
        await self._release()

    def _stopped_result(self, nodes: tuple[str, ...], err: RunError) -> StepResult:
        return StepResult(self.id, nodes, {}, (), self.status, self.steps, None, err)

    async def _release(self) -> None:
        store = self._pipelined
        if store is not None and self._lease is not None:
            # Queued behind the commits in flight, so it usually shares their
            # transaction: one wait for the last step and the release together.
            released = store.submit_release(self._lease, self.status)
            try:
                await self._settle()
            except BaseException:
                # the commit's failure is what the caller must see, not the release's
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await released.wait()
                raise
            with anyio.CancelScope(shield=True):
                await released.wait()
            self._lease = None  # only once the run's last commit is known durable
            return
        await self._settle()
        if self._lease is not None:
            lease, self._lease = self._lease, None
            with anyio.CancelScope(shield=True):
                await self._rt.store.release_lease(lease)


def _meta(
    steps: int,
    visits: Mapping[str, int],
    back: BacktrackInfo | None,
    ledger: CallLedger,
    error: ErrorInfo | None = None,
) -> bytes:
    # Defaults are left out (readers fill them in): a checkpoint row per step makes
    # every byte here count, e.g. ~50 KB over W2's 2,000 steps.
    data: dict[str, Any] = {"steps": steps}
    if visits:
        data["visits"] = visits
    if error is not None:
        data["error"] = {"source": error.source, "type": error.error_type, "reason": error.reason}
    if ledger.calls:
        data["calls"] = ledger.calls
    if ledger.cost:
        data["cost"] = ledger.cost
    if back is not None:
        data["backtracked"] = {"source": back.source, "reason": back.reason}
    return to_json(data)


def _calls_kw(
    calls: list[ToolCallRecord], approvals: Sequence[ApprovalRecord] = ()
) -> dict[str, Any]:
    # extra rows ride in the step's transaction; plain steps keep the short signature
    extra: dict[str, Any] = {"calls": calls} if calls else {}
    if approvals:
        extra["approvals"] = approvals
    return extra


def _now() -> datetime:
    return datetime.now(UTC)
