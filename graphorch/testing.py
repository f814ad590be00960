"""Test doubles users can import: deterministic models, in-memory storage, recorders.

Example::

    from graphorch.testing import ScriptedModel

    model = ScriptedModel([{"route": "billing"}])
    rt = go.Runtime(model=model)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .models.scripted import ScriptedCall, ScriptedModel
from .store.memory import MemoryStore
from .tools import Tool, ToolRegistry

__all__ = ["MemoryStore", "ScriptedCall", "ScriptedModel", "recording_tool"]


def recording_tool(
    registry: ToolRegistry,
    name: str,
    result: Any = None,
    *,
    destructive: bool = False,
    idempotent: bool = False,
) -> tuple[Tool, list[dict[str, Any]]]:
    """Register a tool that records every call's keyword arguments and returns ``result``
    (or ``result(**kwargs)`` when callable). Returns the tool and the list of calls.
    """
    calls: list[dict[str, Any]] = []

    def record(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return result(**kwargs) if callable(result) else result

    from pydantic import BaseModel, ConfigDict

    class AnyArgs(BaseModel):
        model_config = ConfigDict(extra="allow")

    fn: Callable[..., Any] = record
    tool = registry.add(fn, name=name, args=AnyArgs, destructive=destructive, idempotent=idempotent)
    return tool, calls
