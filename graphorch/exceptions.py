"""Every error graphorch raises, in one tree.

Definition errors mean the graph or its input is wrong and nothing has run or been
stored. Run errors happen while a run advances; they carry the ``run_id`` and, where
one is to blame, the ``node``. Store errors come from the durable layer.

    GraphorchError
    ├── DefinitionError                 the graph or a call's arguments are wrong
    │   ├── GraphDefinitionError        freezing found problems (all listed at once)
    │   └── InputValidationError        input or patch does not fit the state schema
    ├── RunError                        raised while a run advances (run_id, node)
    │   ├── NodeError                   a node function raised (after its retries)
    │   ├── NodeTimeoutError            a node ran past its timeout
    │   ├── EdgeConditionError          a ``when=`` predicate raised
    │   ├── StateUpdateError            a node returned a bad change
    │   │   ├── ConflictingUpdateError  parallel branches wrote one field, no reducer
    │   │   └── UnserializableStateError  a value cannot be checkpointed
    │   ├── ToolError                   a tool call went wrong (tool, key)
    │   │   ├── UnknownToolError
    │   │   ├── ToolArgumentsError      arguments do not fit the tool's schema
    │   │   ├── ToolFailedError         the tool raised (after its retries)
    │   │   ├── ToolTimeoutError
    │   │   ├── ToolResultError         the result does not fit the declared type
    │   │   └── PolicyDeniedError       a guardrail refused the call (rule)
    │   │       └── RateLimitedError    no slot within the limit's max_wait
    │   ├── ModelError                  a model call went wrong (model, status_code, ...)
    │   │   ├── ModelOutputError        empty, not JSON, or wrong shape (raw, feedback, usage)
    │   │   ├── ModelRefusalError       the model declined (refusal, usage)
    │   │   ├── ModelRateLimitError     HTTP 429 after the retries
    │   │   ├── ModelUnavailableError   HTTP 5xx or unreachable after the retries
    │   │   └── ModelTimeoutError       past its timeout, retries included
    │   ├── NeedsAttentionError         a call's outcome is unknown after a crash
    │   ├── DelegationError             a delegate node's mapping or items are wrong
    │   ├── ChildRunError               a child run failed or was cancelled
    │   ├── ApprovalError               deciding an approval went wrong (approval_id)
    │   │   ├── ApprovalNotFoundError
    │   │   ├── NotAuthorizedError      the decider may not decide this approval
    │   │   ├── AlreadyDecidedError     someone else decided first (or it expired)
    │   │   └── ApprovalRejectedError   a person said no and no edge handles it
    │   ├── RunLimitError               a stopping rule ended the run
    │   │   ├── MaxStepsExceededError
    │   │   ├── VisitLimitExceededError
    │   │   ├── RunTimeoutError
    │   │   └── BudgetExceededError     tool calls or cost over the run's budget
    │   ├── RunCancelledError
    │   ├── RunNotActiveError           stepping a run that has already stopped
    │   └── LeaseLostError              another owner took over the run
    ├── RenderError                     a diagram could not be drawn (e.g. no `dot`)
    ├── MissingDependencyError          an optional extra is not installed (also ImportError)
    └── StoreError                      the durable layer
        ├── RunNotFoundError
        ├── CheckpointNotFoundError
        ├── RunLockedError              another live process owns the run
        ├── IncompatibleGraphError      resuming with a graph that does not fit
        └── DatabaseError               not a graphorch database, corrupt, too new
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from graphorch.models.base import Usage

__all__ = [
    "AlreadyDecidedError",
    "ApprovalError",
    "ApprovalNotFoundError",
    "ApprovalRejectedError",
    "BudgetExceededError",
    "CheckpointNotFoundError",
    "ChildRunError",
    "ConflictingUpdateError",
    "DatabaseError",
    "DefinitionError",
    "DelegationError",
    "EdgeConditionError",
    "GraphDefinitionError",
    "GraphorchError",
    "IncompatibleGraphError",
    "InputValidationError",
    "LeaseLostError",
    "MaxStepsExceededError",
    "MissingDependencyError",
    "ModelError",
    "ModelOutputError",
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelTimeoutError",
    "ModelUnavailableError",
    "NeedsAttentionError",
    "NodeError",
    "NodeTimeoutError",
    "NotAuthorizedError",
    "PolicyDeniedError",
    "RateLimitedError",
    "RenderError",
    "RunCancelledError",
    "RunError",
    "RunLimitError",
    "RunLockedError",
    "RunNotActiveError",
    "RunNotFoundError",
    "RunTimeoutError",
    "StateUpdateError",
    "StoreError",
    "ToolArgumentsError",
    "ToolError",
    "ToolFailedError",
    "ToolResultError",
    "ToolTimeoutError",
    "UnknownToolError",
    "UnserializableStateError",
    "VisitLimitExceededError",
]


class GraphorchError(Exception):
    """Base of every error graphorch raises."""


class DefinitionError(GraphorchError, ValueError):
    """A graph, a node or an argument is defined wrongly; nothing ran."""


class GraphDefinitionError(DefinitionError):
    """Freezing a graph found one or more problems.

    Attributes:
        graph: the graph's name.
        problems: every problem found, each naming the nodes involved.
    """

    def __init__(self, graph: str, problems: Iterable[str]) -> None:
        self.graph = graph
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"graph {graph!r} has {n} problem{'s' if n != 1 else ''}:\n{lines}")


class InputValidationError(DefinitionError):
    """Input, a patch or an edit does not validate against the state schema."""

    def __init__(self, message: str, *, errors: list[str] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)


class RunError(GraphorchError):
    """An error raised while a run advances.

    Attributes:
        run_id: the run it happened in.
        node: the node to blame, if any.
        reason: the message without the run and node prefix.
    """

    def __init__(self, message: str, *, run_id: str | None = None, node: str | None = None):
        self.run_id = run_id
        self.node = node
        self.reason = message
        super().__init__(message)

    def __str__(self) -> str:
        # built when shown: the runtime fills run_id in after the error was raised
        where: list[str] = []
        if self.run_id is not None:
            where.append(f"run {self.run_id}")
        if self.node is not None:
            where.append(f"node {self.node!r}")
        prefix = f"[{', '.join(where)}] " if where else ""
        return prefix + self.reason


class NodeError(RunError):
    """A node function raised; ``__cause__`` is the original exception."""


class NodeTimeoutError(RunError):
    """A node ran past its ``timeout=``."""


class EdgeConditionError(RunError):
    """An edge's ``when=`` predicate raised."""


