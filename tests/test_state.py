"""StateSchema: validating changes, reducers, parallel merges, per-field JSON."""

from __future__ import annotations

import json
import threading
import warnings
from typing import Annotated, Any

import pytest
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
    root_validator,  # pyright: ignore[reportDeprecated]
    validator,  # pyright: ignore[reportDeprecated]
)
from pydantic_core import core_schema

import graphorch as go
from graphorch.state import StateSchema
from graphorch.store.base import AppendField, SetField, apply_append


def longest(current: str, update: str) -> str:
    return update if len(update) > len(current) else current


class S(BaseModel):
    text: str = ""
    count: int = 0
    log: Annotated[list[str], go.append] = []
    total: Annotated[int, go.add] = 0
    meta: Annotated[dict[str, int], go.merge] = {}
    best: Annotated[str, go.reducer(longest)] = ""
    anything: Any = None


class Plain(BaseModel):
    a: int = 0
    b: str = ""


schema = StateSchema(S)
plain = StateSchema(Plain)


def test_reducers_are_read_from_annotations() -> None:
    assert schema.fields == ("text", "count", "log", "total", "meta", "best", "anything")
    assert {k: r.name for k, r in schema.reducers.items()} == {
        "log": "append",
        "total": "add",
        "meta": "merge",
        "best": "longest",
    }
    assert schema.reducers["log"].appends and not schema.reducers["total"].appends
    assert plain.reducers == {}


def test_schema_needs_a_pydantic_model() -> None:
    with pytest.raises(go.DefinitionError, match="state must be a pydantic BaseModel subclass"):
        StateSchema(dict)  # pyright: ignore[reportArgumentType]


# -- input ---------------------------------------------------------------------


def test_validate_input_accepts_model_or_dict() -> None:
    assert plain.validate_input(Plain(a=1)) == Plain(a=1)
    assert plain.validate_input({"a": "2"}) == Plain(a=2)


def test_validate_input_refuses_bad_input_naming_the_field() -> None:
    with pytest.raises(go.InputValidationError, match="input does not fit Plain") as info:
        plain.validate_input({"a": "not a number"})
    assert "a: " in str(info.value) and "'not a number'" in str(info.value)
    assert info.value.errors == ["('a',)"]
    with pytest.raises(
        go.InputValidationError, match="input is a S, but the graph's state is Plain"
    ):
        plain.validate_input(S())
    with pytest.raises(go.InputValidationError, match=r"must be a Plain or a dict.*got list"):
        plain.validate_input([1, 2])


# -- normalize: what a node returns --------------------------------------------


def test_normalize_dict_none_and_new_model() -> None:
    st = Plain(a=1, b="x")
    assert plain.normalize(st, {"a": 2}, node="n") == {"a": 2}
    assert plain.normalize(st, None, node="n") == {}
    assert plain.normalize(st, Plain(a=1, b="y"), node="n") == {"b": "y"}
    assert plain.normalize(st, Plain(a=1, b="x"), node="n") == {}


def test_normalize_refuses_unknown_fields() -> None:
    with pytest.raises(go.StateUpdateError) as info:
        plain.normalize(Plain(), {"a": 1, "nope": 2}, node="writer")
    err = info.value
    assert err.node == "writer" and err.field == "nope"
    assert "unknown field(s) 'nope'" in str(err) and "Plain has a, b" in str(err)
    assert str(err).startswith("[node 'writer'] ")


@pytest.mark.parametrize("garbage", [[("a", 1)], "a=1", 42, S()])
def test_normalize_refuses_garbage(garbage: Any) -> None:
    with pytest.raises(go.StateUpdateError) as info:
        plain.normalize(Plain(), garbage, node="junk")
    assert info.value.node == "junk"
    assert f"returned {type(garbage).__name__}" in str(info.value)
    assert "a dict of changes, a new Plain, or None" in str(info.value)


def test_new_model_with_reducer_fields_is_not_reduced_twice() -> None:
    st = S(log=["a"], total=3, meta={"x": 1}, best="ab")
    new = st.model_copy(update={"log": ["a", "b"], "total": 5, "meta": {"y": 2}, "best": "z"})
    changes = schema.normalize(st, new, node="n")
    after, _ = schema.apply(st, [("n", changes)])
    assert after == new


