"""A run in motion: one step at a time, checkpointed after every step.

:class:`Run` is the handle :class:`~graphorch.Runtime` gives for a started, resumed or
forked run. ``await run.step()`` advances exactly one step (a superstep of parallel
branches counts each branch); ``await run.wait()`` advances until the run ends, waits
for a person, or fails. Its store side (commits, journal, lease) is the mixin in
:mod:`graphorch._run_commits`; node calls are in :mod:`graphorch._node_calls` and the
result records in :mod:`graphorch._run_results`.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic

import anyio
import anyio.lowlevel
from pydantic_core import to_jsonable_python

from ._lease_keeper import KEEPER
from ._node_calls import _direct_fn, _invoke, _model_box
from ._node_calls import invoke_node_fn as invoke_node_fn  # toolbox imports it from here
from ._run_commits import RunCommits, _CommitFailed, _meta, _now, _Queued, _Stop
from ._run_results import RunResult, StateT, StepResult
from .approvals import ApprovalDesk, Pause
from .context import BacktrackInfo, Context, ErrorInfo
from .delegation import slot
from .events import (
    Backtracked,
    CustomEvent,
    ErrorRouted,
    Event,
    Retrying,
    RunFinished,
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
from .nodes import ApprovalOutcome, ApproveNode, Backtrack, EndNode, Node, PlanNode
from .store.approvals import ApprovalRecord
from .store.base import CheckpointWrite, Lease, PipelinedStore, RunUpdate
from .store.journal import ToolCallRecord
from .toolbox import CallEngine, CallLedger, ToolBox
from .types import CheckpointId, RunId, RunStatus, checkpoint_id

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["Run", "RunResult", "StepResult"]

_EVENT_BUFFER = 10_000  # events kept in memory per run handle for late subscribers


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

_BUSY = "another task is stepping this run; await its step first"
_STILL_RUNNING = RunUpdate(status=RunStatus.RUNNING)  # what most commits do to the run row
_YIELD_EVERY = 32  # steps between forced yields to the event loop in wait()


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


class Run(RunCommits, Generic[StateT]):
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
        self._pipelined: PipelinedStore | None = runtime._pipelined_store()  # pyright: ignore[reportPrivateUsage]
        # Commits queued by wait() while later steps already run, oldest first, each
        # with what this handle looked like before it (restored if that commit fails).
        self._inflight: deque[_Queued] = deque()
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

    def publish(self, event: Event) -> None:
        """Record an event of this run and stream it to :meth:`events` subscribers."""
        # A method, not ``self.publish = self._publish``: a bound method stored on the
        # instance made every run a reference cycle, freed only by the garbage collector.
        self._publish(event)

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

        While it drives the run, the runtime keeps the run's lease alive, so a node
        that runs longer than the lease's time to live does not lose the run.
        """
        if self._lease is None or not self.active:
            return await self._drive()
        KEEPER.add(self)
        try:
            return await self._drive()
        finally:
            KEEPER.discard(self)

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
            if self._lease_due(time.monotonic()):
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


def _to_loop_deadline(wall_deadline: float) -> float:
    """Convert a wall-clock deadline to the event loop's clock."""
    if wall_deadline == math.inf:
        return math.inf
    return anyio.current_time() + (wall_deadline - time.time())
