"""Calling a node's user function: with the state alone or with a fresh
:class:`~graphorch.Context`, awaited if async and in a worker thread if not; which plan
nodes the step loop may call directly; and the model box a context hands out. What a
function takes is worked out once per function: this is on every step's path.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .context import Context
from .nodes import Node, PlanNode, _arity, is_async_callable  # pyright: ignore[reportPrivateUsage]

if TYPE_CHECKING:
    from .planning import ModelBox
    from .runs import Run

__all__ = ["_direct_fn", "_invoke", "_model_box", "invoke_node_fn"]


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
    return _arity(fn) != 1, is_async_callable(fn)


async def _invoke(fn: Any, state: Any, ctx: Context[Any] | Callable[[], Context[Any]]) -> Any:
    """Call a user function with (state) or (state, ctx); sync ones run in a thread.

    ``ctx`` may be a factory: most node functions take only the state, and building
    a context they never see is a measurable part of a step.
    """
    try:
        with_ctx, is_async = _calling(fn)
    except TypeError:  # unhashable callable: work it out each time
        with_ctx, is_async = _arity(fn) != 1, is_async_callable(fn)
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
