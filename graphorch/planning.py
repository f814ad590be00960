"""Planning with a model: ``ctx.model``, and plan nodes that ask for a structured answer.

Model calls are journaled like tool calls: on resume a completed call is replayed from
the journal, not paid for again. Usage and cost count toward the run's budget; the
guardrails' rate limits apply. Invalid answers are retried with the validation error
fed back to the model, a bounded number of times, then raised (routable to an error
edge). A :class:`Plan` naming a tool the role may not use, or arguments that do not
fit the tool's schema, is refused before anything executes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_json

from graphorch._record import replace

from .events import ModelCalled
from .exceptions import (
    BudgetExceededError,
    DefinitionError,
    ModelError,
    ModelOutputError,
    RunError,
)
from .models.base import ChatModel, Completion, Message, Usage
from .nodes import PlanNode, _arity  # pyright: ignore[reportPrivateUsage]
from .store.journal import CallStatus, ToolCallRecord

if TYPE_CHECKING:
    from .context import Context
    from .runs import Run

__all__ = ["ModelBox", "Plan", "PlanStep", "run_model_plan"]


class PlanStep(BaseModel):
    """One step of a plan: call ``tool`` with ``args``."""

    tool: str = Field(description="the name of the tool to call")
    args: dict[str, Any] = Field(default_factory=dict, description="the tool's arguments")
    why: str = Field(default="", description="why this step helps reach the goal")


class Plan(BaseModel):
    """A plan of tool calls; plan nodes check every step against the role and schemas."""

    goal: str = Field(default="", description="what the plan achieves")
    steps: list[PlanStep] = Field(default_factory=list[PlanStep])


def _now() -> datetime:
    return datetime.now(UTC)


def _messages(prompt: Any) -> list[Message]:
    if isinstance(prompt, str):
        return [Message.user(prompt)]
    out: list[Message] = []
    for m in cast(Sequence[Any], prompt):
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, Mapping):
            entry = cast(Mapping[str, Any], m)
            out.append(Message(entry["role"], str(entry["content"])))
        else:
            raise DefinitionError(
                f"a prompt gives text, Messages or {{'role', 'content'}} dicts, got {m!r}"
            )
    return out


class ModelBox:
    """``ctx.model``: the runtime's model, every call journaled, budgeted and audited."""

    def __init__(self, run: Run[Any], node: str) -> None:
        self._run = run
        self._node = node
        self._index = 0

    def _model(self, name: str | None) -> ChatModel:
        models = self._run.runtime.models
        if not models:
            raise DefinitionError(
                "this runtime has no model; give one: Runtime(model=OpenAIModel(...)) or, "
                "offline, Runtime(model=graphorch.testing.ScriptedModel([...]))"
            )
        if name is None:
            return next(iter(models.values()))
        if name not in models:
            raise DefinitionError(f"no model named {name!r}; the runtime has {sorted(models)}")
        return models[name]

    async def complete(
        self,
        messages: str | Sequence[Message],
        schema: type[BaseModel] | None = None,
        *,
        timeout: float | None = None,
        model: str | None = None,
    ) -> Completion[Any]:
        """Ask the model (``model=``: one of the runtime's by name).

        Raises:
            ModelError: the typed model errors (output, refusal, rate limit, ...).
            BudgetExceededError: the run's cost budget is spent.
        """
        run = self._run
        chosen = self._model(model)
        msgs = _messages(messages)
        key = f"{run.id}:{run.seq}:{self._node}:m{self._index}"
        self._index += 1
        known = run.ledger.replay.get(key)
        if known is not None and known.status is CallStatus.SUCCEEDED and known.result:
            completion = Completion.from_dict(json.loads(known.result), schema)  # pyright: ignore[reportArgumentType]
            run.ledger.cost += completion.usage.cost
            self._audit(chosen.name, key, "replayed", completion.usage, 0.0)
            return cast(Completion[Any], completion)
        guard = run.runtime.guardrails
        budget = guard.budget
        if (
            budget is not None
            and budget.max_cost is not None
            and run.ledger.cost >= budget.max_cost
        ):
            err = BudgetExceededError(
                f"budget of {budget.max_cost:g} per run is spent (spent {run.ledger.cost:g})",
                run_id=run.id,
                node=self._node,
            )
            run.ledger.budget_error = err
            raise err
        await self._rate_limit(chosen.name, key)
        args = {
            "messages": [{"role": m.role, "content": m.content} for m in msgs],
            "schema": None if schema is None else schema.__name__,
        }
        started = ToolCallRecord(
            key=key,
            run_id=run.id,
            seq=run.seq,
            node=self._node,
            index=self._index - 1,
            tool=f"model:{chosen.name}",
            args=to_json(args),
            status=CallStatus.STARTED,
            started_at=_now(),
        )
        await run.journal_started(started)
        began = time.perf_counter()
        try:
            completion = await chosen.complete(msgs, schema, timeout=timeout)  # pyright: ignore[reportArgumentType, reportCallIssue]
        except ModelError as err:
            usage = getattr(err, "usage", None) or Usage()
            self._spend(usage)
            err.run_id, err.node = run.id, self._node
            self._record(started, None, err, usage)
            self._audit(chosen.name, key, "failed", usage, time.perf_counter() - began, err)
            raise
        completion = cast(Completion[Any], completion)
        self._spend(completion.usage)
        self._record(started, completion, None, completion.usage)
        self._audit(chosen.name, key, "succeeded", completion.usage, time.perf_counter() - began)
        # journal the answer now: a crash before the step commits must not pay for it again
        await run.journal_flush()
        return completion

    def _spend(self, usage: Usage) -> None:
        run = self._run
        run.ledger.cost += usage.cost
        budget = run.runtime.guardrails.budget
        if budget is not None and budget.max_cost is not None and run.ledger.cost > budget.max_cost:
            run.ledger.budget_error = BudgetExceededError(
                f"budget of {budget.max_cost:g} per run is spent (spent {run.ledger.cost:g})",
                run_id=run.id,
                node=self._node,
            )

    async def _rate_limit(self, model: str, key: str) -> None:
        run = self._run
        limit = run.runtime.guardrails.model_rate_limit
        own = (("model", model, ""), limit) if limit is not None else None
        await run.engine.take_slots(run, self._node, f"model:{model}", key, own)

    def _record(
        self,
        started: ToolCallRecord,
        completion: Completion[Any] | None,
        error: ModelError | None,
        usage: Usage,
    ) -> None:
        if completion is not None:
            record = replace(
                started,
                status=CallStatus.SUCCEEDED,
                result=to_json(completion.to_dict()),
                cost=usage.cost,
                finished_at=_now(),
            )
        else:
            assert error is not None
            record = replace(
                started,
                status=CallStatus.FAILED,
                error=error.reason,
                error_type=type(error).__name__,
                cost=usage.cost,
                finished_at=_now(),
            )
        self._run.ledger.unsent.append(record)
        self._run.ledger.replay[record.key] = record

    def _audit(
        self,
        model: str,
        key: str,
        outcome: str,
        usage: Usage,
        duration: float,
        error: RunError | None = None,
    ) -> None:
        run = self._run
        run.publish(
            ModelCalled(
                run_id=run.id,
                step=run.steps,
                role=run.graph.role,
                node=self._node,
                model=model,
                key=key,
                outcome=outcome,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost=usage.cost,
                duration=round(duration, 6),
                error=None if error is None else f"{type(error).__name__}: {error.reason}",
            )
        )


