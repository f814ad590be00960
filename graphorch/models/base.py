"""The model protocol: messages and a pydantic schema in, a validated object out.

Everything here is provider-neutral. Adapters (``openai``, ``anthropic``) and the
:class:`~graphorch.models.scripted.ScriptedModel` import this module and their SDK only;
the core never imports an adapter.

Model errors live in :mod:`graphorch.exceptions` and are re-exported here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Literal, Protocol, TypeVar, cast, overload, runtime_checkable

from pydantic import BaseModel, ValidationError

from graphorch._record import Record
from graphorch.exceptions import (
    DefinitionError,
    MissingDependencyError,
    ModelError,
    ModelOutputError,
    ModelRateLimitError,
    ModelRefusalError,
    ModelTimeoutError,
    ModelUnavailableError,
)

__all__ = [
    "ChatModel",
    "Completion",
    "Message",
    "MissingDependencyError",
    "ModelError",
    "ModelOutputError",
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelTimeoutError",
    "ModelUnavailableError",
    "Role",
    "Usage",
    "schema_name",
    "strict_json_schema",
    "validate_output",
]

T = TypeVar("T", bound=BaseModel)
V = TypeVar("V")

Role = Literal["system", "user", "assistant", "tool"]
_ROLES = ("system", "user", "assistant", "tool")


# --------------------------------------------------------------------------- errors


# --------------------------------------------------------------------------- values


class Message(Record):
    """One chat message.

    Adapters map roles to what their provider accepts: ``"tool"`` (a tool's result fed
    back) becomes a user message starting ``Tool result:``; Anthropic gets the system
    messages through its ``system`` parameter.

    Attributes:
        role: ``"system"``, ``"user"``, ``"assistant"`` or ``"tool"``.
        content: the text.
    """

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise DefinitionError(f"Message role must be one of {_ROLES}, got {self.role!r}")
        if not isinstance(self.content, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise DefinitionError(
                f"Message content must be a str, got {type(self.content).__name__}"
            )

    @classmethod
    def system(cls, content: str) -> Message:
        """A system message."""
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str) -> Message:
        """An assistant message (an earlier answer of the model)."""
        return cls("assistant", content)

    @classmethod
    def tool(cls, content: str) -> Message:
        """A tool's result fed back to the model."""
        return cls("tool", content)


class Usage(Record):
    """What a call consumed.

    Attributes:
        input_tokens: prompt tokens as the provider counted them.
        output_tokens: completion tokens.
        cost: in the currency of the model's ``price_per_1k`` (0.0 when not priced).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost + other.cost,
        )

    @classmethod
    def priced(
        cls, input_tokens: int, output_tokens: int, price_per_1k: tuple[float, float] | None
    ) -> Usage:
        """Usage with its cost computed from a ``(input, output)`` price per 1000 tokens."""
        cost = 0.0
        if price_per_1k is not None:
            cost = (input_tokens * price_per_1k[0] + output_tokens * price_per_1k[1]) / 1000
        return cls(input_tokens, output_tokens, cost)


class Completion(Record, Generic[V]):
    """A model's answer.

    Attributes:
        value: the validated schema instance, or the text when no schema was given.
        usage: tokens and cost.
        raw: the provider's answer as text (the JSON for structured output).
        model: the model that answered, as the provider named it.
        attempts: HTTP requests made, retries included.
        stop_reason: why the model stopped (``finish_reason`` / ``stop_reason``).
    """

    value: V
    usage: Usage
    raw: str
    model: str
    attempts: int = 1
    stop_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the answer (for a journal); ``value`` is rebuilt from ``raw``."""
        return {
            "raw": self.raw,
            "model": self.model,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "cost": self.usage.cost,
            },
            "attempts": self.attempts,
            "stop_reason": self.stop_reason,
        }

    @overload
    @staticmethod
    def from_dict(data: Mapping[str, Any], schema: None = None) -> Completion[str]: ...

    @overload
    @staticmethod
    def from_dict(data: Mapping[str, Any], schema: type[T]) -> Completion[T]: ...

    @staticmethod
    def from_dict(
        data: Mapping[str, Any], schema: type[BaseModel] | None = None
    ) -> Completion[Any]:
        """Rebuild a completion saved with :meth:`to_dict`, validating ``raw`` again.

        Raises:
            ModelOutputError: ``raw`` no longer fits ``schema`` (the schema changed).
        """
        u: Mapping[str, Any] = data.get("usage") or {}
        usage = Usage(
            int(u.get("input_tokens", 0)), int(u.get("output_tokens", 0)), float(u.get("cost", 0.0))
        )
        return finish(
            str(data["raw"]),
            schema,
            model=str(data.get("model", "")),
            usage=usage,
            attempts=int(data.get("attempts", 1)),
            stop_reason=data.get("stop_reason"),
        )


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class ChatModel(Protocol):
    """Anything that answers chat messages, optionally as a validated pydantic object.

    With ``schema`` the answer's ``value`` is an instance of it (or the call raises
    :class:`ModelOutputError`); without, ``value`` is the text.
    ``timeout`` bounds the whole call, retries and their waits included.
    """

    name: str

    @overload
    async def complete(
        self, messages: Sequence[Message], schema: None = None, *, timeout: float | None = None
    ) -> Completion[str]: ...

    @overload
    async def complete(
        self, messages: Sequence[Message], schema: type[T], *, timeout: float | None = None
    ) -> Completion[T]: ...


# --------------------------------------------------------------------------- output


_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


