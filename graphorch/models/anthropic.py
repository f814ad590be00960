"""Anthropic messages as a ChatModel, with structured output through a forced tool.

A thin layer over the official ``anthropic`` SDK (``pip install 'graphorch[anthropic]'``).
With a schema, the request offers one tool whose ``input_schema`` is the schema and
forces it with ``tool_choice``; the ``tool_use`` block's input is the answer, validated by
graphorch like every other model's.

Retries are graphorch's, not the SDK's (the client is built with ``max_retries=0``): HTTP
429, 5xx (529 overloaded included) and failed connections are retried, waiting exactly
what ``Retry-After`` says, and all of it fits within ``timeout``.

The SDK runs on anyio through httpx; graphorch tests it on asyncio and trio.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from pydantic import BaseModel

from ._http import RetryPolicy, SDKModel, call_with_retries, classify_sdk_error
from .base import (
    Completion,
    Message,
    MissingDependencyError,
    ModelError,
    ModelRefusalError,
    Usage,
    finish,
    schema_name,
)

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import Message as AnthropicMessage

__all__ = ["AnthropicModel"]

T = TypeVar("T", bound=BaseModel)


def _import_anthropic() -> Any:
    try:
        import anthropic
    except ImportError:
        raise MissingDependencyError("anthropic", "anthropic", purpose="AnthropicModel") from None
    return anthropic


def _to_anthropic(messages: Sequence[Message]) -> tuple[str, list[dict[str, str]]]:
    """System text and user/assistant turns; consecutive turns of one role are merged."""
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.content)
            continue
        role = "assistant" if m.role == "assistant" else "user"
        content = f"Tool result:\n{m.content}" if m.role == "tool" else m.content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    return "\n\n".join(system), turns


class AnthropicModel(SDKModel):
    """A Claude model behind the Anthropic messages API.

    Example:
        >>> model = AnthropicModel("claude-sonnet-4-5", price_per_1k=(0.003, 0.015))

    Args:
        model: the model name sent to the API.
        api_key: defaults to ``$ANTHROPIC_API_KEY`` (the SDK's lookup).
        base_url: another server speaking the protocol; defaults to Anthropic.
        timeout: seconds a whole call may take, retries and their waits included.
        max_retries: retries after the first attempt on 429, 5xx and failed connections.
        max_tokens: the answer's token limit (the API requires one).
        price_per_1k: ``(input, output)`` price per 1000 tokens; sets ``Usage.cost``.
        backoff: first wait between retries when the server gives no ``Retry-After``.
        max_delay: longest wait between retries; a longer ``Retry-After`` is not waited.
        extra_body: more JSON fields for every request (``{"temperature": 0}``).
        name: the name shown in errors and events (defaults to ``model``).

    Raises:
        MissingDependencyError: the ``anthropic`` package is not installed.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = 60.0,
        max_retries: int = 3,
        max_tokens: int = 1024,
        price_per_1k: tuple[float, float] | None = None,
        backoff: float = 0.5,
        max_delay: float = 60.0,
        extra_body: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        sdk = _import_anthropic()
        self.model = model
        self.name = name or model
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.price_per_1k = price_per_1k
        self.retry = RetryPolicy(max_retries, backoff, max_delay)
        self._extra_body = dict(extra_body or {})
        self._client: anthropic.AsyncAnthropic = sdk.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

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
        """Ask the model; with ``schema``, force a tool call and validate its input.

        Raises:
            ModelOutputError: empty, no tool call and no JSON text, or not fitting
                ``schema``.
            ModelRefusalError: ``stop_reason`` is ``"refusal"``.
            ModelRateLimitError: still 429 after the retries.
            ModelUnavailableError: still 5xx or 529, or unreachable, after the retries.
            ModelTimeoutError: ``timeout`` (default: the model's) passed.
            ModelError: any other rejection (bad request, authentication, ...).
        """
        system, turns = _to_anthropic(messages)
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": turns,
        }
        if system:
            params["system"] = system
        if schema is not None:
            tool = schema_name(schema)
            description = (schema.__doc__ or "").strip() or f"Answer with a {tool} object."
            params["tools"] = [
                {
                    "name": tool,
                    "description": description,
                    "input_schema": schema.model_json_schema(),
                }
            ]
            params["tool_choice"] = {"type": "tool", "name": tool}
        if self._extra_body:
            params["extra_body"] = self._extra_body

        async def send(remaining: float | None) -> AnthropicMessage:
            create: Any = (
                self._client.messages.create
            )  # the SDK's overloads do not resolve on **params
            return cast("AnthropicMessage", await create(**params, timeout=remaining))

        response, attempts = await call_with_retries(
            send,
            self._classify,
            policy=self.retry,
            timeout=self.timeout if timeout is None else timeout,
            model=self.name,
        )
        return self._completion(response, schema, attempts)

    def _completion(
        self, response: AnthropicMessage, schema: type[BaseModel] | None, attempts: int
    ) -> Completion[Any]:
        u = response.usage
        usage = Usage.priced(u.input_tokens, u.output_tokens, self.price_per_1k)
        model = response.model or self.model
        reason: str | None = response.stop_reason
        text = "".join(b.text for b in response.content if b.type == "text")
        if reason == "refusal":
            raise ModelRefusalError(
                f"model {self.name!r} refused" + (f": {text}" if text.strip() else ""),
                refusal=text,
                usage=usage,
                model=self.name,
            )
        notes: list[str] = []
        if reason == "max_tokens":
            notes.append(f"the answer was cut off at max_tokens={self.max_tokens}")
        raw = text
        if schema is not None:
            tool = schema_name(schema)
            inputs = [b.input for b in response.content if b.type == "tool_use" and b.name == tool]
            if inputs:
                raw = json.dumps(inputs[0])
            else:
                notes.append(f"it did not call the forced tool {tool!r}")
        return finish(
            raw,
            schema,
            model=model,
            name=self.name,
            usage=usage,
            attempts=attempts,
            stop_reason=reason,
            note="; ".join(notes) or None,
        )

    def _classify(self, exc: Exception) -> ModelError | None:
        return classify_sdk_error(
            exc, _import_anthropic(), model=self.name, where=str(self._client.base_url)
        )