def plan_problems(run: Run[Any], plan: Plan) -> list[str]:
    """Why a plan cannot run under the run's role: unknown or forbidden tools, bad args."""
    engine = run.engine
    allowed = set(engine.allowed(run.graph.role))
    problems: list[str] = []
    for i, step in enumerate(plan.steps, 1):
        tool = engine.registry.get(step.tool)
        if tool is None or step.tool not in allowed:
            problems.append(
                f"steps.{i}.tool: {step.tool!r} is not a tool role {run.graph.role!r} may use "
                f"(allowed: {', '.join(sorted(allowed)) or 'none'})"
            )
            continue
        try:
            tool.validate_args(step.args)
        except ValidationError as err:
            problems.append(f"steps.{i}.args: {tool.describe_error(err)}")
    return problems


async def run_model_plan(run: Run[Any], node: PlanNode, ctx: Context[Any]) -> dict[str, Any]:
    """Execute a prompt-driven plan node; returns the changes to the state."""
    assert node.prompt is not None and node.schema is not None
    if callable(node.prompt):
        prompt = node.prompt(run.state) if _arity(node.prompt) == 1 else node.prompt(run.state, ctx)
    else:
        prompt = node.prompt
    messages = _messages(prompt)
    if ctx.backtracked is not None:
        messages.append(
            Message.user(
                f"Your previous answer led to a failure at {ctx.backtracked.source!r}: "
                f"{ctx.backtracked.reason}. Take this into account and answer again."
            )
        )
    if ctx.error is not None:
        messages.append(
            Message.user(
                f"The previous attempt failed at {ctx.error.source!r} with "
                f"{ctx.error.error_type}: {ctx.error.reason}. Take this into account."
            )
        )
    box = ModelBox(run, node.name)
    failure: ModelOutputError | None = None
    for _ in range(node.attempts):
        try:
            completion = await box.complete(messages, node.schema, model=node.model)
        except ModelOutputError as err:
            failure = err
            messages += [Message.assistant(err.raw or "(empty)"), Message.user(err.feedback)]
            continue
        value = completion.value
        problems = plan_problems(run, value) if isinstance(value, Plan) else []
        if problems:
            failure = ModelOutputError(
                "the plan was refused: " + "; ".join(problems),
                kind="schema",
                raw=completion.raw,
                errors=problems,
                schema=node.schema.__name__,
                usage=completion.usage,
                model=completion.model,
                run_id=run.id,
                node=node.name,
            )
            messages += [Message.assistant(completion.raw), Message.user(failure.feedback)]
            continue
        return _result(run, node, value)
    assert failure is not None
    failure.run_id, failure.node = run.id, node.name
    failure.reason += f" (after {node.attempts} attempts)"
    raise failure


def _result(run: Run[Any], node: PlanNode, value: Any) -> dict[str, Any]:
    if node.result is None:
        return {}
    if isinstance(node.result, str):
        return {node.result: value}
    changes = node.result(value, run.state)
    return dict(changes) if changes else {}