def test_new_models_from_parallel_branches_still_append() -> None:
    st = S(log=["a"])
    left = schema.normalize(st, st.model_copy(update={"log": ["a", "l"]}), node="left")
    right = schema.normalize(st, st.model_copy(update={"log": ["a", "r"]}), node="right")
    after, _ = schema.apply(st, [("left", left), ("right", right)])
    assert after.log == ["a", "l", "r"]


def test_whole_new_value_and_reduced_update_from_parallel_branches_conflict() -> None:
    st = S(total=1)
    replaced = schema.normalize(st, st.model_copy(update={"total": 10}), node="left")
    with pytest.raises(go.ConflictingUpdateError) as info:
        schema.apply(st, [("left", replaced), ("right", {"total": 2})])
    assert info.value.field == "total"
    assert "'left' and 'right'" in str(info.value) and "whole new state" in str(info.value)


# -- apply: validating changes ---------------------------------------------------


def test_apply_builds_a_new_state_and_reports_changes() -> None:
    st = Plain(a=1)
    after, changed = plain.apply(st, [("n", {"a": "7"})])
    assert after == Plain(a=7) and changed == {"a": 7}
    assert st == Plain(a=1)  # the old state is untouched
    same, nothing = plain.apply(st, [("n", {})])
    assert same is st and nothing == {}


def test_bad_change_names_node_and_field_and_changes_nothing() -> None:
    st = Plain(a=1, b="x")
    with pytest.raises(go.StateUpdateError) as info:
        plain.apply(st, [("ok", {"b": "y"}), ("bad", {"a": "nan?"})])
    err = info.value
    assert err.node == "bad" and err.field == "a"
    assert "bad change to field 'a'" in str(err) and "'nan?'" in str(err)
    assert st == Plain(a=1, b="x")


def test_apply_refuses_unknown_fields() -> None:
    with pytest.raises(go.StateUpdateError, match=r"unknown field.*'zzz'") as info:
        plain.apply(Plain(), [("n", {"zzz": 1})])
    assert info.value.node == "n" and info.value.field == "zzz"


# -- reducers ------------------------------------------------------------------


def test_append_add_merge_and_custom_reducers() -> None:
    st = S(log=["a"], total=2, meta={"x": 1, "y": 1}, best="abc")
    after, changed = schema.apply(
        st, [("n", {"log": ["b", "c"], "total": 3, "meta": {"y": 2, "z": 3}, "best": "zz"})]
    )
    assert after.log == ["a", "b", "c"]
    assert after.total == 5
    assert after.meta == {"x": 1, "y": 2, "z": 3}
    assert after.best == "abc"
    assert changed["log"] == ["a", "b", "c"] and changed["total"] == 5


def test_custom_reducer_takes_its_name_from_the_function() -> None:
    red = go.reducer(longest)
    assert isinstance(red, go.Reducer) and red.name == "longest" and not red.appends
    assert red("ab", "c") == "ab"


@pytest.mark.parametrize(
    ("field", "update", "reducer"),
    [("log", "not-a-list", "append"), ("meta", ["x"], "merge")],
)
def test_reducer_refusing_an_update_names_reducer_field_and_node(
    field: str, update: Any, reducer: str
) -> None:
    with pytest.raises(go.StateUpdateError) as info:
        schema.apply(S(), [("w", {field: update})])
    err = info.value
    assert err.node == "w" and err.field == field
    assert f"reducer {reducer!r} of field {field!r} refused the update" in str(err)


def test_parallel_writes_combine_through_reducers_in_branch_order() -> None:
    st = S(log=["start"], total=1)
    after, _ = schema.apply(
        st,
        [("a", {"log": ["from a"], "total": 10}), ("b", {"log": ["from b"], "total": 100})],
    )
    assert after.log == ["start", "from a", "from b"]
    assert after.total == 111


def test_conflicting_parallel_writes_name_field_and_nodes() -> None:
    with pytest.raises(go.ConflictingUpdateError) as info:
        schema.apply(S(), [("left", {"text": "l"}), ("right", {"text": "r", "total": 1})])
    err = info.value
    assert isinstance(err, go.StateUpdateError)
    assert err.field == "text" and err.node == "right"
    msg = str(err)
    assert "field 'text'" in msg and "'left'" in msg and "'right'" in msg
    assert "has no reducer" in msg and "go.append" in msg