class StateUpdateError(RunError):
    """A node returned a change that does not fit the state schema.

    Attributes:
        field: the offending field, if one is to blame.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        node: str | None = None,
        field: str | None = None,
    ):
        self.field = field
        super().__init__(message, run_id=run_id, node=node)


class ConflictingUpdateError(StateUpdateError):
    """Parallel branches wrote the same field and the field has no reducer."""


class UnserializableStateError(StateUpdateError):
    """A state value cannot be serialized to JSON for checkpointing."""


class RunLimitError(RunError):
    """A stopping rule (steps, visits, time) ended the run."""


class MaxStepsExceededError(RunLimitError):
    """The run took more steps than ``max_steps``."""


class VisitLimitExceededError(RunLimitError):
    """A node was entered more often than its ``max_visits``."""


class RunTimeoutError(RunLimitError):
    """The run ran past its ``timeout``."""


class BudgetExceededError(RunLimitError):
    """The run spent its budget of tool calls or cost."""


class ToolError(RunError):
    """A tool call went wrong. Node code may catch it and route on it.

    Attributes:
        tool: the tool's name.
        key: the call's idempotency key, if it got one.
    """

    def __init__(
        self,
        message: str,
        *,
        tool: str,
        run_id: str | None = None,
        node: str | None = None,
        key: str | None = None,
    ):
        self.tool = tool
        self.key = key
        super().__init__(message, run_id=run_id, node=node)


class UnknownToolError(ToolError):
    """No tool of that name is registered."""


class ToolArgumentsError(ToolError):
    """The arguments do not validate against the tool's schema."""


