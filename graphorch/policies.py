"""Guardrails: the checks the runtime applies to every tool call, never node code.

:class:`Guardrails` gathers them for a runtime: tool allowlists per role, read-only
mode, rate limits, budgets, and any :class:`Policy` of your own. A denial is a typed
:class:`~graphorch.PolicyDeniedError` the node can catch or route on, and an audit row.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import anyio

from graphorch._record import Record, field

from .exceptions import DefinitionError
from .tools import RateLimit, Tool

__all__ = [
    "Budget",
    "Decision",
    "Guardrails",
    "Policy",
    "RateLimiter",
    "ToolRequest",
]


class ToolRequest(Record):
    """A tool call about to happen, as a policy sees it.

    Attributes:
        run_id: the run making it.
        graph: the graph's name.
        role: the role the run acts under.
        node: the node making it.
        tool: the tool.
        args: the validated arguments.
        read_only: whether the run is in read-only mode.
        calls_so_far: tool calls the run made before this one.
        cost_so_far: cost the run spent before this one.
    """

    run_id: str
    graph: str
    role: str
    node: str
    tool: Tool
    args: Mapping[str, Any]
    read_only: bool
    calls_so_far: int
    cost_so_far: float


class Decision(Record):
    """A policy's verdict on a call: allowed, or denied with a reason.

    ``needs_approval`` asks a person instead of denying (read-only mode with routing).
    """

    allowed: bool
    rule: str
    reason: str = ""
    needs_approval: bool = False

    @classmethod
    def allow(cls, rule: str = "allow") -> Decision:
        """An allowing decision."""
        return cls(True, rule)

    @classmethod
    def deny(cls, rule: str, reason: str) -> Decision:
        """A denying decision naming the rule and why."""
        return cls(False, rule, reason)


@runtime_checkable
class Policy(Protocol):
    """A check of your own, e.g. "no refunds over 500".

    ``check`` returns None (no objection) or a :class:`Decision`; a denial stops the
    call. It must be quick and must not block (it runs on the event loop).
    """

    name: str

    def check(self, request: ToolRequest) -> Decision | None:
        """Judge one call."""
        ...


class Budget(Record):
    """Limits per run; exceeding one stops the run with that reason.

    Attributes:
        max_tool_calls: tool calls one run may make.
        max_cost: the summed ``cost`` of the tools (and models) one run may spend.
    """

    max_tool_calls: int | None = None
    max_cost: float | None = None


def _names(value: Iterable[str] | str) -> frozenset[str]:
    return frozenset((value,) if isinstance(value, str) else value)


class Guardrails(Record):
    """Every check the runtime applies to tool calls.

    Attributes:
        roles: the tools each role may call (``"*"`` for all). A role not listed may
            call nothing. None turns allowlists off (every role may call every tool).
        read_only: roles in read-only mode (True: all roles). Destructive tools are
            denied to them, or sent to a person with ``on_destructive="approve"``.
        on_destructive: ``"deny"`` or ``"approve"`` in read-only mode.
        approvers: who may approve a destructive call routed to a person.
        approver_roles: roles whose members may approve such a call.
        approval_expires_after: seconds until such a request expires (None: never).
        rate_limits: limits over every tool call (``scope="global"``) or per run
            (``scope="run"``); each tool's own ``rate_limit`` applies as well.
        budget: per-run limits on tool calls and cost (model calls' cost included).
        model_rate_limit: calls per period to each model, across all runs.
        policies: your own checks, run after the built-in ones.
        redact: maps a call's arguments to what the audit log keeps (hide secrets).
    """

    roles: Mapping[str, Iterable[str] | str] | None = None
    read_only: bool | Iterable[str] = False
    on_destructive: Literal["deny", "approve"] = "deny"
    approvers: frozenset[str] = field(default_factory=frozenset[str])
    approver_roles: frozenset[str] = field(default_factory=frozenset[str])
    approval_expires_after: float | None = None
    rate_limits: tuple[RateLimit, ...] = ()
    budget: Budget | None = None
    model_rate_limit: RateLimit | None = None
    policies: tuple[Policy, ...] = ()
    redact: Callable[[str, Mapping[str, Any]], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.on_destructive not in ("deny", "approve"):
            raise DefinitionError("Guardrails(on_destructive=...) must be 'deny' or 'approve'")
        for name in ("approvers", "approver_roles"):
            value = getattr(self, name)
            if isinstance(value, str):  # one name, not a set of letters
                object.__setattr__(self, name, frozenset((value,)))
            else:
                object.__setattr__(self, name, frozenset(value))
        if self.on_destructive == "approve" and not self.approvers and not self.approver_roles:
            raise DefinitionError(
                "Guardrails(on_destructive='approve') needs approvers= or approver_roles= "
                "(who may approve a destructive call)"
            )
        for limit in self.rate_limits:
            if not isinstance(limit, RateLimit):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise DefinitionError("Guardrails(rate_limits=...) takes go.RateLimit objects")
            if limit.scope == "tool":
                raise DefinitionError(
                    "a Guardrails rate limit has scope 'global' or 'run'; per-tool limits "
                    "belong on the tool: tools.tool(rate_limit=...)"
                )
        for policy in self.policies:
            if not isinstance(policy, Policy):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise DefinitionError(
                    f"{policy!r} is not a Policy: it needs a `name` and a `check(request)`"
                )

    def allowed_tools(self, role: str, available: Iterable[str]) -> list[str]:
        """The tools ``role`` may call among ``available``."""
        if self.roles is None:
            return sorted(available)
        allowed = _names(self.roles.get(role, ()))
        if "*" in allowed:
            return sorted(available)
        return sorted(t for t in available if t in allowed)

    def is_read_only(self, role: str) -> bool:
        """Whether ``role`` runs in read-only mode."""
        if isinstance(self.read_only, bool):
            return self.read_only
        return role in _names(self.read_only)

    def check(self, request: ToolRequest) -> Decision:
        """Apply the allowlist, read-only mode and every custom policy, in that order."""
        tool = request.tool
        if self.roles is not None:
            allowed = _names(self.roles.get(request.role, ()))
            if "*" not in allowed and tool.name not in allowed:
                return Decision.deny(
                    "role",
                    f"role {request.role!r} may not call {tool.name!r}"
                    + (f" (it may call: {', '.join(sorted(allowed))})" if allowed else ""),
                )
        if request.read_only and tool.destructive:
            if self.on_destructive == "approve":
                return Decision(
                    False,
                    "read_only",
                    f"{tool.name!r} is destructive and the run is read-only; "
                    f"a person must approve this call",
                    needs_approval=True,
                )
            return Decision.deny(
                "read_only", f"{tool.name!r} is destructive and the run is read-only"
            )
        for policy in self.policies:
            verdict = policy.check(request)
            if verdict is not None and not verdict.allowed:
                return verdict
        return Decision.allow()


class RateLimiter:
    """Sliding-window rate limits shared by every run of a runtime.

    Callers over a limit wait for a slot instead of failing, up to the limit's
    ``max_wait``; past that, :meth:`acquire` returns the seconds it would have taken.
    """

    def __init__(self) -> None:
        self._windows: dict[tuple[str, ...], deque[float]] = {}

    async def acquire(self, key: tuple[str, ...], limit: RateLimit) -> float | None:
        """Take a slot under ``limit`` for ``key``; None once taken, else the wait needed."""
        window = self._windows.setdefault(key, deque())
        waited = 0.0
        while True:
            now = anyio.current_time()
            while window and window[0] <= now - limit.per:
                window.popleft()
            if len(window) < limit.calls:
                window.append(now)
                return None
            delay = window[0] + limit.per - now
            if waited + delay > limit.max_wait:
                return waited + delay
            await anyio.sleep(delay)
            waited += delay

    def used(self, key: tuple[str, ...], per: float) -> int:
        """Slots taken for ``key`` in the last ``per`` seconds."""
        window = self._windows.get(key, ())
        now = anyio.current_time()
        return sum(1 for t in window if t > now - per)


def budget_problem(budget: Budget | None, calls: int, cost: float, next_cost: float) -> str | None:
    """Why one more call (costing ``next_cost``) would break ``budget``, or None."""
    if budget is None:
        return None
    if budget.max_tool_calls is not None and calls + 1 > budget.max_tool_calls:
        return f"budget of {budget.max_tool_calls} tool calls per run is spent"
    if budget.max_cost is not None and cost + next_cost > budget.max_cost + 1e-12:
        return (
            f"budget of {budget.max_cost:g} per run would be exceeded "
            f"(spent {cost:g}, this call costs {next_cost:g})"
        )
    return None
