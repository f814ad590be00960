"""The model layer: messages, output validation, Retry-After parsing, ScriptedModel."""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel, Field

import graphorch as go
from graphorch.models import (
    ChatModel,
    Completion,
    Message,
    MissingDependencyError,
    ModelError,
    ModelOutputError,
    ModelRateLimitError,
    ModelRefusalError,
    ModelTimeoutError,
    ScriptedModel,
    Usage,
    validate_output,
)
from graphorch.models._http import RetryPolicy, call_with_retries, parse_retry_after
from graphorch.models.base import schema_name, strict_json_schema


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


class Step(BaseModel):
    tool: str
    args: dict[str, Any] = {}


class Plan(BaseModel):
    """A plan of steps."""

    steps: list[Step]
    reason: str | None = None
    confidence: float = Field(default=0.5, ge=0, le=1)


GOOD = '{"steps": [{"tool": "search", "args": {"q": "x"}}]}'


# ------------------------------------------------------------------------- values


def test_message_constructors_and_validation() -> None:
    assert Message.system("s") == Message("system", "s")
    assert Message.user("u").role == "user"
    assert Message.assistant("a").role == "assistant"
    assert Message.tool("t").role == "tool"
    with pytest.raises(go.DefinitionError, match="role"):
        Message("robot", "x")  # pyright: ignore[reportArgumentType]
    with pytest.raises(go.DefinitionError, match="str"):
        Message("user", 3)  # pyright: ignore[reportArgumentType]


def test_usage_adds_and_prices() -> None:
    assert Usage(1, 2, 0.5) + Usage(3, 4, 0.25) == Usage(4, 6, 0.75)
    assert Usage.priced(1000, 2000, (0.5, 1.5)) == Usage(1000, 2000, 3.5)
    assert Usage.priced(10, 10, None).cost == 0.0


def test_errors_sit_in_the_graphorch_tree() -> None:
    assert issubclass(ModelError, go.RunError)
    assert issubclass(ModelOutputError, ModelError)
    assert issubclass(MissingDependencyError, go.GraphorchError)
    assert issubclass(MissingDependencyError, ImportError)
    err = ModelRateLimitError("slow", model="m", status_code=429, retry_after=2.0)
    err.run_id, err.node = "r1", "plan"
    assert str(err) == "[run r1, node 'plan'] slow"
    assert (err.status_code, err.retry_after, err.model) == (429, 2.0, "m")


# ------------------------------------------------------------------ validate_output


def test_validate_output_accepts_json_and_fences() -> None:
    assert validate_output(GOOD, Plan).steps[0].tool == "search"
    assert validate_output(f"  ```json\n{GOOD}\n```  ", Plan).steps[0].tool == "search"
    assert validate_output(f"```\n{GOOD}```", Plan).steps[0].args == {"q": "x"}
    assert validate_output(f"Here it is:\n```json\n{GOOD}\n```\nDone.", Plan).steps


@pytest.mark.parametrize("raw", ["", "   \n", "```json\n```"])
def test_validate_output_refuses_empty(raw: str) -> None:
    with pytest.raises(ModelOutputError, match="empty answer") as info:
        validate_output(raw, Plan, model="m")
    assert info.value.kind == "empty"
    assert info.value.raw == raw
    assert "was empty" in info.value.feedback


def test_validate_output_not_json() -> None:
    with pytest.raises(ModelOutputError, match="not JSON") as info:
        validate_output("Sure! The plan is to search.", Plan, model="m", usage=Usage(3, 4))
    err = info.value
    assert err.kind == "not_json"
    assert err.model == "m"
    assert err.usage == Usage(3, 4)
    assert err.schema == "Plan"
    assert "Expecting value" in err.errors[0]
    assert "not valid JSON" in err.feedback
    assert "Plan schema" in err.feedback


