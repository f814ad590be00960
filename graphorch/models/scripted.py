"""A deterministic, offline :class:`~graphorch.models.base.ChatModel` for tests and demos."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar, cast, overload

import anyio
from pydantic import BaseModel

from graphorch._record import Record
from graphorch.exceptions import DefinitionError

from .base import Completion, Message, ModelError, ModelTimeoutError, Usage, finish

__all__ = ["ScriptedCall", "ScriptedModel", "ScriptedResponse"]

T = TypeVar("T", bound=BaseModel)

ScriptedResponse: TypeAlias = Any
"""One scripted answer: ``str`` (the raw text), ``dict``/``list`` (sent as JSON), a
pydantic instance (sent as its JSON), an exception instance (raised), or a callable
``(messages, schema) -> any of these`` (sync or async)."""


class ScriptedCall(Record):
    """One call a :class:`ScriptedModel` received.

    Attributes:
        messages: the messages, as given.
        schema: the requested schema, or ``None`` for text.
        timeout: the call's timeout.
    """

    messages: tuple[Message, ...]
    schema: type[BaseModel] | None
    timeout: float | None

    @property
    def last_user_message(self) -> str:
        """The content of the last ``user`` message ("" if none)."""
        return _last_user(self.messages)


def _last_user(messages: Sequence[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


class ScriptedModel:
    """Answers from a script, the same way a real adapter would.

    Scripted answers go through the exact validation the adapters use, so a scripted
    ``'{"steps": 3}'`` against a schema that wants a list raises the same
    :class:`~graphorch.models.base.ModelOutputError` (with the same ``feedback``)
    that a real model's bad answer would.

    ``responses`` is one of:

    * a sequence, consumed one answer per call in order (running out is an error);
    * a mapping from text to answer: the first key found in the last user message
      wins (``"*"`` matches any message);
    * a callable of the last user message's text returning an answer.

    Usage is counted from text lengths (about 4 characters a token), priced with
    ``price_per_1k`` if given. Every call is recorded in :attr:`calls`.

    Example:
        >>> model = ScriptedModel([{"route": "billing"}, ModelRefusalError("no")])

    Args:
        responses: the script (see above).
        name: the model's name, shown in errors and completions.
        price_per_1k: ``(input, output)`` price per 1000 tokens, for budget tests.
        delay: seconds each call takes (to test timeouts); ``timeout`` is honoured.
    """

    def __init__(
        self,
        responses: Sequence[ScriptedResponse]
        | Mapping[str, ScriptedResponse]
        | Callable[[str], ScriptedResponse],
        *,
        name: str = "scripted",
        price_per_1k: tuple[float, float] | None = None,
        delay: float = 0.0,
    ) -> None:
        if isinstance(responses, str | bytes):
            raise DefinitionError(
                "ScriptedModel(responses) takes a list of answers, not one string: "
                f"write ScriptedModel([{responses!r}])"
            )
        self.name = name
        self.price_per_1k = price_per_1k
        self.delay = delay
        self.calls: list[ScriptedCall] = []
        """Every call received, in order."""
        self.usage = Usage()
        """The usage of all calls so far."""
        self._sequence: Sequence[Any] | None = None
        self._mapping: Mapping[str, Any] | None = None
        self._function: Callable[[str], Any] | None = None
        if isinstance(responses, Mapping):
            self._mapping = cast("Mapping[str, Any]", responses)
        elif isinstance(responses, Sequence):
            self._sequence = cast("Sequence[Any]", responses)
        elif callable(responses):
            self._function = responses
        else:
            raise DefinitionError(
                "ScriptedModel(responses) takes a list, a mapping or a callable, "
                f"got {type(responses).__name__}"
            )
        self._next = 0

    def __repr__(self) -> str:
        return f"ScriptedModel(name={self.name!r}, calls={len(self.calls)})"

    @property
    def remaining(self) -> int | None:
        """Answers left in a sequence script (``None`` for mappings and callables)."""
        if self._sequence is None:
            return None
        return len(self._sequence) - self._next

    @overload
    async def complete(
        self, messages: Sequence[Message], schema: None = None, *, timeout: float | None = None
    ) -> Completion[str]: ...

    @overload
    async def complete(
        self, messages: Sequence[Message], schema: type[T], *, timeout: float | None = None
    ) -> Completion[T]: ...

    async def complete(
        self,
        messages: Sequence[Message],
        schema: type[BaseModel] | None = None,
        *,
        timeout: float | None = None,
    ) -> Completion[Any]:
        """Answer with the next scripted response (see the class docs)."""
        call = ScriptedCall(tuple(messages), schema, timeout)
        self.calls.append(call)
        answer = self._pick(call)
        if self.delay:
            with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
                await anyio.sleep(self.delay)
            if scope.cancelled_caught:
                raise ModelTimeoutError(
                    f"model {self.name!r} did not answer within {timeout:g}s",
                    timeout=timeout,
                    model=self.name,
                )
        if callable(answer) and not isinstance(answer, type):
            answer = answer(call.messages, schema)
            if inspect.isawaitable(answer):
                answer = await answer
        if isinstance(answer, BaseException):
            if isinstance(answer, ModelError) and answer.model is None:
                answer.model = self.name
            raise answer
        raw = self._raw(answer)
        usage = Usage.priced(
            _tokens(sum(len(m.content) for m in call.messages)),
            _tokens(len(raw)),
            self.price_per_1k,
        )
        self.usage += usage
        return finish(raw, schema, model=self.name, usage=usage, stop_reason="end_turn")

    def _pick(self, call: ScriptedCall) -> Any:
        text = call.last_user_message
        if self._mapping is not None:
            for key, answer in self._mapping.items():
                if key == "*" or key in text:
                    return answer
            raise ModelError(
                f"ScriptedModel {self.name!r} has no answer for the user message "
                f"{text[:120]!r}; its keys are {list(self._mapping)!r}",
                model=self.name,
            )
        if self._sequence is not None:
            if self._next >= len(self._sequence):
                raise ModelError(
                    f"ScriptedModel {self.name!r} ran out of answers: this is call "
                    f"{len(self.calls)} but {len(self._sequence)} were scripted "
                    f"(last user message: {text[:120]!r})",
                    model=self.name,
                )
            answer = self._sequence[self._next]
            self._next += 1
            return answer
        assert self._function is not None
        return self._function(text)

    def _raw(self, answer: Any) -> str:
        if isinstance(answer, str):
            return answer
        if answer is None:
            return ""
        if isinstance(answer, BaseModel):
            return answer.model_dump_json()
        if isinstance(answer, Mapping | list | tuple | int | float | bool):
            return json.dumps(answer)
        raise DefinitionError(
            f"ScriptedModel {self.name!r}: cannot answer with a {type(answer).__name__}; "
            "script a str, dict, list, pydantic model, exception or callable"
        )
