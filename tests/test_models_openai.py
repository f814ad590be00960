"""OpenAIModel against a loopback server speaking the chat completions protocol."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

pytest.importorskip(
    "openai", reason="the openai SDK is not installed (pip install 'graphorch[openai]')"
)

from fake_providers import OpenAIServer, Reply, openai_answer, openai_error

from graphorch.models import (
    ChatModel,
    Message,
    ModelError,
    ModelOutputError,
    ModelRateLimitError,
    ModelRefusalError,
    ModelTimeoutError,
    ModelUnavailableError,
    OpenAIModel,
    ScriptedModel,
    Usage,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


class Route(BaseModel):
    """Where the ticket goes."""

    route: str
    score: float = 0.0


ASK = [Message.system("You route tickets."), Message.user("refund me")]
GOOD = '{"route": "billing", "score": 0.9}'


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
async def model(server: OpenAIServer) -> AsyncIterator[OpenAIModel]:
    async with OpenAIModel(
        "gpt-test", api_key="sk-test", base_url=server.base_url, timeout=10, backoff=0.01
    ) as m:
        yield m


# ------------------------------------------------------------------------ answers


async def test_good_structured_answer(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(openai_answer(GOOD, prompt_tokens=30, completion_tokens=5))
    c = await model.complete(ASK, Route)
    assert c.value == Route(route="billing", score=0.9)
    assert c.raw == GOOD
    assert c.usage == Usage(30, 5, 0.0)
    assert c.model == "gpt-test-2024"
    assert c.attempts == 1
    assert c.stop_reason == "stop"
    [req] = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.json["model"] == "gpt-test"
    assert req.json["messages"] == [
        {"role": "system", "content": "You route tickets."},
        {"role": "user", "content": "refund me"},
    ]
    fmt = req.json["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Route"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["route", "score"]
    assert schema["additionalProperties"] is False


async def test_text_answer_sends_no_response_format(
    server: OpenAIServer, model: OpenAIModel
) -> None:
    server.then(openai_answer("Hello there"))
    c = await model.complete([Message.user("hi")])
    assert c.value == "Hello there"
    assert "response_format" not in server.requests[0].json


async def test_non_strict_schema_and_extra_body(server: OpenAIServer) -> None:
    server.then(openai_answer('```json\n{"route": "x"}\n```'))
    async with OpenAIModel(
        "llama3", api_key="-", base_url=server.base_url, strict=False, extra_body={"temperature": 0}
    ) as m:
        c = await m.complete([Message.user("hi")], Route)
    assert c.value.route == "x"
    sent = server.requests[0].json
    assert sent["temperature"] == 0
    assert sent["response_format"]["json_schema"]["strict"] is False
    assert sent["response_format"]["json_schema"]["schema"] == Route.model_json_schema()


async def test_roles_are_mapped(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(openai_answer("ok"))
    await model.complete(
        [Message.user("q"), Message.assistant("a"), Message.tool("42"), Message.user("and?")]
    )
    assert server.requests[0].json["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "Tool result:\n42"},
        {"role": "user", "content": "and?"},
    ]


async def test_cost_from_price(server: OpenAIServer) -> None:
    server.then(openai_answer(GOOD, prompt_tokens=1000, completion_tokens=500))
    async with OpenAIModel(
        "gpt-test", api_key="k", base_url=server.base_url, price_per_1k=(0.01, 0.03)
    ) as m:
        c = await m.complete(ASK, Route)
    assert abs(c.usage.cost - 0.025) < 1e-12


# ------------------------------------------------------------------- bad answers


async def test_malformed_json(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(openai_answer("I think it should go to billing."))
    with pytest.raises(ModelOutputError, match="not JSON") as info:
        await model.complete(ASK, Route)
    err = info.value
    assert err.kind == "not_json"
    assert err.raw == "I think it should go to billing."
    assert err.usage == Usage(11, 7, 0.0)  # the failed answer was still paid for
    assert err.model == "gpt-test"  # the configured name, not the provider's


async def test_schema_violation_matches_scripted_model(
    server: OpenAIServer, model: OpenAIModel
) -> None:
    bad = '{"score": "high"}'
    server.then(openai_answer(bad))
    with pytest.raises(ModelOutputError) as real:
        await model.complete(ASK, Route)
    with pytest.raises(ModelOutputError) as scripted:
        await ScriptedModel([bad], name="gpt-test").complete(ASK, Route)
    assert real.value.kind == "schema"
    assert real.value.errors == scripted.value.errors
    assert real.value.feedback == scripted.value.feedback
    assert any(e.startswith("route: Field required") for e in real.value.errors)
    assert any(e.startswith("score: Input should be a valid number") for e in real.value.errors)


async def test_truncated_answer_says_so(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(openai_answer('{"route": "bil', finish_reason="length"))
    with pytest.raises(ModelOutputError, match="cut off at the token limit"):
        await model.complete(ASK, Route)


@pytest.mark.parametrize("content", ["", None, "  \n"])
async def test_empty_answer(server: OpenAIServer, model: OpenAIModel, content: str | None) -> None:
    server.then(openai_answer(content))
    with pytest.raises(ModelOutputError, match="empty answer") as info:
        await model.complete(ASK, Route)
    assert info.value.kind == "empty"


async def test_no_choices_is_empty(server: OpenAIServer, model: OpenAIModel) -> None:
    def no_choices(request: dict[str, Any]) -> dict[str, Any]:
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}

    server.then(Reply(200, no_choices))
    with pytest.raises(ModelOutputError, match="empty answer"):
        await model.complete(ASK)


async def test_refusal(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(openai_answer(None, refusal="I can't help with that."))
    with pytest.raises(ModelRefusalError, match="refused: I can't help with that") as info:
        await model.complete(ASK, Route)
    assert info.value.refusal == "I can't help with that."
    assert info.value.usage == Usage(11, 7, 0.0)


async def test_content_filter_is_a_refusal(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(openai_answer(None, finish_reason="content_filter"))
    with pytest.raises(ModelRefusalError, match="content filter"):
        await model.complete(ASK, Route)


# -------------------------------------------------------------------- HTTP errors


async def test_429_honours_retry_after_then_succeeds(server: OpenAIServer) -> None:
    server.then(openai_error(429, "Rate limit reached", {"Retry-After": "1"}), openai_answer(GOOD))
    # backoff 0.01: a one-second gap can only come from the Retry-After header
    async with OpenAIModel("gpt-test", api_key="k", base_url=server.base_url, backoff=0.01) as m:
        c = await m.complete(ASK, Route)
    assert c.value.route == "billing"
    assert c.attempts == 2
    assert len(server.requests) == 2
    [gap] = server.gaps()
    assert 0.95 <= gap < 5
    # the SDK's own retries are off: every request is its first
    assert {r.headers.get("x-stainless-retry-count") for r in server.requests} <= {"0", None}


async def test_always_429(server: OpenAIServer) -> None:
    server.then(openai_error(429, "Rate limit reached", {"retry-after-ms": "100"}))
    async with OpenAIModel(
        "gpt-test", api_key="k", base_url=server.base_url, max_retries=2, backoff=0.01
    ) as m:
        with pytest.raises(ModelRateLimitError, match="Rate limit reached") as info:
            await m.complete(ASK, Route)
    err = info.value
    assert (err.status_code, err.retry_after, err.attempts) == (429, 0.1, 3)
    assert "gave up after 3 attempts" in str(err)
    assert len(server.requests) == 3
    assert all(gap >= 0.09 for gap in server.gaps())


async def test_500_then_success(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(openai_error(500, "boom"), openai_error(503, "busy"), openai_answer(GOOD))
    c = await model.complete(ASK, Route)
    assert c.value.route == "billing"
    assert c.attempts == 3


async def test_always_500(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(openai_error(500, "The server had an error"))
    with pytest.raises(ModelUnavailableError, match=r"HTTP 500.*The server had an error") as info:
        await model.complete(ASK, Route)
    assert info.value.status_code == 500
    assert info.value.attempts == 4  # max_retries=3 by default
    assert len(server.requests) == 4


async def test_client_errors_are_not_retried(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(openai_error(400, "Invalid schema for response_format 'Route'"))
    with pytest.raises(
        ModelError, match=r"rejected the request \(HTTP 400\): Invalid schema"
    ) as info:
        await model.complete(ASK, Route)
    assert type(info.value) is ModelError
    assert info.value.status_code == 400
    assert len(server.requests) == 1


async def test_timeout(server: OpenAIServer) -> None:
    server.then(Reply(200, openai_answer(GOOD).body, delay=10))
    async with OpenAIModel("gpt-test", api_key="k", base_url=server.base_url, timeout=0.5) as m:
        start = anyio.current_time()
        with pytest.raises(ModelTimeoutError) as info:
            await m.complete(ASK, Route)
    assert anyio.current_time() - start < 5
    assert info.value.timeout == 0.5
    assert len(server.requests) == 1  # a timed-out call is not sent again


async def test_per_call_timeout_overrides(server: OpenAIServer, model: OpenAIModel) -> None:
    server.then(Reply(200, openai_answer(GOOD).body, delay=10))
    with pytest.raises(ModelTimeoutError):
        await model.complete(ASK, Route, timeout=0.3)


async def test_retries_stay_within_the_timeout(server: OpenAIServer) -> None:
    server.then(openai_error(503, "busy", {"Retry-After": "0.4"}))
    async with OpenAIModel("gpt-test", api_key="k", base_url=server.base_url, timeout=1.0) as m:
        start = anyio.current_time()
        with pytest.raises(ModelUnavailableError, match="would pass the 1s timeout"):
            await m.complete(ASK, Route)
    assert anyio.current_time() - start < 1.5
    assert 2 <= len(server.requests) <= 3


async def test_unreachable_server() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with OpenAIModel(
        "gpt-test", api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01
    ) as m:
        with pytest.raises(ModelUnavailableError, match="could not reach") as info:
            await m.complete(ASK)
    assert info.value.attempts == 2
    assert info.value.status_code is None


# ------------------------------------------------------------------------- misc


def test_protocol_and_repr() -> None:
    m = OpenAIModel("gpt-test", api_key="k", base_url="http://127.0.0.1:9/v1", name="router")
    assert isinstance(m, ChatModel)
    assert m.name == "router"
    assert "gpt-test" in repr(m) and "127.0.0.1:9" in repr(m)