def test_validate_output_wrong_shape_lists_every_problem() -> None:
    with pytest.raises(ModelOutputError) as info:
        validate_output('{"steps": [{"args": 1}], "confidence": 7}', Plan, note="cut short")
    err = info.value
    assert err.kind == "schema"
    assert len(err.errors) == 3
    text = "\n".join(err.errors)
    assert "steps.0.tool: Field required" in text
    assert "steps.0.args: Input should be " in text
    assert "confidence: Input should be less than or equal to 1" in text
    assert "errors.pydantic.dev" not in str(err)  # no URLs fed back to the model
    assert "(cut short)" in str(err)
    assert "did not match the required schema" in err.feedback
    assert "- steps.0.tool: Field required" in err.feedback


def test_validate_output_uses_json_mode() -> None:
    class Stamp(BaseModel):
        when: float
        tags: tuple[str, ...]

    assert validate_output('{"when": 1.5, "tags": ["a"]}', Stamp).tags == ("a",)
    with pytest.raises(ModelOutputError):
        validate_output('["not", "an", "object"]', Stamp)


# ------------------------------------------------------------------------- schemas


def test_schema_name_is_provider_safe() -> None:
    class Weird(BaseModel):
        x: int

    Weird.__name__ = "Plan[int] v2"
    assert schema_name(Weird) == "Plan_int__v2"
    assert schema_name(Plan) == "Plan"


def test_strict_json_schema() -> None:
    schema = strict_json_schema(Plan)
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["steps", "reason", "confidence"]
    step = schema["$defs"]["Step"]
    assert step["additionalProperties"] is False
    assert step["required"] == ["tool", "args"]
    assert "default" not in schema["properties"]["reason"]  # None default dropped
    assert schema["properties"]["confidence"]["default"] == 0.5
    # the original is untouched
    assert "additionalProperties" not in Plan.model_json_schema()

    class Inner(BaseModel):
        a: int

    class Outer(BaseModel):
        inner: Inner = Field(description="the inner one")

    strict = strict_json_schema(Outer)
    inner = strict["properties"]["inner"]
    assert "$ref" not in inner  # a $ref with siblings is inlined
    assert inner["description"] == "the inner one"
    assert inner["additionalProperties"] is False
    assert inner["required"] == ["a"]


# --------------------------------------------------------------------- retry-after


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = parse_retry_after({"retry-after": date})
    assert seconds is not None and 25 < seconds <= 31


async def test_retry_loop_gives_up_when_the_wait_would_pass_the_timeout() -> None:
    calls = 0

    async def send(remaining: float | None) -> str:
        nonlocal calls
        calls += 1
        raise RuntimeError("429")

    def classify(exc: Exception) -> ModelError | None:
        return ModelRateLimitError("slow", model="m", status_code=429, retry_after=5.0)

    start = anyio.current_time()
    with pytest.raises(ModelRateLimitError, match="would pass the 1s timeout") as info:
        await call_with_retries(send, classify, policy=RetryPolicy(3), timeout=1.0, model="m")
    assert anyio.current_time() - start < 0.5
    assert calls == 1
    assert info.value.attempts == 1
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_retry_loop_refuses_a_retry_after_beyond_max_delay() -> None:
    def classify(exc: Exception) -> ModelError | None:
        return ModelRateLimitError("slow", retry_after=3600.0)

    async def send(remaining: float | None) -> str:
        raise RuntimeError

    with pytest.raises(ModelRateLimitError, match="exceeds max_delay"):
        await call_with_retries(
            send, classify, policy=RetryPolicy(3, max_delay=60), timeout=None, model="m"
        )


async def test_retry_loop_passes_unknown_errors_through() -> None:
    async def send(remaining: float | None) -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await call_with_retries(
            send, lambda e: None, policy=RetryPolicy(3), timeout=None, model="m"
        )


async def test_retry_loop_times_out_a_hanging_call() -> None:
    async def send(remaining: float | None) -> str:
        assert remaining is not None and remaining <= 0.2
        await anyio.sleep(10)
        return "never"

    with pytest.raises(ModelTimeoutError, match=r"within 0\.2s") as info:
        await call_with_retries(send, lambda e: None, policy=RetryPolicy(), timeout=0.2, model="m")
    assert info.value.timeout == 0.2


