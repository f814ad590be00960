"""OpenAI chat completions (and compatible servers: Ollama, vLLM, llama.cpp) as a ChatModel.

A thin layer over the official ``openai`` SDK (``pip install 'graphorch[openai]'``).
Structured output uses ``response_format={"type": "json_schema", ...}``; the answer is
validated by graphorch (the same validation as every other model), not by the SDK.

Retries are graphorch's, not the SDK's (the client is built with ``max_retries=0``): HTTP
429 and 5xx and failed connections are retried, waiting exactly what ``Retry-After`` (or
``retry-after-ms``) says, and all of it, waits included, fits within ``timeout``.

The SDK runs on anyio through httpx; graphorch tests it on asyncio and trio.
"""

from __future__ import annotations

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
    strict_json_schema,
)

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

__all__ = ["OpenAIModel"]

T = TypeVar("T", bound=BaseModel)


def _import_openai() -> Any:
    try:
        import openai
    except ImportError:
        raise MissingDependencyError("openai", "openai", purpose="OpenAIModel") from None
    return openai


def _to_openai(messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    for m in messages:
        if m.role == "system":
            out.append({"role": "system", "content": m.content})
        elif m.role == "assistant":
            out.append({"role": "assistant", "content": m.content})
        elif m.role == "tool":
            out.append({"role": "user", "content": f"Tool result:\n{m.content}"})
        else:
            out.append({"role": "user", "content": m.content})
    return out


class OpenAIModel(SDKModel):
    """A model behind the OpenAI chat completions API.

    Example:
        >>> model = OpenAIModel("gpt-4o-mini", price_per_1k=(0.00015, 0.0006))
        >>> local = OpenAIModel("llama3.1", base_url="http://localhost:11434/v1", api_key="-")

    Args:
        model: the model name sent to the API.
        api_key: defaults to ``$OPENAI_API_KEY`` (the SDK's lookup).
        base_url: another server speaking the protocol (``.../v1``); defaults to
            ``$OPENAI_BASE_URL`` or OpenAI.
        timeout: seconds a whole call may take, retries and their waits included.
        max_retries: retries after the first attempt on 429, 5xx and failed connections.
        price_per_1k: ``(input, output)`` price per 1000 tokens; sets ``Usage.cost``.
        strict: send the schema in OpenAI's strict form (all fields required, no extra
            keys; see :func:`~graphorch.models.base.strict_json_schema`). ``False`` sends
            ``model_json_schema()`` as is with ``strict: false``; needed for schemas
            strict mode cannot express (free-form ``dict[str, Any]`` fields).
        backoff: first wait between retries when the server gives no ``Retry-After``.
        max_delay: longest wait between retries; a longer ``Retry-After`` is not waited.
        extra_body: more JSON fields for every request (``{"temperature": 0}``).
        name: the name shown in errors and events (defaults to ``model``).

    Raises:
        MissingDependencyError: the ``openai`` package is not installed.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = 60.0,
        max_retries: int = 3,
        price_per_1k: tuple[float, float] | None = None,
        strict: bool = True,
        backoff: float = 0.5,
        max_delay: float = 60.0,
        extra_body: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        sdk = _import_openai()
        self.model = model
        self.name = name or model
        self.timeout = timeout
        self.price_per_1k = price_per_1k
        self.strict = strict
        self.retry = RetryPolicy(max_retries, backoff, max_delay)
        self._extra_body = dict(extra_body or {})
        self._client: openai.AsyncOpenAI = sdk.AsyncOpenAI(
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
        """Ask the model; with ``schema``, validate its JSON answer into an instance.

        Raises:
            ModelOutputError: empty, not JSON, or not fitting ``schema``.
            ModelRefusalError: the model refused, or the content filter stopped it.
            ModelRateLimitError: still 429 after the retries.
            ModelUnavailableError: still 5xx, or unreachable, after the retries.
            ModelTimeoutError: ``timeout`` (default: the model's) passed.
            ModelError: any other rejection (bad request, authentication, ...).
        """
        params: dict[str, Any] = {"model": self.model, "messages": _to_openai(messages)}
        if schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name(schema),
                    "schema": strict_json_schema(schema)
                    if self.strict
                    else schema.model_json_schema(),
                    "strict": self.strict,
                },
            }
        if self._extra_body:
            params["extra_body"] = self._extra_body

        async def send(remaining: float | None) -> ChatCompletion:
            create: Any = (
                self._client.chat.completions.create
            )  # the SDK's overloads do not resolve on **params
            return cast("ChatCompletion", await create(**params, timeout=remaining))

        response, attempts = await call_with_retries(
            send,
            self._classify,
            policy=self.retry,
            timeout=self.timeout if timeout is None else timeout,
            model=self.name,
        )
        return self._completion(response, schema, attempts)

    def _completion(
        self, response: ChatCompletion, schema: type[BaseModel] | None, attempts: int
    ) -> Completion[Any]:
        u = response.usage
        usage = Usage.priced(
            (u.prompt_tokens or 0) if u else 0,
            (u.completion_tokens or 0) if u else 0,
            self.price_per_1k,
        )
        model = response.model or self.model
        if not response.choices:
            return finish("", schema, model=model, name=self.name, usage=usage, attempts=attempts)
        choice = response.choices[0]
        message = choice.message
        reason: str | None = choice.finish_reason
        if message.refusal:
            raise ModelRefusalError(
                f"model {self.name!r} refused: {message.refusal}",
                refusal=message.refusal,
                usage=usage,
                model=self.name,
            )
        raw = message.content or ""
        if reason == "content_filter" and not raw.strip():
            raise ModelRefusalError(
                f"model {self.name!r} was stopped by the provider's content filter",
                usage=usage,
                model=self.name,
            )
        note = "the answer was cut off at the token limit" if reason == "length" else None
        return finish(
            raw,
            schema,
            model=model,
            name=self.name,
            usage=usage,
            attempts=attempts,
            stop_reason=reason,
            note=note,
        )

    def _classify(self, exc: Exception) -> ModelError | None:
        return classify_sdk_error(
            exc, _import_openai(), model=self.name, where=str(self._client.base_url)
        )