def test_parallel_writes_to_different_fields_merge() -> None:
    after, changed = plain.apply(Plain(), [("x", {"a": 1}), ("y", {"b": "y"})])
    assert after == Plain(a=1, b="y") and changed == {"a": 1, "b": "y"}


def test_reduce_false_sets_values_as_given() -> None:
    after, _ = schema.apply(S(log=["a"]), [("n", {"log": ["z"]})], reduce=False)
    assert after.log == ["z"]
    with pytest.raises(go.ConflictingUpdateError):
        schema.apply(S(), [("a", {"log": ["1"]}), ("b", {"log": ["2"]})], reduce=False)


# A user module (without postponed annotations) whose state refers to a class defined
# after it: pydantic resolves the reference when the model is first used.
_FORWARD_REF_MODULE = """
from typing import Annotated, Any
from pydantic import BaseModel
import graphorch as go

class Chat(BaseModel):
    msgs: Annotated[list["Msg"], go.append] = []

class Msg(BaseModel):
    text: str

def say(state: Chat) -> dict[str, Any]:
    return {"msgs": [Msg(text="hi"), {"text": "yo"}]}

g = go.Graph("chat", state=Chat)
g.plan("say", say)
g.end("done")
g.edge(go.START, "say")
g.edge("say", "done")
result = go.run(g, Chat())
"""


def test_appends_to_a_list_of_a_model_defined_later() -> None:
    namespace: dict[str, Any] = {"__name__": "user_module"}
    with warnings.catch_warnings():  # as a user's module runs: warnings are not errors
        warnings.simplefilter("ignore")
        exec(_FORWARD_REF_MODULE, namespace)
    result = namespace["result"]
    assert result.status is go.RunStatus.SUCCEEDED, result
    assert [m.text for m in result.state.msgs] == ["hi", "yo"]


def test_appended_items_see_the_rest_of_the_state_and_strict_mode_takes_tuples() -> None:
    def tagged(v: str, info: ValidationInfo) -> str:
        return f"{info.data['user']}: {v}"

    class Chat(BaseModel):
        model_config = ConfigDict(strict=True)
        user: str = "ann"
        msgs: Annotated[list[Annotated[str, AfterValidator(tagged)]], go.append] = []

    chat = StateSchema(Chat)
    st, _ = chat.apply(Chat(), [("n", {"msgs": ("hi",)})])
    st, _ = chat.apply(st, [("n", {"msgs": ["there"]})])
    assert st.msgs == ["ann: hi", "ann: there"]


def test_appended_items_alone_are_validated_not_the_whole_list_again() -> None:
    seen: list[str] = []

    def checked(item: str) -> str:
        seen.append(item)
        return item.strip()

    class Log(BaseModel):
        lines: Annotated[list[Annotated[str, AfterValidator(checked)]], go.append] = []

    log = StateSchema(Log)
    st = Log()
    for i in range(50):
        st, changed = log.apply(st, [("n", {"lines": [f" {i} "]})])
        assert changed == {"lines": st.lines}
    assert st.lines == [str(i) for i in range(50)]
    assert len(seen) == 50  # each item once (the whole list each time: 1,275)
    assert st.model_fields_set == {"lines"} and st == Log(lines=st.lines)


def test_a_bad_appended_item_is_named_by_its_place_in_the_whole_list() -> None:
    class Nums(BaseModel):
        xs: Annotated[list[int], go.append] = []

    nums = StateSchema(Nums)
    st, _ = nums.apply(Nums(xs=[1, 2]), [("n", {"xs": ["3"]})])
    assert st.xs == [1, 2, 3]  # coerced as the model would
    with pytest.raises(go.StateUpdateError) as info:
        nums.apply(st, [("adder", {"xs": [4, "five"]})])
    err = info.value
    assert err.node == "adder" and err.field == "xs"
    assert "bad change to field 'xs': xs.4: Input should be a valid integer" in str(err)
    assert "'five'" in str(err)