def test_retry_policy_validates() -> None:
    with pytest.raises(go.DefinitionError):
        RetryPolicy(-1)


# --------------------------------------------------------------------- scripted


async def test_scripted_answers_in_order_in_every_form() -> None:
    async def later(messages: Sequence[Message], schema: type[BaseModel] | None) -> str:
        await anyio.lowlevel.checkpoint()
        return GOOD

    def echo(messages: Sequence[Message], schema: type[BaseModel] | None) -> dict[str, Any]:
        return {"steps": [{"tool": messages[-1].content}]}

    model = ScriptedModel(
        [
            GOOD,
            {"steps": [{"tool": "a"}]},
            Plan(steps=[Step(tool="b")]),
            echo,
            later,
            "just text",
        ]
    )
    tools: list[str] = []
    for i in range(5):
        c = await model.complete([Message.user(f"u{i}")], Plan)
        assert isinstance(c.value, Plan)
        tools.append(c.value.steps[0].tool)
    assert tools == ["search", "a", "b", "u3", "search"]
    text = await model.complete([Message.user("x")])
    assert text.value == "just text"
    assert text.raw == "just text"
    assert text.model == "scripted"
    assert model.remaining == 0
    with pytest.raises(ModelError, match="ran out of answers: this is call 7 but 6"):
        await model.complete([Message.user("again")])


async def test_scripted_records_calls() -> None:
    model = ScriptedModel([GOOD, "t"])
    msgs = [Message.system("be brief"), Message.user("plan it")]
    await model.complete(msgs, Plan, timeout=3)
    await model.complete(msgs)
    assert len(model.calls) == 2
    first = model.calls[0]
    assert first.messages == tuple(msgs)
    assert first.schema is Plan
    assert first.timeout == 3
    assert first.last_user_message == "plan it"
    assert model.calls[1].schema is None


async def test_scripted_usage_from_lengths_and_price() -> None:
    model = ScriptedModel(["x" * 40, "y" * 8], price_per_1k=(1.0, 2.0))
    c = await model.complete([Message.system("a" * 20), Message.user("b" * 21)])
    assert c.usage == Usage(11, 10, (11 * 1.0 + 10 * 2.0) / 1000)
    c2 = await model.complete([Message.user("")])
    assert c2.usage.input_tokens == 0 and c2.usage.output_tokens == 2
    assert model.usage == c.usage + c2.usage


async def test_scripted_raises_scripted_errors() -> None:
    model = ScriptedModel(
        [ModelRefusalError("no way"), ModelRateLimitError("slow", retry_after=1.0), ValueError("x")]
    )
    with pytest.raises(ModelRefusalError) as info:
        await model.complete([Message.user("a")], Plan)
    assert info.value.model == "scripted"  # filled in
    with pytest.raises(ModelRateLimitError):
        await model.complete([Message.user("b")])
    with pytest.raises(ValueError):
        await model.complete([Message.user("c")])


@pytest.mark.parametrize(
    "answer",
    ["", "not json", '{"steps": "nope"}', {"steps": [{"args": 3}]}, None],
)
async def test_scripted_validation_is_the_adapters_validation(answer: Any) -> None:
    model = ScriptedModel([answer], name="fake", price_per_1k=(1, 1))
    with pytest.raises(ModelOutputError) as info:
        await model.complete([Message.user("plan")], Plan)
    got = info.value
    with pytest.raises(ModelOutputError) as ref:
        validate_output(got.raw, Plan, model="fake", usage=got.usage)
    assert (got.kind, got.errors, got.feedback, str(got)) == (
        ref.value.kind,
        ref.value.errors,
        ref.value.feedback,
        str(ref.value),
    )
    assert got.usage is not None and got.usage.input_tokens == 1


async def test_scripted_empty_text_answer_is_an_error() -> None:
    with pytest.raises(ModelOutputError, match="empty answer") as info:
        await ScriptedModel(["  "]).complete([Message.user("hi")])
    assert info.value.kind == "empty"


