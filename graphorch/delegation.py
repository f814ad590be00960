"""Delegation: a node that starts child runs of another graph and joins their outputs.

Children are real runs in the same store, with their own ids, checkpoints and
history, linked to the parent. Their ids are derived from the parent's step, so a
resumed parent finds the children it already started: finished ones are not run again,
unfinished ones are resumed, missing ones are started.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio

from graphorch._record import Record

from .approvals import Pause
from .events import ChildRunStarted
from .exceptions import ChildRunError, DelegationError, InputValidationError, RunNotFoundError
from .nodes import DelegateNode, _arity  # pyright: ignore[reportPrivateUsage]
from .types import RunId, RunStatus

if TYPE_CHECKING:
    from .graph import FrozenGraph
    from .runs import Run, RunResult
    from .runtime import Runtime

__all__ = ["ChildOutcome", "run_delegate", "slot"]

_holding: contextvars.ContextVar[bool] = contextvars.ContextVar("graphorch_slot", default=False)


@asynccontextmanager
async def slot(limiter: anyio.CapacityLimiter | None) -> AsyncGenerator[None]:
    """Hold one of the runtime's concurrency slots (nested work shares its parent's)."""
    if limiter is None or _holding.get():
        yield
        return
    async with limiter:
        token = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(token)


class ChildOutcome(Record):
    """How one child run ended (what ``output=`` functions get with ``on_error="collect"``).

    Attributes:
        index: the item's position (0 for a single child).
        item: the fan-out item, if any.
        run_id: the child run.
        status: how it ended.
        output: its end node's output, when it succeeded.
        reason: why it stopped otherwise.
    """

    index: int
    item: Any
    run_id: RunId
    status: RunStatus
    output: Any = None
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when the child reached an end node."""
        return self.status is RunStatus.SUCCEEDED


def _items(run: Run[Any], node: DelegateNode) -> list[Any] | None:
    if node.each is None:
        return None
    try:
        raw = getattr(run.state, node.each) if isinstance(node.each, str) else node.each(run.state)
    except Exception as exc:
        raise DelegationError(
            f"each= raised {type(exc).__name__}: {exc}", run_id=run.id, node=node.name
        ) from exc
    if not isinstance(raw, list | tuple):
        raise DelegationError(
            f"each= must give a list to fan out over, got {type(raw).__name__}",
            run_id=run.id,
            node=node.name,
        )
    return list(raw)  # pyright: ignore[reportUnknownArgumentType]


def _child_input(run: Run[Any], node: DelegateNode, item: Any, fan_out: bool) -> Any:
    fn = node.input
    if fn is None:
        return item if fan_out else run.state.model_dump()
    try:
        if fan_out:
            return fn(run.state, item) if _arity(fn) == 2 else fn(item)
        return fn(run.state)
    except Exception as exc:
        which = f" for item {item!r}" if fan_out else ""
        raise DelegationError(
            f"input={getattr(fn, '__name__', 'function')} raised {type(exc).__name__}{which}: {exc}",
            run_id=run.id,
            node=node.name,
        ) from exc


def _child_ids(run: Run[Any], node: DelegateNode, count: int, fan_out: bool) -> list[RunId]:
    base = f"{run.id}-{node.name}-{run.seq}"
    return [RunId(f"{base}-{i}" if fan_out else base) for i in range(count)]


async def _child(
    rt: Runtime, graph: FrozenGraph[Any, Any], run_id: RunId, data: Any, parent: Run[Any]
) -> Run[Any]:
    try:
        await rt.store.get_run(run_id)
    except RunNotFoundError:
        return await rt.start(graph, data, run_id=run_id, parent_run=parent.id, deps=parent.deps)
    return await rt.resume(run_id, graph, deps=parent.deps, as_child=True)