_V1 = pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince20")


def _at_most_two(items: list[str]) -> list[str]:
    if len(items) > 2:
        raise ValueError("at most 2 items")
    return items


@pytest.mark.parametrize(
    "kind",
    [
        "constraint",
        "field validator",
        "model validator",
        pytest.param("v1 validator", marks=_V1),
        pytest.param("v1 root validator", marks=_V1),
        "own core schema",
    ],
)
def test_lists_with_their_own_rules_are_validated_whole_on_every_append(kind: str) -> None:
    if kind == "constraint":

        class Capped(BaseModel):
            items: Annotated[list[str], go.append, Field(max_length=2)] = []

    elif kind == "field validator":

        class Capped(BaseModel):
            items: Annotated[list[str], go.append] = []

            @field_validator("items")
            @classmethod
            def at_most_two(cls, v: list[str]) -> list[str]:
                return _at_most_two(v)

    elif kind == "v1 validator":

        class Capped(BaseModel):
            items: Annotated[list[str], go.append] = []

            @validator("items")
            @classmethod
            def at_most_two(cls, v: list[str]) -> list[str]:
                return _at_most_two(v)

    elif kind == "v1 root validator":

        class Capped(BaseModel):
            items: Annotated[list[str], go.append] = []

            @root_validator(skip_on_failure=True)
            @classmethod
            def at_most_two(cls, values: dict[str, Any]) -> dict[str, Any]:
                _at_most_two(values.get("items", []))
                return values

    elif kind == "own core schema":

        def capped(model: Any) -> Any:
            _at_most_two(model.items)
            return model

        class Capped(BaseModel):
            items: Annotated[list[str], go.append] = []

            @classmethod
            def __get_pydantic_core_schema__(
                cls, source: Any, handler: GetCoreSchemaHandler
            ) -> core_schema.CoreSchema:
                return core_schema.no_info_after_validator_function(capped, handler(source))

    else:

        class Capped(BaseModel):
            items: Annotated[list[str], go.append] = []

            @model_validator(mode="after")
            def at_most_two(self) -> Capped:
                _at_most_two(self.items)
                return self

    capped = StateSchema(Capped)
    st, _ = capped.apply(Capped(), [("n", {"items": ["a", "b"]})])
    with pytest.raises(go.StateUpdateError):
        capped.apply(st, [("n", {"items": ["c"]})])


def test_parallel_appends_store_both_branches_new_items() -> None:
    old = S(log=["a"])
    applied = schema.apply_changes(old, [("x", {"log": ["b"]}), ("y", {"log": ["c", "d"]})])
    assert applied.state.log == ["a", "b", "c", "d"]
    assert applied.appended == {"log": ["b", "c", "d"]}
    writes = schema.writes(old, applied.state, applied.changed, appended=applied.appended)
    assert writes["log"] == AppendField(b'["b","c","d"]')


# -- serialization -------------------------------------------------------------


def test_dump_all_and_load_round_trip() -> None:
    st = S(text="héllo", count=3, log=["a", "b"], total=4, meta={"k": 1}, anything=[1, {"x": None}])
    writes = schema.dump_all(st)
    assert set(writes) == set(schema.fields)
    assert all(isinstance(w, SetField) for w in writes.values())
    assert json.loads(writes["log"].json) == ["a", "b"]  # pyright: ignore[reportAttributeAccessIssue]
    raw = {k: w.json for k, w in writes.items()}  # pyright: ignore[reportAttributeAccessIssue]
    assert schema.load(raw) == st


def test_load_of_data_that_no_longer_fits_the_schema() -> None:
    with pytest.raises(go.InputValidationError) as info:
        plain.load({"a": b'"text"', "b": b'"x"'}, what="the state of run r1")
    msg = str(info.value)
    assert "the state of run r1 no longer fits Plain" in msg and "a: " in msg
    assert "migrate" in msg


