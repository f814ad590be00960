"""A run in motion: one step at a time, checkpointed after every step.

:class:`Run` is the handle :class:`~graphorch.Runtime` gives for a started, resumed or
forked run. ``await run.step()`` advances exactly one step (a superstep of parallel
branches counts each branch); ``await run.wait()`` advances until the run ends, waits
for a person, or fails.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import operator
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Self, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
from pydantic import BaseModel
from pydantic_core import to_json, to_jsonable_python

from graphorch._record import Record

from .approvals import ApprovalDesk, Pause
from .context import BacktrackInfo, Context, ErrorInfo
from .delegation import slot
from .events import (
    Backtracked,
    CustomEvent,
    ErrorRouted,
    Event,
    Retrying,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunNeedsAttention,
    RunStopped,
    RunWaiting,
    StepFinished,
    StepStarted,
)
from .exceptions import (
    ApprovalRejectedError,
    BudgetExceededError,
    ChildRunError,
    DelegationError,
    EdgeConditionError,
    LeaseLostError,
    MaxStepsExceededError,
    ModelError,
    NeedsAttentionError,
    NodeError,
    NodeTimeoutError,
    RunCancelledError,
    RunError,
    RunNotActiveError,
    RunTimeoutError,
    StateUpdateError,
    ToolError,
    VisitLimitExceededError,
)
from .graph import Edge, FrozenGraph, fire
from .nodes import ApprovalOutcome, ApproveNode, Backtrack, EndNode, Node, PlanNode, _arity  # pyright: ignore[reportPrivateUsage]
from .store.approvals import ApprovalRecord
from .store.base import (
    CheckpointWrite,
    Lease,
    PendingCommit,
    PipelinedStore,
    RunUpdate,
    pipelined,
)
from .store.journal import ToolCallRecord
from .toolbox import CallEngine, CallLedger, ToolBox
from .types import CheckpointId, RunId, RunStatus, checkpoint_id

if TYPE_CHECKING:
    from .planning import ModelBox
    from .runtime import Runtime

__all__ = ["Run", "RunResult", "StepResult"]

StateT = TypeVar("StateT", bound=BaseModel)

_EVENT_BUFFER = 10_000  # events kept in memory per run handle for late subscribers


class _CommitFailed(RunError):
    """Internal: a queued commit failed (not for a lost lease); ``original`` says why.

    It ends the step in flight like a fatal error, so no error edge, retry or
    ``except`` in node code lets a step built on the dropped commits go on; once the
    step is over, ``original`` is raised to the caller as a direct commit's error is.
    """

    def __init__(self, original: BaseException, *, run_id: str) -> None:
        super().__init__(f"a queued commit failed: {original}", run_id=run_id)
        self.original = original


# errors a node can recover from along an error edge, and those that always stop the run
_ROUTABLE = (
    ModelError,
    NodeError,
    NodeTimeoutError,
    ToolError,
    StateUpdateError,
    EdgeConditionError,
    ChildRunError,
    DelegationError,
)
_FATAL = (BudgetExceededError, NeedsAttentionError, LeaseLostError, _CommitFailed)
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


class _Snapshot(NamedTuple):
    """A run handle before a queued commit: put back if that commit fails."""

    attrs: tuple[Any, ...]  # the values of _ROLLED_BACK
    visits: dict[str, int] | None  # None: no visit count matters to the run
    ledger: tuple[int, float, BudgetExceededError | None, NeedsAttentionError | None]


_BUSY = "another task is stepping this run; await its step first"
_STILL_RUNNING = RunUpdate(status=RunStatus.RUNNING)  # what most commits do to the run row
_YIELD_EVERY = 32  # steps between forced yields to the event loop in wait()
# Commits wait() may have queued and not yet seen durable. Several queued commits of
# one run share a transaction in the writer (group commit); the bound keeps a run of
# CPU-only steps from getting far ahead of its durable history.
_MAX_QUEUED_COMMITS = 64


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


@dataclass
class _Outcome:
    node: str
    changes: dict[str, Any] = field(default_factory=lambda: {})
    backtrack: Backtrack | None = None
    output: Any = None
    ended: bool = False
    routed: tuple[tuple[str, ...], ErrorInfo] | None = None
    approval: str | None = None
    replace: bool = False
    waiting: Pause | None = None


class _Stop(Exception):
    """Internal: ends a step with a run error (carried in ``error``)."""

    def __init__(self, error: RunError, status: RunStatus = RunStatus.FAILED):
        self.error = error
        self.status = status


def _is_async(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


class Run(Generic[StateT]):
    """A run being advanced by this process. Get one from :class:`~graphorch.Runtime`."""

    def __init__(
        self,
        runtime: Runtime,
        graph: FrozenGraph[StateT, Any],
        *,
        run_id: RunId,
        state: StateT,
        seq: int,
        steps: int,
        visits: dict[str, int],
        next_nodes: tuple[str, ...],
        status: RunStatus,
        reason: str | None,
        error_node: str | None,
        output: Any,
        deps: Any,
        lease: Lease | None,
        started: float,
        max_steps: int | None,
        timeout: float | None,
        backtracked: BacktrackInfo | None,
        error: ErrorInfo | None = None,
        pending_events: list[Event] | None = None,
        stored_events: list[Event] | None = None,
        ledger: CallLedger | None = None,
    ) -> None:
        self._rt = runtime
        self.graph = graph
        self.id = run_id
        self.state = state
        self.seq = seq
        self.steps = steps
        self.visits = visits
        self.next_nodes = next_nodes
        self.status = status
        self.reason = reason
        self.error_node = error_node
        self.output = output
        self.error: RunError | None = None
        self.deps = deps
        self._lease = lease
        self._lease_renewed = time.monotonic()
        self._started = started
        self.max_steps = max_steps if max_steps is not None else graph.max_steps
        self.timeout = timeout if timeout is not None else graph.timeout
        self._backtracked = backtracked
        self._error = error
        # stored events are streamed but already committed; pending ones ride the next commit
        self._pending: list[Event] = pending_events or []
        self._history: deque[Event] = deque(
            [*(stored_events or []), *self._pending], maxlen=_EVENT_BUFFER
        )
        self._event_count = len(self._history)
        self._listeners: list[anyio.Event] = []
        self._scope: anyio.CancelScope | None = None
        self._cancel_reason: str | None = None
        self._stepping = False
        self.ledger = ledger if ledger is not None else CallLedger()
        self.publish = self._publish
        self._pipelined: PipelinedStore | None = pipelined(runtime.store)
        # Commits queued by wait() while later steps already run, oldest first, each
        # with what this handle looked like before it (restored if that commit fails).
        self._inflight: deque[tuple[PendingCommit, _Snapshot]] = deque()
        # Set when a queued commit failed: the step in flight is void, and every later
        # settle in it raises this until the step has stopped (see _stop).
        self._broken: _Stop | None = None
        # The visit counts a resume needs, as they were when the step in flight began.
        self._visits_before: dict[str, int] | None = None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Jupyter's rich display: the graph with this run's path, and its status."""
        from .notebook import run_mimebundle

        return run_mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        where = f" next={list(self.next_nodes)}" if self.next_nodes else ""
        return f"<Run {self.id} graph={self.graph.name!r} {self.status.value} step={self.steps}{where}>"

    @property
    def checkpoint(self) -> CheckpointId:
        """The run's latest committed checkpoint."""
        return checkpoint_id(self.id, self.seq)

    @property
    def active(self) -> bool:
        """True while the run can take another step in this process."""
        return self.status is RunStatus.RUNNING and bool(self.next_nodes)

    # -- events ----------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        if event.stored:
            self._pending.append(event)
        self._history.append(event)
        self._event_count += 1
        if self._listeners:
            listeners, self._listeners = self._listeners, []
            for waiter in listeners:
                waiter.set()

    async def events(self) -> AsyncIterator[Event]:
        """Every event of this run handle, from its first, live until the run stops."""
        seen = 0
        while True:
            base = self._event_count - len(self._history)
            if seen < base:
                seen = base  # older events fell out of the buffer
            while seen < self._event_count:
                yield self._history[seen - base]
                seen += 1
            if not self.active and self._scope is None:
                return
            waiter = anyio.Event()
            self._listeners.append(waiter)
            await waiter.wait()

    # -- driving -----------------------------------------------------------------

    async def wait(self) -> RunResult[StateT]:
        """Advance until the run ends, waits for a person, or fails.

        While it drives the run, a heartbeat keeps the run's lease alive, so a node
        that runs longer than the lease's time to live does not lose the run.
        """
        if self._lease is None or not self.active:
            return await self._drive()
        result: RunResult[StateT] | None = None
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat)
            try:
                result = await self._drive()
            except Exception as exc:  # raised as it is, not inside an exception group
                error = exc
            finally:
                tg.cancel_scope.cancel()
        if error is not None:
            raise error
        assert result is not None
        return result

    def _current_lease(self) -> Lease | None:
        return self._lease  # read afresh: a step may have released it meanwhile

    async def _heartbeat(self) -> None:
        interval = self._rt.lease_ttl / 3
        while self._lease is not None:
            await anyio.sleep(interval)
            lease = self._current_lease()
            if lease is None or time.monotonic() - self._lease_renewed < interval:
                continue
            try:
                renewed = await self._rt.store.renew_lease(lease, self._rt.lease_ttl)
            except LeaseLostError:
                return  # the next commit is fenced and stops the run quietly
            if self._lease is not None:  # pyright: ignore[reportUnnecessaryComparison]
                self._lease = renewed
                self._lease_renewed = time.monotonic()

    async def _drive(self) -> RunResult[StateT]:
        if self.active:
            # One cancel scope for the whole drive rather than one per step: cancel()
            # and the run's deadline interrupt whichever step is in flight all the same.
            if self._stepping:
                raise RunNotActiveError(_BUSY, run_id=self.id)
            with anyio.CancelScope(deadline=self._loop_deadline()) as scope:
                self._scope = scope
                self._stepping = True
                try:
                    since_yield = 0
                    while self.active:
                        await self._step_in(self.next_nodes, True)
                        since_yield += 1
                        if since_yield >= _YIELD_EVERY:
                            # steps that never await would otherwise starve other tasks
                            since_yield = 0
                            await anyio.lowlevel.checkpoint()
                finally:
                    self._stepping = False
                    self._scope = None
            if scope.cancelled_caught:
                await self._interrupted(self.next_nodes)
        try:
            await self._settle()
        except _Stop as stop:
            await self._stop(stop, self.next_nodes)
        return self.result()

    def result(self) -> RunResult[StateT]:
        """Where the run stands now."""
        return RunResult(
            run_id=self.id,
            status=self.status,
            state=self.state,
            output=self.output,
            reason=self.reason,
            node=self.error_node,
            steps=self.steps,
            error=self.error,
        )

    async def cancel(self, reason: str = "cancelled by the user") -> None:
        """Cancel the run: a step in flight is interrupted and nothing of it is kept."""
        if self.status.is_terminal:
            return
        self._cancel_reason = reason
        if self._scope is not None:
            self._scope.cancel()
            return
        await self._finish_cancelled()

    async def step(self) -> StepResult:
        """Advance exactly one step and commit it.

        Raises:
            RunNotActiveError: the run has stopped or waits for a person.
        """
        if self._stepping:
            raise RunNotActiveError(_BUSY, run_id=self.id)
        if not self.active:
            raise RunNotActiveError(
                f"run is {self.status.value}"
                + (f" ({self.reason})" if self.reason else "")
                + "; nothing to step",
                run_id=self.id,
            )
        self._stepping = True
        try:
            return await self._step()
        finally:
            self._stepping = False

    def _loop_deadline(self) -> float:
        if self.timeout is None:
            return math.inf
        return _to_loop_deadline(self._started + self.timeout)

    async def _step(self) -> StepResult:
        """One step of :meth:`step`, in its own cancel scope, committed before it returns."""
        nodes = self.next_nodes
        with anyio.CancelScope(deadline=self._loop_deadline()) as own:
            self._scope = own
            try:
                return await self._step_in(nodes, False)
            finally:
                self._scope = None
        return await self._interrupted(nodes)

    async def _step_in(self, nodes: tuple[str, ...], pipelined: bool) -> StepResult:
        """One step, inside the caller's cancel scope (one coroutine for the whole step:
        with many runs in flight, every coroutine alive across an await is work for
        the garbage collector)."""
        if self._pipelined is not None and self.graph.tracked_visits:
            self._visits_before = dict(self.visits)
        try:
            self._check_limits(nodes)
            if (
                self._lease is not None
                and time.monotonic() - self._lease_renewed >= self._rt.lease_ttl / 3
            ):
                await self._renew_lease()
            if len(nodes) == 1:
                outcomes = [await self._run_routed(self.graph.nodes[nodes[0]])]
            else:
                outcomes = await self._run_parallel(nodes)
            return await self._commit(nodes, outcomes, pipelined)
        except _Stop as stop:
            return await self._stop(stop, nodes)

    async def _interrupted(self, nodes: tuple[str, ...]) -> StepResult:
        """After the step's scope was cancelled: by cancel() or the run deadline."""
        if self._cancel_reason is not None:  # pragma: no branch
            await self._finish_cancelled()
            return self._stopped_result(nodes, RunCancelledError(self.reason or "", run_id=self.id))
        err = RunTimeoutError(f"run exceeded its timeout of {self.timeout}s", run_id=self.id)
        return await self._stop(_Stop(err), nodes)

    def _check_limits(self, nodes: tuple[str, ...]) -> None:
        if self.max_steps is not None and self.steps + len(nodes) > self.max_steps:
            raise _Stop(
                MaxStepsExceededError(
                    f"run reached max_steps={self.max_steps} before running {', '.join(nodes)}",
                    run_id=self.id,
                    node=nodes[0],
                )
            )
        for name in nodes:
            limit = self.graph.nodes[name].max_visits
            if limit is not None and self.visits.get(name, 0) >= limit:
                raise _Stop(
                    VisitLimitExceededError(
                        f"node entered {limit} times already (max_visits={limit}); "
                        f"the run is probably looping",
                        run_id=self.id,
                        node=name,
                    )
                )
        if self.timeout is not None and time.time() > self._started + self.timeout:
            raise _Stop(
                RunTimeoutError(f"run exceeded its timeout of {self.timeout}s", run_id=self.id)
            )

    async def _renew_lease(self) -> None:
        lease = self._lease
        if lease is None:
            return
        now = time.monotonic()
        if now - self._lease_renewed < self._rt.lease_ttl / 3:
            return
        await self._settle()
        try:
            self._lease = await self._rt.store.renew_lease(lease, self._rt.lease_ttl)
        except LeaseLostError as err:
            raise _Stop(err, RunStatus.RUNNING) from None
        self._lease_renewed = now

    async def _run_parallel(self, nodes: tuple[str, ...]) -> list[_Outcome]:
        outcomes: list[_Outcome | None] = [None] * len(nodes)
        errors: list[_Stop] = []

        async def branch(i: int, name: str) -> None:
            try:
                if self._rt.limiter is None:  # the common case: no slot to take
                    outcomes[i] = await self._run_routed(self.graph.nodes[name])
                else:
                    async with slot(self._rt.limiter):
                        outcomes[i] = await self._run_routed(self.graph.nodes[name])
            except _Stop as stop:
                errors.append(stop)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for i, name in enumerate(nodes):
                tg.start_soon(branch, i, name)
        if errors:
            raise errors[0]
        return [o for o in outcomes if o is not None]

    async def _run_routed(self, node: Node) -> _Outcome:
        """Run a node with its retries; a recoverable failure with a matching error edge
        goes there."""
        try:
            name = node.name
            self.visits[name] = self.visits.get(name, 0) + 1
            self._publish(StepStarted(run_id=self.id, step=self.steps, node=name))
            retry = node.retry
            attempts = retry.attempts if retry is not None else 1
            attempt = 1
            direct = _direct_fn(node)
            while True:
                try:
                    if node.timeout is None:
                        if direct is not None:
                            # the usual plan node, an async function of the state: called
                            # here rather than two coroutines deeper
                            return self._outcome(node, await direct(self.state))
                        return await self._call_node(node, attempt)
                    with anyio.fail_after(node.timeout):
                        return await self._call_node(node, attempt)
                except _Stop:
                    raise
                except Exception as exc:
                    if isinstance(exc, TimeoutError) and node.timeout is not None:
                        error: RunError = NodeTimeoutError(
                            f"attempt {attempt} ran past its timeout of {node.timeout}s",
                            run_id=self.id,
                            node=name,
                        )
                    elif isinstance(exc, RunError):
                        error = exc
                    else:
                        error = NodeError(
                            f"raised {type(exc).__name__}: {exc}", run_id=self.id, node=name
                        )
                        error.__cause__ = exc
                    retryable = retry is not None and isinstance(exc, retry.on)
                    if not retryable or attempt >= attempts or isinstance(exc, StateUpdateError):
                        if attempts > 1 and attempt > 1:
                            error.reason += f" (after {attempt} attempts)"
                        raise _Stop(error) from exc
                    assert retry is not None
                    delay = retry.delay(attempt)
                    self._publish(
                        Retrying(
                            run_id=self.id,
                            step=self.steps,
                            node=name,
                            attempt=attempt,
                            delay=delay,
                            error=f"{type(exc).__name__}: {exc}",
                        )
                    )
                    await anyio.sleep(delay)
                    attempt += 1
        except Pause as wait:
            return _Outcome(node.name, waiting=wait)
        except _Stop as stop:
            err = stop.error
            if not isinstance(err, _ROUTABLE) or isinstance(err, _FATAL):
                raise
            for edge in self.graph.edges.get(node.name, ()):
                if edge.catches(err):
                    info = ErrorInfo(node.name, type(err).__name__, err.reason)
                    return _Outcome(node.name, routed=(edge.targets, info))
            raise

    def _context(self, node: Node, attempt: int) -> Context[Any]:
        back = self._backtracked if self._backtracked is not None else None
        engine = self._rt.engine
        name = node.name
        return Context(
            run_id=self.id,
            graph=self.graph.name,
            role=self.graph.role,
            node=node.name,
            step=self.steps,
            attempt=attempt,
            deps=self.deps,
            backtracked=back,
            emit=self._emit_custom,
            tools=lambda: ToolBox(engine, self, name),
            error=self._error,
            model=lambda: _model_box(self, name),
        )

    def _emit_custom(self, node: str, name: str, data: dict[str, Any]) -> None:
        self._publish(CustomEvent(run_id=self.id, step=self.steps, node=node, name=name, data=data))

    async def journal_flush(self) -> None:
        """Durably write the results of calls made so far in this step."""
        if self.ledger.unsent:
            await self._journal([])

    async def journal_started(self, record: ToolCallRecord) -> None:
        """Durably mark a call as started (with any results not yet written)."""
        await self._journal([record])

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

    async def _call_node(self, node: Node, attempt: int) -> _Outcome:
        if isinstance(node, PlanNode):
            if node.fn is None:
                from .planning import run_model_plan  # models load only when a plan asks

                ctx = self._context(node, attempt)
                return self._outcome(node, await run_model_plan(self, node, ctx))
            make = functools.partial(self._context, node, attempt)
            return self._outcome(node, await _invoke(node.fn, self.state, make))
        if isinstance(node, ApproveNode):
            changes, outcome = await self._rt.desk.run_node(self, node)
            normalized = self.graph.schema.normalize(self.state, changes, node=node.name)
            return _Outcome(node.name, normalized, approval=outcome, replace=True)
        if isinstance(node, EndNode):
            output = None
            if node.output is not None:
                output = await _invoke(node.output, self.state, self._context(node, attempt))
            return _Outcome(node.name, output=output, ended=True)
        return self._outcome(node, await self._rt.execute_node(self, node, attempt))

    @property
    def engine(self) -> CallEngine:
        """The runtime's tool-call engine."""
        return self._rt.engine

    def _outcome(self, node: Node, result: Any) -> _Outcome:
        if isinstance(result, Backtrack):
            return self._backtrack(node, result)
        schema = self.graph.schema
        return _Outcome(node.name, schema.normalize(self.state, result, node=node.name))

    def _backtrack(self, node: Node, back: Backtrack) -> _Outcome:
        if back.to not in node.backtrack:
            raise _Stop(
                StateUpdateError(
                    f"backtracked to {back.to!r}, which is not in its backtrack="
                    f"{list(node.backtrack)}; declare it on the node",
                    run_id=self.id,
                    node=node.name,
                )
            )
        if not self.visits.get(back.to):
            raise _Stop(
                StateUpdateError(
                    f"backtracked to {back.to!r}, which has not run yet in this run; "
                    f"a backtrack goes to an earlier node",
                    run_id=self.id,
                    node=node.name,
                )
            )
        schema = self.graph.schema
        changes = schema.normalize(self.state, back.update, node=node.name)
        return _Outcome(node.name, changes, backtrack=back)

    def _route(self, name: str, state: StateT, approval: str | None = None) -> list[str]:
        edges = self.graph.edges.get(name, ())
        if approval is not None:
            by_outcome = self._route_decision(name, edges, approval)
            if by_outcome is not None:
                return by_outcome
        try:
            targets = fire(edges, state, name)
        except EdgeConditionError as err:
            err.run_id = self.id
            raise _Stop(err) from err.__cause__
        if not targets:
            raise _Stop(
                RunError(
                    "no edge's condition held and the node has no default edge; "
                    "add an edge without when= as the fallback",
                    run_id=self.id,
                    node=name,
                )
            )
        return targets

    def _route_decision(self, name: str, edges: Sequence[Edge], approval: str) -> list[str] | None:
        """Edges for an approve node's decision; None: an approval goes the usual way."""
        marked = {
            edge.when.outcome: edge.targets
            for edge in edges
            if isinstance(edge.when, ApprovalOutcome)
        }
        if approval == "expired" and "expired" not in marked:
            approval = "rejected"  # no expiry edge: an expired request counts as rejected
        if approval in marked:
            return list(marked[approval])
        if approval == "approved":
            return None
        raise _Stop(
            ApprovalRejectedError(
                f"the approval was {approval} and the node has no when=go.{approval} edge",
                run_id=self.id,
                node=name,
            )
        )

    async def _commit(
        self, nodes: tuple[str, ...], outcomes: Sequence[_Outcome], pipelined: bool = False
    ) -> StepResult:
        if self._broken is not None:  # node code caught the failure: the step is void all the same
            raise self._broken
        stop_error = self.ledger.stop_error()
        if stop_error is not None:
            raise _Stop(stop_error)
        waiting = [o for o in outcomes if o.waiting is not None]
        if waiting:
            return await self._wait_for_approval(nodes, waiting)
        schema = self.graph.schema
        old = self.state
        branches = [(o.node, o.changes) for o in outcomes if o.changes]
        reduce = not any(o.replace for o in outcomes)
        try:
            if branches:
                new_state, changed, appended = schema.apply_changes(old, branches, reduce=reduce)
                writes = schema.writes(
                    old, new_state, changed, node=branches[0][0], appended=appended
                )
            else:
                new_state, changed, writes = old, {}, {}
        except StateUpdateError as err:
            err.run_id = err.run_id or self.id
            raise _Stop(err) from None
        ended: _Outcome | None = None
        next_nodes: list[str] = []
        backtrack_info: BacktrackInfo | None = None
        error_info: ErrorInfo | None = None
        for o in outcomes:
            if o.ended:
                ended = ended or o
            elif o.routed is not None:
                targets, error_info = o.routed
                next_nodes.extend(targets)
                self._publish(
                    ErrorRouted(
                        run_id=self.id,
                        step=self.steps,
                        node=o.node,
                        to=targets,
                        error_type=error_info.error_type,
                        reason=error_info.reason,
                    )
                )
            elif o.backtrack is not None:
                next_nodes.append(o.backtrack.to)
                backtrack_info = BacktrackInfo(o.node, o.backtrack.reason)
                self._publish(
                    Backtracked(
                        run_id=self.id,
                        step=self.steps,
                        node=o.node,
                        to=o.backtrack.to,
                        reason=o.backtrack.reason,
                    )
                )
            else:
                next_nodes.extend(self._route(o.node, new_state, o.approval))
        output_json: bytes | None = None
        if ended is not None:
            status = RunStatus.SUCCEEDED
            next_tuple: tuple[str, ...] = ()
            try:
                output = to_jsonable_python(ended.output)
                output_json = json.dumps(output).encode()
            except Exception as exc:
                raise _Stop(
                    StateUpdateError(
                        f"the end node's output cannot be stored as JSON: {exc}",
                        run_id=self.id,
                        node=ended.node,
                    )
                ) from None
        else:
            status = RunStatus.RUNNING
            next_tuple = tuple(dict.fromkeys(next_nodes))
            output = None
        steps = self.steps + len(nodes)
        seq = self.seq + 1
        cp_id = checkpoint_id(self.id, seq)
        for o in outcomes:
            self._publish(
                StepFinished(
                    run_id=self.id,
                    step=steps,
                    node=o.node,
                    changed=tuple(o.changes),
                    next_nodes=next_tuple,
                    checkpoint=cp_id,
                )
            )
        if ended is not None:
            self._publish(RunFinished(run_id=self.id, step=steps, node=ended.node, output=output))
        meta = _meta(steps, self._tracked_visits(), backtrack_info, self.ledger, error_info)
        write = CheckpointWrite(
            checkpoint_id=cp_id,
            run_id=self.id,
            seq=seq,
            parent=self.checkpoint,
            nodes=nodes,
            next_nodes=next_tuple,
            status=status,
            writes=writes,
            meta=meta,
            created_at=_now(),
        )
        if ended is None:
            update = _STILL_RUNNING
        else:
            update = RunUpdate(
                status=status, reason="reached end node " + ended.node, output=output_json
            )
        if pipelined and self._pipelined is not None:
            await self._queue_commit(self._pipelined, write, update)
        else:
            await self._write(write, update)
        self.ledger.replay.clear()
        self.state = new_state
        self.seq = seq
        self.steps = steps
        self.next_nodes = next_tuple
        self._backtracked = backtrack_info
        self._error = error_info
        self.status = status
        if ended is not None:
            self.reason = update.reason
            self.output = output
            await self._release()
        return StepResult(self.id, nodes, changed, next_tuple, status, steps, cp_id)

    def _tracked_visits(self) -> dict[str, int]:
        """The visit counts a resumed run needs: of nodes with a ``max_visits`` limit
        or that a node may backtrack to. Storing every node's count made each
        checkpoint grow with the graph's size."""
        tracked = self.graph.tracked_visits
        if not tracked:
            return {}
        visits = self.visits
        return {name: visits[name] for name in tracked if name in visits}

    @property
    def runtime(self) -> Runtime:
        """The runtime advancing this run."""
        return self._rt

    @property
    def approvals(self) -> ApprovalDesk:
        """The runtime's approvals desk."""
        return self._rt.desk

    async def _wait_for_approval(
        self, nodes: tuple[str, ...], waiting: Sequence[_Outcome]
    ) -> StepResult:
        """Nothing of this step is kept: the run waits at its checkpoint."""
        created: list[ApprovalRecord] = []
        first = waiting[0]
        for o in waiting:
            assert o.waiting is not None
            if o.waiting.record is not None:
                created.append(o.waiting.record)
                self._publish(self._rt.desk.requested_event(self, o.waiting.record))
        assert first.waiting is not None
        reason = first.waiting.reason
        self._publish(RunWaiting(run_id=self.id, step=self.steps, node=first.node, reason=reason))
        update = RunUpdate(status=RunStatus.WAITING, reason=reason, error_node=first.node)
        self.ledger.replay.clear()
        await self._write(None, update, approvals=created)
        self.status = RunStatus.WAITING
        self.reason = reason
        self.error_node = first.node
        await self._release()
        return StepResult(self.id, nodes, {}, self.next_nodes, self.status, self.steps, None)

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
        before = _Snapshot(
            _snapshot(self),
            self._visits_before,
            (ledger.calls, ledger.cost, ledger.budget_error, ledger.attention),
        )
        pending = store.submit_step(
            self._lease, write, update, events, run_id=self.id, **_calls_kw(calls)
        )
        inflight.append((pending, before))

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
            pending, before = inflight[0]
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

    async def _roll_back(self, before: _Snapshot, exc: BaseException) -> _Stop:
        """After a queued commit failed: back to the handle as it was before it."""
        later = list(self._inflight)
        self._inflight.clear()
        for queued, _ in later:  # they fail too; wait so none is still being written
            with contextlib.suppress(Exception):
                await queued.wait()
        for name, value in zip(_ROLLED_BACK, before.attrs, strict=True):
            setattr(self, name, value)
        if before.visits is not None:
            self.visits = before.visits
        ledger = self.ledger
        ledger.calls, ledger.cost, ledger.budget_error, ledger.attention = before.ledger
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
            if scope is not None:
                # a commit is never interrupted half-way: memory must match the store
                scope.shield = True
                try:
                    await self._rt.store.commit_step(
                        self._lease,
                        write,
                        update,
                        events,
                        run_id=self.id,
                        **_calls_kw(calls, approvals),
                    )
                finally:
                    scope.shield = False
            else:
                with anyio.CancelScope(shield=True):
                    await self._rt.store.commit_step(
                        self._lease,
                        write,
                        update,
                        events,
                        run_id=self.id,
                        **_calls_kw(calls, approvals),
                    )
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


