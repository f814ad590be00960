"""The five node kinds: plan, tool, delegate, approve, end.

Each kind is its own frozen type, so the runtime, the renderer and the policies can tell
them apart. Nodes are built by :class:`~graphorch.Graph`'s builder methods.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from graphorch._record import KwRecord, Record, field

if TYPE_CHECKING:
    from .graph import Graph

__all__ = [
    "ApprovalOutcome",
    "ApproveNode",
    "Backtrack",
    "DelegateNode",
    "EndNode",
    "Node",
    "NodeKind",
    "PlanNode",
    "Retry",
    "ToolNode",
    "approved",
    "expired",
    "rejected",
]


class NodeKind(enum.StrEnum):
    """The five kinds of node."""

    PLAN = "plan"
    TOOL = "tool"
    DELEGATE = "delegate"
    APPROVE = "approve"
    END = "end"


class Retry(Record):
    """Retry a failing node with exponential backoff.

    Attributes:
        attempts: total tries, the first included (``Retry(3)``: up to 2 retries).
        backoff: seconds before the first retry.
        multiplier: each further delay is the previous one times this.
        max_delay: cap on any one delay.
        on: exception types worth retrying; others fail the node at once.
    """

    attempts: int = 3
    backoff: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 30.0
    on: tuple[type[BaseException], ...] = (Exception,)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_delay, self.backoff * self.multiplier ** (attempt - 1))


class ApprovalOutcome(Record):
    """An edge condition on an approve node's decision: ``when=go.approved``.

    Use :data:`approved`, :data:`rejected` or :data:`expired`. An expired request takes
    the ``expired`` edge when there is one, else the ``rejected`` edge.
    """

    outcome: str

    @property
    def __name__(self) -> str:  # shown as the edge's label
        return self.outcome

    def __call__(self, state: Any) -> bool:
        raise TypeError(
            f"go.{self.outcome} only routes edges that leave an approve node"
        )  # the runtime matches it against the decision instead


approved = ApprovalOutcome("approved")
"""Edge condition: the person approved (or approved with edits)."""

rejected = ApprovalOutcome("rejected")
"""Edge condition: the person rejected (also taken on expiry without an expired edge)."""

expired = ApprovalOutcome("expired")
"""Edge condition: nobody decided before the request expired."""


class Backtrack(Record):
    """Returned by a node to send the run back to an earlier node.

    The target must be listed in the node's ``backtrack=`` and have run before in this
    run. It sees why through ``ctx.backtracked``.

    Attributes:
        to: the node to go back to.
        reason: what failed, shown to the target and recorded in the events.
        update: changes to the state made on the way back.
    """

    to: str
    reason: str = ""
    update: Mapping[str, Any] | None = None


def _arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments a user function takes (1: state, 2: state, ctx)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return len(positional)


def _is_number(value: object) -> bool:
    """A real int or float (bool is not a number of seconds or visits)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    """A real int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_async_callable(fn: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    call: object = getattr(fn, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _has_signature(fn: Callable[..., Any]) -> bool:
    """False for callables (some builtins) whose parameters cannot be inspected."""
    try:
        inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return True


class Node(KwRecord):
    """What every node kind has.

    Attributes:
        name: unique within its graph.
        retry: retry policy for failures, or None.
        timeout: seconds one attempt may take, or None.
        max_visits: how often the node may run in one run (loop detection), or None.
        backtrack: the earlier nodes it may send the run back to.
        description: free text for diagrams and docs.
    """

    kind: ClassVar[NodeKind]
    name: str
    retry: Retry | None = None
    timeout: float | None = None
    max_visits: int | None = None
    backtrack: tuple[str, ...] = ()
    description: str | None = None

    def calls_declared(self) -> tuple[str, ...]:
        """The tools this node declared it calls (tool nodes: ``tool=`` or ``uses=``)."""
        return ()

    def problems(self) -> list[str]:
        """What is wrong with this node's parameters (empty when all is well)."""
        found: list[str] = []
        if self.retry is not None and (
            not isinstance(self.retry, Retry)  # pyright: ignore[reportUnnecessaryIsInstance]
            or not _is_count(self.retry.attempts)
            or self.retry.attempts < 1
        ):
            found.append(
                f"node {self.name!r}: retry= takes go.Retry(attempts>=1) or an int >= 1, "
                f"got {self.retry!r}"
            )
        if self.timeout is not None and (not _is_number(self.timeout) or self.timeout <= 0):
            found.append(
                f"node {self.name!r}: timeout= must be a positive number of seconds, "
                f"got {self.timeout!r}"
            )
        if self.max_visits is not None and (not _is_count(self.max_visits) or self.max_visits < 1):
            found.append(
                f"node {self.name!r}: max_visits= must be an int >= 1, got {self.max_visits!r}"
            )
        if not all(isinstance(b, str) for b in self.backtrack):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(
                f"node {self.name!r}: backtrack= must name nodes (str), got {list(self.backtrack)!r}"
            )
        return found


