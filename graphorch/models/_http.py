"""What the HTTP adapters share: ``Retry-After``, the retry loop, SDK error mapping."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import anyio

from graphorch.exceptions import DefinitionError

from .base import (
    ModelError,
    ModelRateLimitError,
    ModelTimeoutError,
    ModelUnavailableError,
)

__all__ = ["RetryPolicy", "call_with_retries", "classify_sdk_error", "parse_retry_after"]

R = TypeVar("R")


class _Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


def parse_retry_after(headers: _Headers | Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = headers.get("retry-after")
    if value:
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


_RETRYABLE = (ModelRateLimitError, ModelUnavailableError)


@dataclass(frozen=True)
class RetryPolicy:
    """How adapters retry HTTP 429 and 5xx (and failed connections).

    A ``Retry-After`` from the provider is waited exactly; without one the waits grow
    ``backoff * 2**n``, capped at ``max_delay``. A ``Retry-After`` longer than
    ``max_delay``, or one that would pass the call's timeout, ends the retries at once.

    Attributes:
        max_retries: retries after the first attempt.
        backoff: the first wait without ``Retry-After``, in seconds.
        max_delay: the longest wait worth making.
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise DefinitionError(f"max_retries must be >= 0, got {self.max_retries!r}")
        if self.backoff < 0 or self.max_delay < 0:
            raise DefinitionError("backoff and max_delay must be >= 0 seconds")


async def call_with_retries(
    send: Callable[[float | None], Awaitable[R]],
    classify: Callable[[Exception], ModelError | None],
    *,
    policy: RetryPolicy,
    timeout: float | None,
    model: str,
) -> tuple[R, int]:
    """Run ``send(remaining_seconds)`` with retries on 429/5xx, all within ``timeout``.

    ``classify`` maps a provider exception to the typed error to raise (``None``: not
    a provider error, re-raise it as is). Rate-limit and unavailable errors are retried.

    Returns:
        ``send``'s result and the number of attempts made.

    Raises:
        ModelError: the classified error of the last attempt, with ``attempts`` set.
        ModelTimeoutError: ``timeout`` passed.
    """
    deadline = math.inf if timeout is None else anyio.current_time() + timeout
    attempt = 0
    with anyio.move_on_after(timeout if timeout is not None else math.inf):
        while True:
            attempt += 1
            remaining = None if timeout is None else max(0.0, deadline - anyio.current_time())
            try:
                return await send(remaining), attempt
            except Exception as exc:
                err = classify(exc)
                if err is None:
                    raise
                err.attempts = attempt
                if isinstance(err, ModelTimeoutError):
                    err.timeout = timeout
                if not isinstance(err, _RETRYABLE) or attempt > policy.max_retries:
                    if isinstance(err, _RETRYABLE) and attempt > 1:
                        err.reason += f" (gave up after {attempt} attempts)"
                    raise err from exc
                if err.retry_after is not None:
                    wait = err.retry_after
                    if wait > policy.max_delay:
                        err.reason += (
                            f" (not retried: Retry-After {wait:g}s exceeds max_delay "
                            f"{policy.max_delay:g}s)"
                        )
                        raise err from exc
                else:
                    wait = min(policy.max_delay, policy.backoff * 2 ** (attempt - 1))
                if anyio.current_time() + wait >= deadline:
                    err.reason += (
                        f" (not retried: waiting {wait:g}s would pass the {timeout:g}s timeout)"
                    )
                    raise err from exc
                await anyio.sleep(wait)
    raise ModelTimeoutError(
        f"model {model!r} did not answer within {timeout:g}s ({attempt} attempt"
        f"{'s' if attempt != 1 else ''})",
        timeout=timeout,
        model=model,
        attempts=attempt,
    )


def _provider_message(body: object, fallback: str) -> str:
    if isinstance(body, Mapping):
        err: object = body.get("error", body)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if isinstance(err, Mapping):
            msg = err.get("message")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            if isinstance(msg, str) and msg:
                return msg
    return fallback


def classify_sdk_error(exc: Exception, sdk: Any, *, model: str, where: str) -> ModelError | None:
    """Map an OpenAI or Anthropic SDK exception to graphorch's typed model errors.

    Both SDKs (Stainless-generated) share ``APITimeoutError``, ``APIConnectionError``
    and ``APIStatusError`` (``status_code``, ``body``, ``response.headers``).

    Returns:
        The error to raise, or ``None`` when ``exc`` is not a provider error.
    """
    if isinstance(exc, sdk.APITimeoutError):
        return ModelTimeoutError(f"model {model!r} did not answer in time ({where})", model=model)
    if isinstance(exc, sdk.APIConnectionError):
        return ModelUnavailableError(
            f"model {model!r}: could not reach {where}: {exc}", model=model
        )
    if isinstance(exc, sdk.APIStatusError):
        err: Any = exc
        status = int(err.status_code)
        detail = _provider_message(err.body, str(exc))
        retry_after = parse_retry_after(err.response.headers)
        if status == 429:
            cls, what = ModelRateLimitError, "is rate limited"
        elif status >= 500:
            cls, what = ModelUnavailableError, "is unavailable"
        else:
            cls, what = ModelError, "rejected the request"
        return cls(
            f"model {model!r} {what} (HTTP {status}): {detail}",
            model=model,
            status_code=status,
            retry_after=retry_after,
        )
    return None


class SDKModel:
    """What the SDK-backed adapters share: a client to close, and ``async with``."""

    model: str
    _client: Any

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, base_url={str(self._client.base_url)!r})"

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