class ToolFailedError(ToolError):
    """The tool raised; ``__cause__`` is the original exception."""


class ToolTimeoutError(ToolError):
    """The tool ran past its timeout."""


class ToolResultError(ToolError):
    """The tool returned something that does not fit its declared result type."""


class PolicyDeniedError(ToolError):
    """A guardrail refused the call.

    Attributes:
        rule: the rule that refused it (``role``, ``read_only``, ``rate_limit`` or a
            custom policy's name).
    """

    def __init__(
        self,
        message: str,
        *,
        tool: str,
        rule: str,
        run_id: str | None = None,
        node: str | None = None,
        key: str | None = None,
    ):
        self.rule = rule
        super().__init__(message, tool=tool, run_id=run_id, node=node, key=key)


class RateLimitedError(PolicyDeniedError):
    """No slot under a rate limit came free within its ``max_wait``."""


class NeedsAttentionError(RunError):
    """A non-idempotent call started before a crash and its outcome is unknown.

    An operator marks it done (with its result) or failed, then resumes the run.

    Attributes:
        key: the call's idempotency key.
        tool: the tool's name.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str,
        tool: str,
        run_id: str | None = None,
        node: str | None = None,
    ):
        self.key = key
        self.tool = tool
        super().__init__(message, run_id=run_id, node=node)


class DelegationError(RunError):
    """A delegate node's ``input=``, ``output=`` or ``each=`` raised or gave values
    that do not fit; raised before any child starts."""


class ChildRunError(RunError):
    """A child run failed or was cancelled.

    Attributes:
        child_run_id: the child run to look at.
    """

    def __init__(
        self,
        message: str,
        *,
        child_run_id: str,
        run_id: str | None = None,
        node: str | None = None,
    ):
        self.child_run_id = child_run_id
        super().__init__(message, run_id=run_id, node=node)


class ApprovalError(RunError):
    """Deciding an approval went wrong.

    Attributes:
        approval_id: the approval concerned, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        approval_id: str | None = None,
        run_id: str | None = None,
        node: str | None = None,
    ):
        self.approval_id = approval_id
        super().__init__(message, run_id=run_id, node=node)


class ApprovalNotFoundError(ApprovalError):
    """No pending approval matches (wrong run id or approval id)."""


class NotAuthorizedError(ApprovalError):
    """The decider is not among the approval's approvers or roles."""


class AlreadyDecidedError(ApprovalError):
    """The approval was decided by someone else first, or has expired."""


class ApprovalRejectedError(ApprovalError):
    """A person rejected (or nobody decided in time) and no edge handles it."""


class RunCancelledError(RunError):
    """The run was cancelled."""


class RunNotActiveError(RunError):
    """The run has already stopped (or waits for a person) and cannot step."""


class LeaseLostError(RunError):
    """This process lost the run's lease to another owner; it wrote nothing more."""


class MissingDependencyError(GraphorchError, ImportError):
    """An optional dependency is not installed; the message says which extra to install.

    Attributes:
        package: the missing distribution (``openai``).
        extra: the graphorch extra that brings it (``openai``).
    """

    def __init__(self, package: str, extra: str, *, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the {package!r} package, which is not installed; "
            f"install it with: pip install 'graphorch[{extra}]'",
            name=package,
        )