def _check_fn(node: str, what: str, fn: object, arities: tuple[int, ...]) -> list[str]:
    if fn is None:
        return []
    if not callable(fn):
        return [f"node {node!r}: {what} must be callable, got {type(fn).__name__}"]
    if _has_signature(fn) and _arity(fn) not in arities:
        want = " or ".join(str(a) for a in arities)
        return [f"node {node!r}: {what} must take {want} positional argument(s)"]
    return []


class PlanNode(Node):
    """Decides: computes changes or picks a route.

    Either runs ``fn(state[, ctx])``, or asks the runtime's model: ``prompt`` (text or
    ``fn(state[, ctx])`` giving text or messages) with a pydantic ``schema``; invalid
    answers are retried with the validation error fed back, up to ``attempts`` times.

    Attributes:
        result: where a model's answer goes: a state field, or ``fn(answer, state)``
            returning changes.
        model: which of the runtime's models to ask (None: its default).
    """

    kind: ClassVar[NodeKind] = NodeKind.PLAN
    fn: Callable[..., Any] | None = None
    prompt: str | Callable[..., Any] | None = None
    schema: type[Any] | None = None
    result: str | Callable[..., Any] | None = None
    attempts: int = 3
    model: str | None = None

    def problems(self) -> list[str]:
        found = Node.problems(self)
        if self.fn is None and self.prompt is None:
            found.append(f"node {self.name!r}: a plan node needs a function or a prompt=")
        if self.fn is not None and self.prompt is not None:
            found.append(f"node {self.name!r}: give a plan node a function or prompt=, not both")
        if self.prompt is not None:
            if not (isinstance(self.prompt, str) or callable(self.prompt)):  # pyright: ignore[reportUnnecessaryIsInstance]
                found.append(f"node {self.name!r}: prompt= must be text or a function")
            from pydantic import BaseModel

            if not (isinstance(self.schema, type) and issubclass(self.schema, BaseModel)):
                found.append(
                    f"node {self.name!r}: a prompt= needs schema=, a pydantic model of the answer"
                )
            if self.result is not None and not (
                isinstance(self.result, str) or callable(self.result)  # pyright: ignore[reportUnnecessaryIsInstance]
            ):
                found.append(f"node {self.name!r}: result= must name a field or be a function")
            if not _is_count(self.attempts) or self.attempts < 1:
                found.append(f"node {self.name!r}: attempts= must be an int >= 1")
            if callable(self.prompt):
                found += _check_fn(self.name, "prompt=", self.prompt, (1, 2))
            if callable(self.result):
                found += _check_fn(self.name, "result=", self.result, (2,))
        return found + _check_fn(self.name, "its function", self.fn, (1, 2))


class ToolNode(Node):
    """Calls registered tools, policed and journaled by the runtime.

    Declaratively (``tool=``, ``args=`` from the state, ``result=`` a state field) or
    from code through ``ctx.tools`` (``fn=``), declaring the tools it may call in
    ``uses=`` so approval requirements can be proven over the graph.
    """

    kind: ClassVar[NodeKind] = NodeKind.TOOL
    tool: str | None = None
    args: Callable[[Any], Mapping[str, Any]] | Mapping[str, Any] | None = None
    result: str | None = None
    fn: Callable[..., Any] | None = None
    uses: tuple[str, ...] = ()

    @property
    def calls(self) -> tuple[str, ...]:
        """The tools this node may call."""
        return (self.tool,) if self.tool is not None else self.uses

    def calls_declared(self) -> tuple[str, ...]:
        return self.calls

    def problems(self) -> list[str]:
        found = Node.problems(self)
        if self.tool is None and self.fn is None:
            found.append(f"node {self.name!r}: a tool node needs tool='name' or a function")
        if self.tool is not None and self.fn is not None:
            found.append(f"node {self.name!r}: give a tool node tool= or a function, not both")
        if self.tool is not None and (not isinstance(self.tool, str) or not self.tool):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"node {self.name!r}: tool= must be a tool's name (a non-empty str)")
        if self.args is not None and not (callable(self.args) or isinstance(self.args, Mapping)):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"node {self.name!r}: args= must be a dict or a function of the state")
        if self.result is not None and not isinstance(self.result, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"node {self.name!r}: result= must name a state field")
        if callable(self.args):
            found += _check_fn(self.name, "args=", self.args, (1,))
        if not all(isinstance(u, str) and u for u in self.uses):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"node {self.name!r}: uses= must list tool names")
        return found + _check_fn(self.name, "its function", self.fn, (1, 2))