def _strip_fences(text: str) -> str:
    if "```" not in text:
        return text
    blocks = _FENCE.findall(text)
    if len(blocks) == 1:
        return str(blocks[0]).strip()
    return text


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _validation_lines(error: ValidationError) -> list[str]:
    lines: list[str] = []
    for e in error.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"{loc}: {e['msg']} (got {_short(repr(e['input']), 80)})")
    return lines


def validate_output(
    raw: str,
    schema: type[T],
    *,
    model: str | None = None,
    usage: Usage | None = None,
    note: str | None = None,
) -> T:
    """Validate a model's raw answer against ``schema``.

    Surrounding whitespace and a single Markdown code fence (```` ```json ````) are
    stripped; the rest must be a JSON document that fits ``schema`` (JSON-mode
    validation).

    Args:
        raw: the answer as the provider returned it.
        schema: the pydantic model to validate against.
        model: the model's name, for the error message.
        usage: the call's usage, carried by the error.
        note: added to the error message (``"the answer was cut at max_tokens"``).

    Raises:
        ModelOutputError: empty answer, not JSON, or JSON of the wrong shape; its
            ``errors`` and ``feedback`` say what to fix.
    """
    who = f"model {model!r}" if model else "the model"
    suffix = f" ({note})" if note else ""
    name = schema.__name__
    text = _strip_fences(raw.strip())
    if not text:
        raise ModelOutputError(
            f"{who} gave an empty answer where a {name} was expected{suffix}",
            kind="empty", raw=raw, schema=name, usage=usage, model=model,
        )  # fmt: skip
    try:
        json.loads(text)
    except ValueError as e:
        raise ModelOutputError(
            f"{who} answered with text that is not JSON where a {name} was expected{suffix}: "
            f"{e}; answer: {_short(text)!r}",
            kind="not_json", raw=raw, errors=[str(e)], schema=name, usage=usage, model=model,
        ) from None  # fmt: skip
    try:
        return schema.model_validate_json(text)
    except ValidationError as e:
        lines = _validation_lines(e)
        n = len(lines)
        raise ModelOutputError(
            f"{who} answered JSON that does not fit {name} ({n} error{'s' if n != 1 else ''})"
            f"{suffix}:\n" + "\n".join(f"  {line}" for line in lines),
            kind="schema", raw=raw, errors=lines, schema=name, usage=usage, model=model,
        ) from None  # fmt: skip


def check_text(
    raw: str, *, model: str | None = None, usage: Usage | None = None, note: str | None = None
) -> str:
    """Return a plain-text answer, refusing an empty one with :class:`ModelOutputError`."""
    if not raw.strip():
        who = f"model {model!r}" if model else "the model"
        suffix = f" ({note})" if note else ""
        raise ModelOutputError(
            f"{who} gave an empty answer{suffix}", kind="empty", raw=raw, usage=usage, model=model
        )
    return raw


def finish(
    raw: str,
    schema: type[BaseModel] | None,
    *,
    model: str,
    usage: Usage,
    attempts: int = 1,
    stop_reason: str | None = None,
    note: str | None = None,
    name: str | None = None,
) -> Completion[Any]:
    """Build the :class:`Completion` every model returns, through the shared validation.

    Args:
        raw: the answer's text (the JSON for structured output).
        schema: validate ``raw`` against it; ``None`` for text.
        model: the model that answered, as the provider named it.
        usage: the call's usage.
        attempts: requests made.
        stop_reason: the provider's stop or finish reason.
        note: added to an error's message.
        name: the model's configured name, used in errors (defaults to ``model``).

    Raises:
        ModelOutputError: see :func:`validate_output`.
    """
    who = name or model
    value: Any
    if schema is None:
        value = check_text(raw, model=who, usage=usage, note=note)
    else:
        value = validate_output(raw, schema, model=who, usage=usage, note=note)
    return Completion(value, usage, raw, model, attempts, stop_reason)


# --------------------------------------------------------------------------- schemas


def schema_name(schema: type[BaseModel]) -> str:
    """The schema's class name made safe for providers (``[A-Za-z0-9_-]{1,64}``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64] or "output"


def strict_json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """``schema``'s JSON schema in the form OpenAI's ``strict`` mode accepts.

    Every object gets ``additionalProperties: false`` and lists all its properties as
    required (fields with defaults must then be given by the model), ``None`` defaults
    are dropped and ``$ref`` with siblings is inlined: the transformation the OpenAI
    SDK's own ``parse()`` helper applies.
    """
    root = schema.model_json_schema()
    return _strictify(root, root)


def _strictify(node: object, root: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_strictify(item, root) for item in cast("list[object]", node)]
    if not isinstance(node, dict):
        return node
    out = dict(cast("dict[str, Any]", node))
    for key in ("$defs", "definitions"):
        defs = out.get(key)
        if isinstance(defs, dict):
            out[key] = {k: _strictify(v, root) for k, v in cast("dict[str, Any]", defs).items()}
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    props = out.get("properties")
    if isinstance(props, dict):
        props = cast("dict[str, Any]", props)
        out["required"] = list(props)
        out["properties"] = {k: _strictify(v, root) for k, v in props.items()}
    for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems"):
        if key in out:
            out[key] = _strictify(out[key], root)
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(cast("list[Any]", all_of)) == 1:
        out.pop("allOf")
        out = {**cast("list[dict[str, Any]]", all_of)[0], **out}
    if "default" in out and out["default"] is None:
        out.pop("default")
    ref = out.get("$ref")
    if isinstance(ref, str) and len(out) > 1:
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        merged: dict[str, Any] = {**target, **out}
        merged.pop("$ref")
        return _strictify(merged, root)
    return out