class ModelError(RunError):
    """A model call went wrong. Node code may catch it and route on it.

    Attributes:
        model: the model's name, if known.
        status_code: the provider's HTTP status, if one was received.
        retry_after: seconds the provider asked to wait, if it said.
        attempts: HTTP requests made for this call, retries included.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
        run_id: str | None = None,
        node: str | None = None,
    ) -> None:
        self.model = model
        self.status_code = status_code
        self.retry_after = retry_after
        self.attempts = attempts
        super().__init__(message, run_id=run_id, node=node)


OutputErrorKind = Literal["empty", "not_json", "schema"]


class ModelOutputError(ModelError):
    """The model answered, but not with what was asked: empty, not JSON, wrong shape.

    The call was made (and paid for): ``usage`` says what it cost. ``feedback`` is a
    message to send back to the model so it can correct itself.

    Attributes:
        kind: ``"empty"``, ``"not_json"`` or ``"schema"``.
        raw: the model's answer as received.
        errors: one line per problem (the JSON error, or each validation error).
        schema: the requested schema's name, if any.
        usage: tokens and cost of the call.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: OutputErrorKind,
        raw: str,
        errors: Sequence[str] = (),
        schema: str | None = None,
        usage: Usage | None = None,
        model: str | None = None,
        run_id: str | None = None,
        node: str | None = None,
    ) -> None:
        self.kind: OutputErrorKind = kind
        self.raw = raw
        self.errors = list(errors)
        self.schema = schema
        self.usage = usage
        super().__init__(message, model=model, run_id=run_id, node=node)

    @property
    def feedback(self) -> str:
        """A user message telling the model what was wrong with its answer."""
        if self.kind == "empty":
            problem = "Your previous answer was empty."
        elif self.kind == "not_json":
            problem = "Your previous answer was not valid JSON: " + "; ".join(self.errors)
        else:
            problem = "Your previous answer did not match the required schema:\n" + "\n".join(
                f"- {e}" for e in self.errors
            )
        target = f" matching the {self.schema} schema" if self.schema else ""
        return f"{problem}\nAnswer again with only a JSON object{target}, no other text."


class ModelRefusalError(ModelError):
    """The model declined to answer (a refusal, or a content filter stopped it).

    Attributes:
        refusal: the model's explanation, if it gave one.
        usage: tokens and cost of the call.
    """

    def __init__(
        self,
        message: str,
        *,
        refusal: str = "",
        usage: Usage | None = None,
        model: str | None = None,
        run_id: str | None = None,
        node: str | None = None,
    ) -> None:
        self.refusal = refusal
        self.usage = usage
        super().__init__(message, model=model, run_id=run_id, node=node)


class ModelRateLimitError(ModelError):
    """The provider answered HTTP 429 and kept doing so after the retries."""


class ModelUnavailableError(ModelError):
    """The provider answered HTTP 5xx, or could not be reached, after the retries."""


class ModelTimeoutError(ModelError):
    """The call ran past its timeout (retries and their waits included).

    Attributes:
        timeout: the timeout in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: float | None = None,
        model: str | None = None,
        attempts: int = 1,
        run_id: str | None = None,
        node: str | None = None,
    ) -> None:
        self.timeout = timeout
        super().__init__(message, model=model, attempts=attempts, run_id=run_id, node=node)


class RenderError(GraphorchError):
    """A graph or run could not be drawn: Graphviz's ``dot`` is missing or failed, the
    output format is unknown, or an overlay belongs to another graph."""


class StoreError(GraphorchError):
    """An error from the durable store."""


class RunNotFoundError(StoreError, KeyError):
    """No run with that id exists in the store."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(run_id)

    def __str__(self) -> str:
        return f"no run {self.run_id!r} in this store; list runs with `graphorch runs`"


class CheckpointNotFoundError(StoreError, KeyError):
    """No checkpoint with that id or sequence number exists for the run."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class RunLockedError(StoreError):
    """Another owner holds the run's lease.

    Attributes:
        owner: the holder (``"host:pid:token"`` for graphorch runtimes), if known.
        expires_at: when its lease runs out (seconds since the epoch), if known.
    """

    def __init__(
        self, message: str, *, owner: str | None = None, expires_at: float | None = None
    ) -> None:
        self.owner = owner
        self.expires_at = expires_at
        super().__init__(message)


class IncompatibleGraphError(StoreError):
    """The run was started with another graph, or its stored state no longer fits."""


class DatabaseError(StoreError):
    """The file is not a graphorch database, is corrupt, or is from a newer version."""