class DelegateNode(Node):
    """Starts child runs of another graph (one, or one per item) and joins their outputs.

    Attributes:
        graph: the child graph.
        input: maps the parent's state (and, in a fan-out, the item) to the child's input.
        output: a state field to write the child's output to, or a function
            ``(output, state) -> changes``.
        each: fan-out: a state field holding a list, or a function returning one.
        concurrency: most children running at once in a fan-out.
        on_error: ``"fail_fast"`` cancels the siblings; ``"collect"`` gathers errors.
    """

    kind: ClassVar[NodeKind] = NodeKind.DELEGATE
    graph: Graph[Any, Any]
    input: Callable[..., Any] | None = None
    output: str | Callable[..., Mapping[str, Any]] | None = None
    each: str | Callable[[Any], Any] | None = None
    concurrency: int | None = None
    on_error: Literal["fail_fast", "collect"] = "fail_fast"

    def problems(self) -> list[str]:
        from .graph import Graph

        found = Node.problems(self)
        if not isinstance(self.graph, Graph):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(
                f"node {self.name!r}: graph= must be a graphorch Graph, "
                f"got {type(self.graph).__name__}"
            )
        if self.on_error not in ("fail_fast", "collect"):
            found.append(f"node {self.name!r}: on_error= must be 'fail_fast' or 'collect'")
        if self.concurrency is not None and (
            not _is_count(self.concurrency) or self.concurrency < 1
        ):
            found.append(f"node {self.name!r}: concurrency= must be an int >= 1")
        if self.output is not None and not (isinstance(self.output, str) or callable(self.output)):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"node {self.name!r}: output= must name a state field or be a function")
        if self.each is not None and not (isinstance(self.each, str) or callable(self.each)):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"node {self.name!r}: each= must name a list field or be a function")
        found += _check_fn(self.name, "input=", self.input, (1, 2))
        if callable(self.output):
            found += _check_fn(self.name, "output=", self.output, (2,))
        return found


class ApproveNode(Node):
    """Pauses the run until an allowed person approves, rejects or edits.

    Attributes:
        approvers: people allowed to decide.
        roles: roles whose members may decide.
        prompt: what is asked (text, or a function of the state).
        context: what a person needs to decide (a function of the state).
        expires_after: seconds until the request expires, or None.
        decision: a state field that receives ``"approved"`` or ``"rejected"``.
    """

    kind: ClassVar[NodeKind] = NodeKind.APPROVE
    approvers: frozenset[str] = field(default_factory=frozenset[str])
    roles: frozenset[str] = field(default_factory=frozenset[str])
    prompt: str | Callable[[Any], str] | None = None
    context: Callable[[Any], Mapping[str, Any]] | None = None
    expires_after: float | None = None
    decision: str | None = None

    def problems(self) -> list[str]:
        found = Node.problems(self)
        if not self.approvers and not self.roles:
            found.append(f"node {self.name!r}: an approve node needs approvers= or roles=")
        for what, names in (("approvers", self.approvers), ("roles", self.roles)):
            if not all(isinstance(a, str) and a for a in names):  # pyright: ignore[reportUnnecessaryIsInstance]
                found.append(f"node {self.name!r}: {what}= must be a set of non-empty names")
        if self.expires_after is not None and (
            not _is_number(self.expires_after) or self.expires_after <= 0
        ):
            found.append(f"node {self.name!r}: expires_after= must be a positive number of seconds")
        if self.prompt is not None and not (isinstance(self.prompt, str) or callable(self.prompt)):  # pyright: ignore[reportUnnecessaryIsInstance]
            found.append(f"node {self.name!r}: prompt= must be text or a function of the state")
        return found + _check_fn(self.name, "context=", self.context, (1,))


class EndNode(Node):
    """Finishes the run; ``output(state[, ctx])`` gives the run's output."""

    kind: ClassVar[NodeKind] = NodeKind.END
    output: Callable[..., Any] | None = None

    def problems(self) -> list[str]:
        return Node.problems(self) + _check_fn(self.name, "output=", self.output, (1, 2))