async def run_delegate(run: Run[Any], node: DelegateNode) -> dict[str, Any] | None:
    """Execute a delegate node: start (or find) its children, wait, join their outputs."""
    rt = run.runtime
    graph = rt.register(node.graph)
    items = _items(run, node)
    fan_out = items is not None
    work = items if items is not None else [None]
    inputs: list[Any] = []
    for i, item in enumerate(work):
        data = _child_input(run, node, item, fan_out)
        try:
            inputs.append(graph.schema.validate_input(data, what=f"the input of child {i}"))
        except InputValidationError as err:
            raise DelegationError(
                f"child {i} of graph {graph.name!r}: {err}", run_id=run.id, node=node.name
            ) from None
    ids = _child_ids(run, node, len(work), fan_out)
    results: list[RunResult[Any] | None] = [None] * len(work)
    handles: dict[int, Run[Any]] = {}
    limit = anyio.CapacityLimiter(node.concurrency or max(1, len(work)))
    failed = anyio.Event()

    async def one(i: int) -> None:
        async with limit, slot(rt.limiter):
            if failed.is_set() and node.on_error == "fail_fast":
                return
            handle = await _child(rt, graph, ids[i], inputs[i], run)
            handles[i] = handle
            if handle.steps == 0 and handle.active:
                run.publish(
                    ChildRunStarted(
                        run_id=run.id, step=run.steps, node=node.name, child=handle.id, index=i
                    )
                )
            result = await handle.wait()
            results[i] = result
            if result.status in (RunStatus.FAILED, RunStatus.CANCELLED):
                failed.set()
                if node.on_error == "fail_fast":
                    for j, other in handles.items():
                        if j != i and other.active:
                            await other.cancel(f"sibling child {handle.id} failed")

    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(work)):
                tg.start_soon(one, i)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            for handle in handles.values():
                if not handle.status.is_terminal:
                    await handle.cancel("the parent run was cancelled")
        raise
    outcomes = [
        ChildOutcome(
            index=i,
            item=work[i] if fan_out else None,
            run_id=ids[i],
            status=r.status if r is not None else RunStatus.CANCELLED,
            output=r.output if r is not None else None,
            reason=(r.reason if r is not None else "not started: a sibling failed first"),
        )
        for i, r in enumerate(results)
    ]
    waiting = [o for o in outcomes if o.status in (RunStatus.WAITING, RunStatus.NEEDS_ATTENTION)]
    broken = [o for o in outcomes if o.status in (RunStatus.FAILED, RunStatus.CANCELLED)]
    if broken and (node.on_error == "fail_fast" or not fan_out):
        first = next((o for o in broken if o.status is RunStatus.FAILED), broken[0])
        raise ChildRunError(
            f"child run {first.run_id} of graph {graph.name!r} {first.status.value}: {first.reason}",
            child_run_id=first.run_id,
            run_id=run.id,
            node=node.name,
        )
    if waiting:
        w = waiting[0]
        more = f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""
        raise Pause(f"waiting for child run {w.run_id}{more}: {w.reason}")
    return _join(run, node, outcomes, fan_out)


def _join(
    run: Run[Any], node: DelegateNode, outcomes: list[ChildOutcome], fan_out: bool
) -> dict[str, Any] | None:
    collect = node.on_error == "collect" and fan_out
    if node.output is None:
        return None
    if isinstance(node.output, str):
        if fan_out:
            return {node.output: [o.output for o in outcomes]}
        return {node.output: outcomes[0].output}
    value: Any = outcomes if collect else [o.output for o in outcomes]
    if not fan_out:
        value = outcomes[0].output
    try:
        changes: Any = node.output(value, run.state)
    except Exception as exc:
        raise DelegationError(
            f"output= raised {type(exc).__name__}: {exc}", run_id=run.id, node=node.name
        ) from exc
    if changes is not None and not isinstance(changes, Mapping):
        raise DelegationError(
            f"output= must return a dict of changes, got {type(changes).__name__}",
            run_id=run.id,
            node=node.name,
        )
    return dict(cast(Mapping[str, Any], changes)) if changes is not None else None
