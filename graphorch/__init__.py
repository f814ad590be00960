"""graphorch: reliable AI agent orchestration.

Typed graphs of plan, tool, delegate, approve and end nodes, run by an anyio runtime
that checkpoints every step, so runs resume after a crash and backtrack to any step.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from .context import BacktrackInfo, Context, ErrorInfo
from .delegation import ChildOutcome
from .events import (
    ApprovalDecided,
    ApprovalRefused,
    ApprovalRequested,
    Backtracked,
    CallResolved,
    ChildRunStarted,
    CustomEvent,
    ErrorRouted,
    Event,
    ModelCalled,
    Retrying,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunNeedsAttention,
    RunResumed,
    RunStarted,
    RunStopped,
    RunWaiting,
    StepFinished,
    StepStarted,
    ToolCalled,
)
from .exceptions import (
    AlreadyDecidedError,
    ApprovalError,
    ApprovalNotFoundError,
    ApprovalRejectedError,
    BudgetExceededError,
    CheckpointNotFoundError,
    ChildRunError,
    ConflictingUpdateError,
    DatabaseError,
    DefinitionError,
    DelegationError,
    EdgeConditionError,
    GraphDefinitionError,
    GraphorchError,
    IncompatibleGraphError,
    InputValidationError,
    LeaseLostError,
    MaxStepsExceededError,
    MissingDependencyError,
    ModelError,
    ModelOutputError,
    ModelRateLimitError,
    ModelRefusalError,
    ModelTimeoutError,
    ModelUnavailableError,
    NeedsAttentionError,
    NodeError,
    NodeTimeoutError,
    NotAuthorizedError,
    PolicyDeniedError,
    RateLimitedError,
    RenderError,
    RunCancelledError,
    RunError,
    RunLimitError,
    RunLockedError,
    RunNotActiveError,
    RunNotFoundError,
    RunTimeoutError,
    StateUpdateError,
    StoreError,
    ToolArgumentsError,
    ToolError,
    ToolFailedError,
    ToolResultError,
    ToolTimeoutError,
    UnknownToolError,
    UnserializableStateError,
    VisitLimitExceededError,
)
from .graph import START, Edge, FrozenGraph, Graph
from .models.base import ChatModel, Completion, Message, Usage
from .nodes import (
    ApprovalOutcome,
    ApproveNode,
    Backtrack,
    DelegateNode,
    EndNode,
    Node,
    NodeKind,
    PlanNode,
    Retry,
    ToolNode,
    approved,
    expired,
    rejected,
)
from .policies import Budget, Decision, Guardrails, Policy, ToolRequest
from .runs import Run, RunResult, StepResult
from .runtime import Runtime, run
from .state import Reducer, add, append, merge, reducer
from .store.approvals import ApprovalRecord, ApprovalStatus
from .store.base import CheckpointInfo, RunRecord, Store
from .store.journal import CallStatus, ToolCallRecord
from .store.memory import MemoryStore
from .toolbox import ToolBox
from .tools import RateLimit, Tool, ToolContext, ToolRegistry
from .types import CheckpointId, RunId, RunStatus

if _TYPE_CHECKING:
    from .diagrams import RunOverlay, overlay_for, render, to_dot, to_mermaid, to_png, to_svg
    from .notebook import Stepper
    from .planning import ModelBox, Plan, PlanStep
    from .store.sqlite import SQLiteStore

__version__ = "0.1.0"

# Loaded on first use: keeps `import graphorch` (and every CLI call) fast.
_LAZY = {
    "Stepper": "notebook",
    "ModelBox": "planning",
    "Plan": "planning",
    "PlanStep": "planning",
    "RunOverlay": "diagrams",
    "overlay_for": "diagrams",
    "render": "diagrams",
    "to_dot": "diagrams",
    "to_mermaid": "diagrams",
    "to_png": "diagrams",
    "to_svg": "diagrams",
    "SQLiteStore": "store.sqlite",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'graphorch' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"graphorch.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "START",
    "AlreadyDecidedError",
    "ApprovalDecided",
    "ApprovalError",
    "ApprovalNotFoundError",
    "ApprovalOutcome",
    "ApprovalRecord",
    "ApprovalRefused",
    "ApprovalRejectedError",
    "ApprovalRequested",
    "ApprovalStatus",
    "ApproveNode",
    "Backtrack",
    "BacktrackInfo",
    "Backtracked",
    "Budget",
    "BudgetExceededError",
    "CallResolved",
    "CallStatus",
    "ChatModel",
    "CheckpointId",
    "CheckpointInfo",
    "CheckpointNotFoundError",
    "ChildOutcome",
    "ChildRunError",
    "ChildRunStarted",
    "Completion",
    "ConflictingUpdateError",
    "Context",
    "CustomEvent",
    "DatabaseError",
    "Decision",
    "DefinitionError",
    "DelegateNode",
    "DelegationError",
    "Edge",
    "EdgeConditionError",
    "EndNode",
    "ErrorInfo",
    "ErrorRouted",
    "Event",
    "FrozenGraph",
    "Graph",
    "GraphDefinitionError",
    "GraphorchError",
    "Guardrails",
    "IncompatibleGraphError",
    "InputValidationError",
    "LeaseLostError",
    "MaxStepsExceededError",
    "MemoryStore",
    "Message",
    "MissingDependencyError",
    "ModelBox",
    "ModelCalled",
    "ModelError",
    "ModelOutputError",
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelTimeoutError",
    "ModelUnavailableError",
    "NeedsAttentionError",
    "Node",
    "NodeError",
    "NodeKind",
    "NodeTimeoutError",
    "NotAuthorizedError",
    "Plan",
    "PlanNode",
    "PlanStep",
    "Policy",
    "PolicyDeniedError",
    "RateLimit",
    "RateLimitedError",
    "Reducer",
    "RenderError",
    "Retry",
    "Retrying",
    "Run",
    "RunCancelled",
    "RunCancelledError",
    "RunError",
    "RunFailed",
    "RunFinished",
    "RunId",
    "RunLimitError",
    "RunLockedError",
    "RunNeedsAttention",
    "RunNotActiveError",
    "RunNotFoundError",
    "RunOverlay",
    "RunRecord",
    "RunResult",
    "RunResumed",
    "RunStarted",
    "RunStatus",
    "RunStopped",
    "RunTimeoutError",
    "RunWaiting",
    "Runtime",
    "SQLiteStore",
    "StateUpdateError",
    "StepFinished",
    "StepResult",
    "StepStarted",
    "Stepper",
    "Store",
    "StoreError",
    "Tool",
    "ToolArgumentsError",
    "ToolBox",
    "ToolCallRecord",
    "ToolCalled",
    "ToolContext",
    "ToolError",
    "ToolFailedError",
    "ToolNode",
    "ToolRegistry",
    "ToolRequest",
    "ToolResultError",
    "ToolTimeoutError",
    "UnknownToolError",
    "UnserializableStateError",
    "Usage",
    "VisitLimitExceededError",
    "__version__",
    "add",
    "append",
    "approved",
    "expired",
    "merge",
    "overlay_for",
    "reducer",
    "rejected",
    "render",
    "run",
    "to_dot",
    "to_mermaid",
    "to_png",
    "to_svg",
]