def _model_box(run: Run[Any], node: str) -> ModelBox:
    from .planning import ModelBox  # models load only when a node asks for one

    return ModelBox(run, node)


async def invoke_node_fn(run: Run[Any], node: Node, fn: Any, attempt: int) -> Any:
    """Call a node's user function with the run's state and a fresh Context."""
    make = functools.partial(run._context, node, attempt)  # pyright: ignore[reportPrivateUsage]
    return await _invoke(fn, run.state, make)


def _direct_fn(node: Node) -> Any:
    """A plan node's function if it is async and takes only the state, else None."""
    if isinstance(node, PlanNode) and node.fn is not None:
        fn = node.fn
        try:
            if _calling(fn) == (False, True):
                return fn
        except TypeError:  # unhashable callable: take the general path
            return None
    return None


@functools.cache
def _calling(fn: Any) -> tuple[bool, bool]:
    """(takes the context, is async) for a user function, worked out once."""
    return _arity(fn) != 1, _is_async(fn)


async def _invoke(fn: Any, state: Any, ctx: Context[Any] | Callable[[], Context[Any]]) -> Any:
    """Call a user function with (state) or (state, ctx); sync ones run in a thread.

    ``ctx`` may be a factory: most node functions take only the state, and building
    a context they never see is a measurable part of a step.
    """
    try:
        with_ctx, is_async = _calling(fn)
    except TypeError:  # unhashable callable: work it out each time
        with_ctx, is_async = _arity(fn) != 1, _is_async(fn)
    args: tuple[Any, ...] = (state,)
    if with_ctx:
        made: Context[Any] = ctx if isinstance(ctx, Context) else ctx()  # pyright: ignore[reportUnknownVariableType]
        args = (state, made)
    if is_async:
        return await fn(*args)
    result = await anyio.to_thread.run_sync(lambda: fn(*args), abandon_on_cancel=True)
    if inspect.isawaitable(result):
        return await result
    return result


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


def _to_loop_deadline(wall_deadline: float) -> float:
    """Convert a wall-clock deadline to the event loop's clock."""
    if wall_deadline == math.inf:
        return math.inf
    return anyio.current_time() + (wall_deadline - time.time())
