"""AnthropicModel against a loopback server speaking the messages protocol (tool use)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from pydantic import BaseModel

pytest.importorskip(
    "anthropic", reason="the anthropic SDK is not installed (pip install 'graphorch[anthropic]')"
)

from fake_providers import (
    AnthropicServer,
    Reply,
    anthropic_error,
    anthropic_text_answer,
    anthropic_tool_answer,
)

from graphorch.models import (
    AnthropicModel,
    ChatModel,
    Message,
    ModelError,
    ModelOutputError,
    ModelRateLimitError,
    ModelRefusalError,
    ModelTimeoutError,
    ModelUnavailableError,
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
GOOD = {"route": "billing", "score": 0.9}


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer() as srv:
        yield srv


@pytest.fixture
async def model(server: AnthropicServer) -> AsyncIterator[AnthropicModel]:
    async with AnthropicModel(
        "claude-test", api_key="sk-ant-test", base_url=server.base_url, timeout=10, backoff=0.01
    ) as m:
        yield m


# ------------------------------------------------------------------------ answers


async def test_good_structured_answer(server: AnthropicServer, model: AnthropicModel) -> None:
    server.then(anthropic_tool_answer(GOOD, input_tokens=40, output_tokens=12))
    c = await model.complete(ASK, Route)
    assert c.value == Route(route="billing", score=0.9)
    assert c.usage == Usage(40, 12, 0.0)
    assert c.model == "claude-test"
    assert c.stop_reason == "tool_use"
    assert c.attempts == 1
    [req] = server.requests
    assert req.path == "/v1/messages"
    assert "anthropic-version" in req.headers
    body = req.json
    assert body["model"] == "claude-test"
    assert body["max_tokens"] == 1024
    assert body["system"] == "You route tickets."
    assert body["messages"] == [{"role": "user", "content": "refund me"}]
    [tool] = body["tools"]
    assert tool["name"] == "Route"
    assert tool["description"] == "Where the ticket goes."
    assert tool["input_schema"] == Route.model_json_schema()
    assert body["tool_choice"] == {"type": "tool", "name": "Route"}


async def test_text_answer_offers_no_tool(server: AnthropicServer, model: AnthropicModel) -> None:
    server.then(anthropic_text_answer("Hello there"))
    c = await model.complete([Message.user("hi")])
    assert c.value == "Hello there"
    assert c.stop_reason == "end_turn"
    sent = server.requests[0].json
    assert "tools" not in sent and "tool_choice" not in sent and "system" not in sent


async def test_roles_are_mapped_and_merged(server: AnthropicServer, model: AnthropicModel) -> None:
    server.then(anthropic_text_answer("ok"))
    await model.complete(
        [
            Message.system("a"),
            Message.user("q"),
            Message.assistant("x"),
            Message.tool("42"),
            Message.system("b"),
            Message.user("and?"),
        ]
    )
    sent = server.requests[0].json
    assert sent["system"] == "a\n\nb"
    assert sent["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "Tool result:\n42\n\nand?"},
    ]


async def test_options_and_cost(server: AnthropicServer) -> None:
    server.then(anthropic_tool_answer(GOOD, input_tokens=2000, output_tokens=100))
    async with AnthropicModel(
        "claude-test",
        api_key="k",
        base_url=server.base_url,
        max_tokens=64,
        price_per_1k=(0.003, 0.015),
        extra_body={"temperature": 0},
    ) as m:
        c = await m.complete(ASK, Route)
    assert abs(c.usage.cost - 0.0075) < 1e-12
    assert server.requests[0].json["max_tokens"] == 64
    assert server.requests[0].json["temperature"] == 0


async def test_json_text_instead_of_the_tool_is_accepted(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.then(anthropic_text_answer('```json\n{"route": "x"}\n```'))
    c = await model.complete(ASK, Route)
    assert c.value.route == "x"


# ------------------------------------------------------------------- bad answers


async def test_malformed_answer_without_the_tool(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.then(anthropic_text_answer("It goes to billing, I think."))
    with pytest.raises(ModelOutputError, match="did not call the forced tool 'Route'") as info:
        await model.complete(ASK, Route)
    assert info.value.kind == "not_json"
    assert info.value.raw == "It goes to billing, I think."
    assert info.value.usage == Usage(21, 9, 0.0)


async def test_schema_violation_matches_scripted_model(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    bad = {"score": "high"}
    server.then(anthropic_tool_answer(bad))
    with pytest.raises(ModelOutputError) as real:
        await model.complete(ASK, Route)
    with pytest.raises(ModelOutputError) as scripted:
        await ScriptedModel([bad], name="claude-test").complete(ASK, Route)
    assert real.value.kind == "schema"
    assert real.value.errors == scripted.value.errors
    assert real.value.feedback == scripted.value.feedback
    assert str(real.value) == str(scripted.value)


async def test_tool_input_not_an_object(server: AnthropicServer, model: AnthropicModel) -> None:
    server.then(anthropic_tool_answer("billing"))
    with pytest.raises(ModelOutputError) as info:
        await model.complete(ASK, Route)
    assert info.value.kind == "schema"


async def test_truncated_at_max_tokens_says_so(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.then(anthropic_tool_answer({}, stop_reason="max_tokens"))
    with pytest.raises(ModelOutputError, match="cut off at max_tokens=1024"):
        await model.complete(ASK, Route)


@pytest.mark.parametrize("text", ["", "   "])
async def test_empty_answer(server: AnthropicServer, model: AnthropicModel, text: str) -> None:
    server.then(anthropic_text_answer(text))
    with pytest.raises(ModelOutputError, match="empty answer") as info:
        await model.complete(ASK, Route)
    assert info.value.kind == "empty"
    server.then(anthropic_text_answer(text))
    with pytest.raises(ModelOutputError, match="empty answer"):
        await model.complete(ASK)


async def test_refusal(server: AnthropicServer, model: AnthropicModel) -> None:
    server.then(anthropic_text_answer("I won't do that.", stop_reason="refusal"))
    with pytest.raises(ModelRefusalError, match="refused: I won't do that") as info:
        await model.complete(ASK, Route)
    assert info.value.refusal == "I won't do that."
    assert info.value.usage == Usage(21, 9, 0.0)


async def test_silent_refusal(server: AnthropicServer, model: AnthropicModel) -> None:
    server.then(anthropic_text_answer("", stop_reason="refusal"))
    with pytest.raises(ModelRefusalError, match=r"'claude-test' refused$"):
        await model.complete(ASK)


# -------------------------------------------------------------------- HTTP errors


async def test_429_honours_retry_after_then_succeeds(server: AnthropicServer) -> None:
    server.then(
        anthropic_error(
            429, "Number of request tokens has exceeded your rate limit", {"retry-after": "1"}
        ),
        anthropic_tool_answer(GOOD),
    )
    async with AnthropicModel(
        "claude-test", api_key="k", base_url=server.base_url, backoff=0.01
    ) as m:
        c = await m.complete(ASK, Route)
    assert c.value.route == "billing"
    assert c.attempts == 2
    [gap] = server.gaps()
    assert 0.95 <= gap < 5
    assert {r.headers.get("x-stainless-retry-count") for r in server.requests} <= {"0", None}


async def test_always_429(server: AnthropicServer) -> None:
    server.then(anthropic_error(429, "rate limited", {"retry-after-ms": "100"}))
    async with AnthropicModel(
        "claude-test", api_key="k", base_url=server.base_url, max_retries=1, backoff=0.01
    ) as m:
        with pytest.raises(ModelRateLimitError, match="rate limited") as info:
            await m.complete(ASK, Route)
    assert (info.value.status_code, info.value.retry_after, info.value.attempts) == (429, 0.1, 2)
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [500, 529])
async def test_5xx_then_success(
    server: AnthropicServer, model: AnthropicModel, status: int
) -> None:
    server.then(anthropic_error(status, "Overloaded"), anthropic_tool_answer(GOOD))
    c = await model.complete(ASK, Route)
    assert c.attempts == 2


async def test_always_500(server: AnthropicServer, model: AnthropicModel) -> None:
    server.then(anthropic_error(500, "Internal server error"))
    with pytest.raises(ModelUnavailableError, match="HTTP 500") as info:
        await model.complete(ASK, Route)
    assert info.value.attempts == 4
    assert len(server.requests) == 4


async def test_client_errors_are_not_retried(
    server: AnthropicServer, model: AnthropicModel
) -> None:
    server.then(anthropic_error(401, "invalid x-api-key"))
    with pytest.raises(ModelError, match=r"HTTP 401\): invalid x-api-key") as info:
        await model.complete(ASK, Route)
    assert type(info.value) is ModelError
    assert len(server.requests) == 1


async def test_timeout(server: AnthropicServer) -> None:
    server.then(Reply(200, anthropic_text_answer("late").body, delay=10))
    async with AnthropicModel(
        "claude-test", api_key="k", base_url=server.base_url, timeout=0.5
    ) as m:
        start = anyio.current_time()
        with pytest.raises(ModelTimeoutError) as info:
            await m.complete(ASK)
    assert anyio.current_time() - start < 5
    assert info.value.timeout == 0.5
    assert len(server.requests) == 1


async def test_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AnthropicModel(
        "claude-test", api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=1, backoff=0.01
    ) as m:
        with pytest.raises(ModelUnavailableError, match="could not reach"):
            await m.complete(ASK)


def test_protocol_and_repr() -> None:
    m = AnthropicModel("claude-test", api_key="k", base_url="http://127.0.0.1:9")
    assert isinstance(m, ChatModel)
    assert m.name == "claude-test"
    assert "claude-test" in repr(m)
