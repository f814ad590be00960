"""Making tool calls: ``ctx.tools``, and the engine behind every call.

Every call goes through the same path, whoever makes it (a declarative tool node or
node code): journal replay, lookup, argument validation, guardrails, budget, rate
limits, a durable "started" mark, the call itself (timeout, retry), result
validation, and an audit row. Node code sees only typed errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from pydantic import ValidationError
from pydantic_core import to_json, to_jsonable_python

from graphorch._record import replace

from .delegation import slot as hold_slot
from .events import ToolCalled
from .exceptions import (
    BudgetExceededError,
    NeedsAttentionError,
    PolicyDeniedError,
    RateLimitedError,
    RunError,
    ToolArgumentsError,
    ToolError,
    ToolFailedError,
    ToolResultError,
    ToolTimeoutError,
    UnknownToolError,
)
from .policies import Guardrails, RateLimiter, ToolRequest, budget_problem
from .store.journal import CallStatus, ToolCallRecord
from .tools import RateLimit, Tool, ToolContext, ToolRegistry

if TYPE_CHECKING:
    from .nodes import ToolNode
    from .runs import Run

__all__ = ["CallEngine", "ToolBox", "run_tool_node"]

_ERRORS: dict[str, type[ToolError]] = {
    cls.__name__: cls
    for cls in (ToolFailedError, ToolTimeoutError, ToolResultError, ToolArgumentsError)
}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CallLedger:
    """What one run has spent and journaled; lives on the run handle."""

    calls: int = 0
    cost: float = 0.0
    replay: dict[str, ToolCallRecord] = field(default_factory=lambda: {})
    unsent: list[ToolCallRecord] = field(default_factory=lambda: [])
    budget_error: BudgetExceededError | None = None
    attention: NeedsAttentionError | None = None

    def stop_error(self) -> RunError | None:
        """An error that stops the run even if node code caught it."""
        return self.attention or self.budget_error


class CallEngine:
    """The runtime's tool-call machinery: one per runtime, shared by its runs."""

    def __init__(self, registry: ToolRegistry, guardrails: Guardrails) -> None:
        self.registry = registry
        self.guardrails = guardrails
        self.limiter = RateLimiter()

    def allowed(self, role: str) -> list[str]:
        """The tools ``role`` may call."""
        return self.guardrails.allowed_tools(role, self.registry.names())

    async def call(
        self, run: Run[Any], node: str, index: int, name: str, args: Mapping[str, Any]
    ) -> Any:
        """Make (or replay) call number ``index`` of ``node`` in the run's current step."""
        ledger = run.ledger
        key = f"{run.id}:{run.seq}:{node}:{index}"
        known = ledger.replay.get(key)
        if known is not None and known.status is not CallStatus.STARTED:
            return self._replay(run, node, known)
        tool = self.registry.get(name)
        role = run.graph.role
        redacted = self._redact(name, args)
        if tool is None:
            err = UnknownToolError(
                f"no tool named {name!r}; registered: {', '.join(self.registry.names()) or 'none'}",
                tool=name,
                run_id=run.id,
                node=node,
                key=key,
            )
            self._audit(run, node, name, key, redacted, "failed", "unknown_tool", error=err)
            raise err
        required = run.graph.approval_required
        if name in required and name not in run.graph.nodes[node].calls_declared():
            err = PolicyDeniedError(
                f"node {node!r} calls {name!r}, which needs approval, without declaring it "
                f"(tool= or uses=); the approval guarantee cannot be checked for it",
                tool=name,
                rule="undeclared_tool",
                run_id=run.id,
                node=node,
                key=key,
            )
            self._audit(run, node, name, key, redacted, "denied", "undeclared_tool", error=err)
            raise err
        if known is not None and not tool.idempotent:
            err = NeedsAttentionError(
                f"call {key} to {name!r} started before the process stopped and its outcome "
                f"is unknown; {name!r} is not idempotent, so it is not repeated. Mark it done "
                f"(with its result) or failed, then resume",
                key=key,
                tool=name,
                run_id=run.id,
                node=node,
            )
            ledger.attention = err
            raise err
        try:
            valid = tool.validate_args(args)
        except ValidationError as verr:
            err = ToolArgumentsError(
                f"arguments for {name!r} do not fit its schema: {tool.describe_error(verr)}",
                tool=name,
                run_id=run.id,
                node=node,
                key=key,
            )
            self._audit(run, node, name, key, redacted, "failed", "invalid_arguments", error=err)
            raise err from None
        request = ToolRequest(
            run_id=run.id,
            graph=run.graph.name,
            role=role,
            node=node,
            tool=tool,
            args=valid,
            read_only=self.guardrails.is_read_only(role),
            calls_so_far=ledger.calls,
            cost_so_far=ledger.cost,
        )
        decision = self.guardrails.check(request)
        if decision.needs_approval:
            try:
                await run.approvals.gate_call(run, node, key, name, redacted)
            except PolicyDeniedError as err:
                self._audit(run, node, name, key, redacted, "denied", "approval", error=err)
                raise
        elif not decision.allowed:
            err = PolicyDeniedError(
                decision.reason, tool=name, rule=decision.rule, run_id=run.id, node=node, key=key
            )
            self._audit(run, node, name, key, redacted, "denied", decision.rule, error=err)
            raise err
        problem = budget_problem(self.guardrails.budget, ledger.calls, ledger.cost, tool.cost)
        if problem is not None:
            err = BudgetExceededError(problem, run_id=run.id, node=node)
            ledger.budget_error = err
            self._audit(run, node, name, key, redacted, "denied", "budget", error=err)
            raise err
        ledger.calls += 1
        ledger.cost += tool.cost
        started = ToolCallRecord(
            key=key,
            run_id=run.id,
            seq=run.seq,
            node=node,
            index=index,
            tool=name,
            args=to_json(redacted),
            status=CallStatus.STARTED,
            started_at=_now(),
            cost=tool.cost,
        )
        if not tool.idempotent:
            # Durable before the effect: a crash mid-call must leave a trace, so a
            # resumed run asks a person instead of repeating it. An idempotent call
            # cut short is simply made again, so it needs no mark (and no round trip).
            await run.journal_started(started)
        try:
            # the slot is taken right before the call, so calls (not marks) obey the limit
            await self._rate_limit(run, node, tool, key, redacted)
        except RateLimitedError as err:
            ledger.calls -= 1
            ledger.cost -= tool.cost
            self._finish(run, started, None, err)
            raise
        began = time.perf_counter()
        try:
            result = await self._execute(run, node, tool, valid, key)
        except ToolError as err:
            self._finish(run, started, None, err)
            duration = time.perf_counter() - began
            self._audit(run, node, name, key, redacted, "failed", "allow", duration, err)
            raise
        self._finish(run, started, result, None)
        duration = time.perf_counter() - began
        self._audit(run, node, name, key, redacted, "succeeded", "allow", duration)
        return result

    async def take_slots(
        self,
        run: Run[Any],
        node: str,
        name: str,
        key: str,
        own: tuple[tuple[str, ...], RateLimit] | None,
    ) -> None:
        """Take a slot under the call's own limit (if any) and every guardrail limit.

        Raises:
            RateLimitedError: a limit had no free slot within its ``max_wait``.
        """
        limits = [own] if own is not None else []
        limits += [
            (("all", run.id if limit.scope == "run" else ""), limit)
            for limit in self.guardrails.rate_limits
        ]
        for lkey, limit in limits:
            if await self.limiter.acquire(lkey, limit) is not None:
                raise RateLimitedError(
                    f"rate limit of {limit.calls} calls per {limit.per:g}s "
                    f"({limit.scope}) had no free slot within {limit.max_wait:g}s",
                    tool=name,
                    rule="rate_limit",
                    run_id=run.id,
                    node=node,
                    key=key,
                )

    async def _rate_limit(
        self, run: Run[Any], node: str, tool: Tool, key: str, redacted: Mapping[str, Any]
    ) -> None:
        own = None
        if tool.rate_limit is not None:
            scope_key = run.id if tool.rate_limit.scope == "run" else ""
            own = (("tool", tool.name, scope_key), tool.rate_limit)
        try:
            await self.take_slots(run, node, tool.name, key, own)
        except RateLimitedError as err:
            self._audit(run, node, tool.name, key, redacted, "denied", "rate_limit", error=err)
            raise

    async def _execute(
        self, run: Run[Any], node: str, tool: Tool, args: dict[str, Any], key: str
    ) -> Any:
        retry = tool.retry
        attempts = retry.attempts if retry is not None else 1
        attempt = 1
        while True:
            call_args = dict(args)
            if tool.context_param is not None:
                call_args[tool.context_param] = ToolContext(
                    run_id=run.id,
                    node=node,
                    tool=tool.name,
                    idempotency_key=key,
                    attempt=attempt,
                    deps=run.deps,
                )
            try:
                if tool.timeout is None:
                    result = await _invoke(tool, call_args)
                else:
                    with anyio.fail_after(tool.timeout):
                        result = await _invoke(tool, call_args)
            except Exception as exc:
                if isinstance(exc, TimeoutError) and tool.timeout is not None:
                    error: ToolError = ToolTimeoutError(
                        f"{tool.name!r} ran past its timeout of {tool.timeout:g}s",
                        tool=tool.name,
                        run_id=run.id,
                        node=node,
                        key=key,
                    )
                else:
                    error = ToolFailedError(
                        f"{tool.name!r} raised {type(exc).__name__}: {exc}",
                        tool=tool.name,
                        run_id=run.id,
                        node=node,
                        key=key,
                    )
                    error.__cause__ = exc
                if retry is None or attempt >= attempts or not isinstance(exc, retry.on):
                    if attempt > 1:
                        error.reason += f" (after {attempt} attempts)"
                    raise error from exc
                await anyio.sleep(retry.delay(attempt))
                attempt += 1
                continue
            return self._check_result(run, node, tool, key, result)

    def _check_result(self, run: Run[Any], node: str, tool: Tool, key: str, result: Any) -> Any:
        if tool.result_adapter is None:
            value = result
        else:
            try:
                value = tool.result_adapter.validate_python(result)
            except ValidationError as err:
                raise ToolResultError(
                    f"{tool.name!r} returned {type(result).__name__}, which does not fit its "
                    f"declared result type: {tool.describe_error(err)}",
                    tool=tool.name,
                    run_id=run.id,
                    node=node,
                    key=key,
                ) from None
        try:
            to_json(value)
        except Exception as err:
            raise ToolResultError(
                f"{tool.name!r} returned a value that cannot be journaled as JSON: {err}",
                tool=tool.name,
                run_id=run.id,
                node=node,
                key=key,
            ) from None
        return value

    def _finish(
        self, run: Run[Any], started: ToolCallRecord, result: Any, error: ToolError | None
    ) -> None:
        if error is None:
            record = replace(
                started,
                status=CallStatus.SUCCEEDED,
                result=to_json(result),
                finished_at=_now(),
            )
        else:
            record = replace(
                started,
                status=CallStatus.FAILED,
                error=error.reason,
                error_type=type(error).__name__,
                finished_at=_now(),
            )
        run.ledger.unsent.append(record)
        run.ledger.replay[record.key] = record

    def _replay(self, run: Run[Any], node: str, record: ToolCallRecord) -> Any:
        run.ledger.calls += 1
        run.ledger.cost += record.cost
        args = json.loads(record.args)
        if record.status is CallStatus.SUCCEEDED:
            self._audit(run, node, record.tool, record.key, args, "replayed", "journal")
            value = json.loads(record.result) if record.result is not None else None
            tool = self.registry.get(record.tool)
            if tool is not None and tool.result_adapter is not None:
                value = tool.result_adapter.validate_python(value)
            return value
        cls = _ERRORS.get(record.error_type or "", ToolFailedError)
        err = cls(
            record.error or "failed", tool=record.tool, run_id=run.id, node=node, key=record.key
        )
        self._audit(run, node, record.tool, record.key, args, "replayed", "journal", error=err)
        raise err

    def _redact(self, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        redact = self.guardrails.redact
        shown = redact(name, args) if redact is not None else args
        return dict(to_jsonable_python(dict(shown), fallback=repr))

    def _audit(
        self,
        run: Run[Any],
        node: str,
        tool: str,
        key: str,
        args: Mapping[str, Any],
        outcome: str,
        decision: str,
        duration: float = 0.0,
        error: RunError | None = None,
    ) -> None:
        run.publish(
            ToolCalled(
                run_id=run.id,
                step=run.steps,
                role=run.graph.role,
                node=node,
                tool=tool,
                key=key,
                args=dict(args),
                outcome=outcome,
                decision=decision,
                duration=round(duration, 6),
                error=None if error is None else f"{type(error).__name__}: {error.reason}",
            )
        )


async def _invoke(tool: Tool, args: dict[str, Any]) -> Any:
    if tool.is_async:
        return await tool.fn(**args)
    return await anyio.to_thread.run_sync(lambda: tool.fn(**args), abandon_on_cancel=True)


class ToolBox:
    """``ctx.tools``: the tools this run's role may call, each call policed and journaled.

    Example::

        hits = await ctx.tools.call("search", query=state.question)
        a, b = await ctx.tools.gather(("search", {"query": "x"}), ("search", {"query": "y"}))
    """

    def __init__(self, engine: CallEngine, run: Run[Any], node: str) -> None:
        self._engine = engine
        self._run = run
        self._node = node
        self._index = 0

    def __repr__(self) -> str:
        return f"<ToolBox {self.names()}>"

    def names(self) -> list[str]:
        """The tools this run's role may call."""
        return self._engine.allowed(self._run.graph.role)

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def schema(self, name: str) -> dict[str, Any]:
        """The JSON schema of a tool's arguments."""
        tool = self._engine.registry.get(name)
        if tool is None or name not in self.names():
            raise UnknownToolError(
                f"no tool {name!r} for role {self._run.graph.role!r}",
                tool=name,
                run_id=self._run.id,
                node=self._node,
            )
        return tool.json_schema()

    def _next_index(self) -> int:
        index = self._index
        self._index += 1
        return index

    async def call(self, name: str, /, **args: Any) -> Any:
        """Call one tool and return its (validated) result.

        Raises:
            ToolError: the call was refused or failed (see the subclasses).
        """
        return await self._engine.call(self._run, self._node, self._next_index(), name, args)

    async def gather(self, *calls: tuple[str, Mapping[str, Any]]) -> list[Any]:
        """Make several calls in parallel; results in the order given.

        Every call runs to its end (a call cut off half-way would leave its effect
        unknown); then the first failure, if any, is raised.
        """
        indexed = [(self._next_index(), name, args) for name, args in calls]
        results: list[Any] = [None] * len(indexed)
        failures: list[BaseException] = []

        async def one(slot: int, index: int, name: str, args: Mapping[str, Any]) -> None:
            try:
                async with hold_slot(self._run.runtime.limiter):
                    results[slot] = await self._engine.call(
                        self._run, self._node, index, name, args
                    )
            except Exception as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for slot, (index, name, args) in enumerate(indexed):
                tg.start_soon(one, slot, index, name, args)
        if failures:
            raise failures[0]
        return results

    async def call_many(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Any]:
        """Same as :meth:`gather`, taking a list."""
        return await self.gather(*calls)


async def run_tool_node(run: Run[Any], node: ToolNode, attempt: int) -> Any:
    """Execute a tool node: one declarative call, or the node's function with ctx.tools."""
    from .runs import invoke_node_fn

    if node.fn is not None:
        return await invoke_node_fn(run, node, node.fn, attempt)
    assert node.tool is not None
    args: Any
    if node.args is None:
        args = {}
    elif callable(node.args):
        try:
            args = node.args(run.state)
        except Exception as exc:
            raise ToolArgumentsError(
                f"args= of node {node.name!r} raised {type(exc).__name__}: {exc}",
                tool=node.tool,
                run_id=run.id,
                node=node.name,
            ) from exc
        if not isinstance(args, Mapping):
            raise ToolArgumentsError(
                f"args= of node {node.name!r} returned {type(args).__name__}, not a dict",
                tool=node.tool,
                run_id=run.id,
                node=node.name,
            )
    else:
        args = node.args
    box = ToolBox(run.engine, run, node.name)
    result = await box.call(node.tool, **args)
    return {node.result: result} if node.result is not None else None