@pytest.mark.parametrize("value", [object(), threading.Lock(), lambda: None])
def test_unserializable_value_is_refused_naming_the_field(value: Any) -> None:
    st = S(anything=value)
    with pytest.raises(go.UnserializableStateError) as info:
        schema.dump_field("anything", value, node="maker")
    err = info.value
    assert err.field == "anything" and err.node == "maker"
    assert "field 'anything' holds a value that cannot be checkpointed" in str(err)
    assert "Context" in str(err)
    with pytest.raises(go.UnserializableStateError):
        schema.dump_all(st)
    with pytest.raises(go.UnserializableStateError):
        schema.writes(S(), st, ["anything"], node="maker")


def test_writes_store_only_the_new_tail_of_a_pure_append() -> None:
    old = S(log=["a", "b"], count=1)
    new, changed = schema.apply(old, [("n", {"log": ["c", "d"], "count": 2})])
    writes = schema.writes(old, new, changed, node="n")
    assert writes["log"] == AppendField(b'["c","d"]')
    assert writes["count"] == SetField(b"2")
    assert set(writes) == {"log", "count"}
    assert json.loads(apply_append(b'["a","b"]', writes["log"].items)) == new.log  # pyright: ignore[reportAttributeAccessIssue]


def test_writes_set_the_whole_list_when_it_was_not_a_pure_append() -> None:
    old = S(log=["a", "b"])
    new = S(log=["b"])
    writes = schema.writes(old, new, ["log"])
    assert writes == {"log": SetField(b'["b"]')}
    # a plain (non-append) list field is always set whole
    assert StateSchema(Plain).writes(Plain(), Plain(b="x"), ["b"]) == {"b": SetField(b'"x"')}


def test_append_from_an_empty_list_is_an_append() -> None:
    old = S()
    new, changed = schema.apply(old, [("n", {"log": ["first"]})])
    assert schema.writes(old, new, changed) == {"log": AppendField(b'["first"]')}


class Guarded(BaseModel):
    """Field validators run on each change; a model validator sees the whole state."""

    low: int = 0
    high: int = 10
    docs: dict[str, str] = {}

    @field_validator("low")
    @classmethod
    def _not_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("low must not be negative")
        return v


class Ordered(Guarded):
    @model_validator(mode="after")
    def _ordered(self) -> Ordered:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)
    a: int = 0
    b: str = ""


def test_a_change_runs_the_field_validators_of_the_changed_field() -> None:
    guarded = StateSchema(Guarded)
    st = Guarded(docs={"d": "x" * 10})
    after, changed = guarded.apply(st, [("n", {"low": "3"})])
    assert after.low == 3 and changed == {"low": 3}
    assert after.docs is st.docs  # an unchanged field is carried over, not rebuilt
    with pytest.raises(go.StateUpdateError, match="low must not be negative") as info:
        guarded.apply(st, [("n", {"low": -1})])
    assert info.value.field == "low" and info.value.node == "n"
    assert st == Guarded(docs={"d": "x" * 10})


def test_a_model_validator_sees_the_whole_state_after_a_change() -> None:
    ordered = StateSchema(Ordered)
    st = Ordered(low=1, high=5)
    assert ordered.apply(st, [("n", {"low": 4})])[0].low == 4
    with pytest.raises(go.StateUpdateError, match="low must not exceed high"):
        ordered.apply(st, [("n", {"low": 6})])
    assert st == Ordered(low=1, high=5)


def test_frozen_states_step_too() -> None:
    frozen = StateSchema(Frozen)
    st = Frozen(a=1)
    after, changed = frozen.apply(st, [("n", {"a": 2, "b": "x"})])
    assert after == Frozen(a=2, b="x") and changed == {"a": 2, "b": "x"}
    assert st == Frozen(a=1)


class Roomy(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int = 0
    _cache: dict[str, int] = PrivateAttr(default_factory=dict)


def test_a_change_keeps_extra_fields_and_private_attributes() -> None:
    roomy = StateSchema(Roomy)
    st = Roomy(a=1, note="kept")  # pyright: ignore[reportCallIssue]
    st._cache["k"] = 1  # pyright: ignore[reportPrivateUsage]
    after, _ = roomy.apply(st, [("n", {"a": 2})])
    assert after.a == 2 and after.model_extra == {"note": "kept"}
    assert after._cache == {"k": 1}  # pyright: ignore[reportPrivateUsage]
    assert after.model_fields_set == {"a", "note"}
    assert st.a == 1 and after.model_extra is not st.model_extra