async def test_scripted_mapping_routes_on_the_last_user_message() -> None:
    model = ScriptedModel({"refund": '{"steps": [{"tool": "pay"}]}', "*": "fallback"})
    c = await model.complete(
        [Message.user("I want a refund"), Message.assistant("ok"), Message.user("refund now")], Plan
    )
    assert c.value.steps[0].tool == "pay"
    assert (await model.complete([Message.user("hello")])).value == "fallback"
    assert model.remaining is None
    strict = ScriptedModel({"refund": "x"})
    with pytest.raises(ModelError, match="no answer for the user message 'hello'"):
        await strict.complete([Message.user("hello")])


async def test_scripted_function_of_the_last_user_message() -> None:
    model = ScriptedModel(lambda text: {"steps": [{"tool": text.upper()}]})
    for word in ("a", "b"):
        c = await model.complete([Message.user(word)], Plan)
        assert c.value.steps[0].tool == word.upper()


async def test_scripted_delay_honours_timeout() -> None:
    model = ScriptedModel(["late", "on time"], delay=5)
    start = anyio.current_time()
    with pytest.raises(ModelTimeoutError, match=r"within 0\.05s") as info:
        await model.complete([Message.user("x")], timeout=0.05)
    assert anyio.current_time() - start < 2
    assert info.value.timeout == 0.05
    model.delay = 0.01
    assert (await model.complete([Message.user("x")], timeout=1)).value == "on time"


def test_scripted_refuses_bad_scripts() -> None:
    with pytest.raises(go.DefinitionError, match="not one string"):
        ScriptedModel("hello")  # pyright: ignore[reportArgumentType]
    with pytest.raises(go.DefinitionError, match="list, a mapping or a callable"):
        ScriptedModel(42)  # pyright: ignore[reportArgumentType]


async def test_scripted_refuses_unscriptable_answers() -> None:
    with pytest.raises(go.DefinitionError, match="cannot answer with a object"):
        await ScriptedModel([object()]).complete([Message.user("x")])


async def test_scripted_parallel_calls() -> None:
    model = ScriptedModel({"*": GOOD}, delay=0.01)
    results: list[Completion[Plan]] = []

    async def ask(i: int) -> None:
        results.append(await model.complete([Message.user(str(i))], Plan))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(ask, i)
    assert len(results) == 20 and len(model.calls) == 20


# --------------------------------------------------------------------- protocol


def test_models_satisfy_the_protocol() -> None:
    assert isinstance(ScriptedModel([]), ChatModel)
    assert not isinstance(object(), ChatModel)

    class Mine:
        name = "mine"

        async def complete(
            self, messages: Sequence[Message], schema: Any = None, *, timeout: float | None = None
        ) -> Completion[Any]:
            return Completion("x", Usage(), "x", "mine")

    assert isinstance(Mine(), ChatModel)


def test_importing_models_imports_no_sdk() -> None:
    code = (
        "import sys, graphorch, graphorch.models; "
        "bad = [m for m in ('openai', 'anthropic', 'httpx', 'httpx2') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("cls", "package"), [("OpenAIModel", "openai"), ("AnthropicModel", "anthropic")]
)
def test_missing_sdk_gives_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, cls: str, package: str
) -> None:
    import graphorch.models as models

    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(
        MissingDependencyError, match=rf"pip install 'graphorch\[{package}\]'"
    ) as info:
        getattr(models, cls)("some-model", api_key="k")
    assert info.value.package == package
    assert isinstance(info.value, ImportError)


async def test_completion_round_trips_through_a_record() -> None:
    model = ScriptedModel([GOOD, "plain"], price_per_1k=(1, 2))
    c = await model.complete([Message.user("x")], Plan)
    record = c.to_dict()
    assert json.loads(json.dumps(record)) == record
    again = Completion.from_dict(record, Plan)
    assert again == c
    text = await model.complete([Message.user("x")])
    assert Completion.from_dict(text.to_dict()) == text

    class Other(BaseModel):
        name: str

    with pytest.raises(ModelOutputError, match="does not fit Other"):
        Completion.from_dict(record, Other)
