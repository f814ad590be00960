"""State schemas: validation of changes, reducers, merges and per-field JSON.

State is immutable. A node returns changes; :class:`StateSchema` validates them and
builds the next state, so a bad change never leaves the state half-updated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar, cast, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from graphorch._record import Record

from .exceptions import (
    ConflictingUpdateError,
    DefinitionError,
    InputValidationError,
    StateUpdateError,
    UnserializableStateError,
)
from .store.base import AppendField, FieldWrite, SetField

__all__ = ["Applied", "Reducer", "StateSchema", "add", "append", "merge", "reducer"]

StateT = TypeVar("StateT", bound=BaseModel)


class Reducer(Record):
    """How a field combines its current value with a node's update.

    Declare one on a state field with ``Annotated[list[str], go.append]``. Reducers apply
    to every update of the field, and they let parallel branches write the same field.
    """

    name: str
    fn: Callable[[Any, Any], Any]
    appends: bool = False

    def __call__(self, current: Any, update: Any) -> Any:
        return self.fn(current, update)


def reducer(fn: Callable[[Any, Any], Any]) -> Reducer:
    """Make a custom reducer from ``fn(current, update) -> new``."""
    return Reducer(getattr(fn, "__name__", "reducer"), fn)


def _append(current: Any, update: Any) -> Any:
    if not isinstance(update, list | tuple):
        raise TypeError(
            f"an append field takes a list of items to add, got {type(update).__name__}"
        )
    return [*current, *cast(Sequence[Any], update)]


def _add(current: Any, update: Any) -> Any:
    return current + update


def _merge(current: Any, update: Any) -> Any:
    if not isinstance(update, Mapping):
        raise TypeError(f"a merge field takes a mapping, got {type(update).__name__}")
    return {**current, **cast(Mapping[Any, Any], update)}


append = Reducer("append", _append, appends=True)
"""Reducer for list fields: an update is a list of items appended to the current list."""

add = Reducer("add", _add)
"""Reducer for numbers (or anything with ``+``): an update is added to the current value."""

merge = Reducer("merge", _merge)
"""Reducer for dict fields: an update's keys overwrite the current dict's."""


class _Replace(Record):
    """A reducer field's whole new value (from a node that returned a new state): it is
    set, not passed through the reducer, which would count the old value twice."""

    value: Any


class Applied(NamedTuple, Generic[StateT]):
    """What :meth:`StateSchema.apply_changes` made of a step's changes."""

    state: StateT  # the next state
    changed: dict[str, Any]  # the changed fields with their new values
    appended: dict[str, list[Any]]  # fields that only grew: their new items, validated


def _first_loc(err: ValidationError) -> str | None:
    for e in err.errors():
        if e["loc"]:
            return str(e["loc"][0])
    return None


def _describe(err: ValidationError) -> str:
    parts: list[str] = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(state)"
        parts.append(f"{loc}: {e['msg']} (got {e.get('input')!r:.60})")
    return "; ".join(parts)


class StateSchema(Generic[StateT]):
    """Everything the runtime needs to know about one state model."""

    def __init__(self, model: type[StateT]) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise DefinitionError(f"state must be a pydantic BaseModel subclass, got {model!r}")
        self.model = model
        self.fields: tuple[str, ...] = tuple(model.model_fields)
        self._field_set = frozenset(self.fields)
        self.reducers: dict[str, Reducer] = {}
        for name, info in model.model_fields.items():
            for meta in info.metadata:
                if isinstance(meta, Reducer):
                    self.reducers[name] = meta
        self._adapters: dict[str, TypeAdapter[Any]] = {}
        self._to_json: dict[str, Callable[..., bytes]] = {}  # per field: its serializer
        # Validating only the changed fields (as pydantic's validate_assignment does)
        # instead of the whole state makes a step's cost independent of the state's
        # size. Models with model validators see the whole state, as they expect;
        # frozen models refuse assignment.
        decorators = model.__pydantic_decorators__
        self._per_field = not decorators.model_validators and not model.model_config.get(
            "frozen", False
        )
        self._appendable = frozenset(n for n in self.reducers if self._appends_alone(n))

    def _appends_alone(self, name: str) -> bool:
        """Whether validating only the items appended to field ``name`` is what
        validating the whole grown list would do: a plain ``list[X]`` with ``go.append``,
        no constraint on the list, no validator that sees the list or the whole state.
        (The new items are still validated by the model, as the field's value, so their
        own validators run as before.) Revalidating every item on every append made a
        step's cost grow with the list: 40 % of the step at 5,000 items."""
        info = self.model.model_fields[name]
        decorators = self.model.__pydantic_decorators__
        on_fields = [*decorators.field_validators.values(), *decorators.validators.values()]
        # a model that builds its own core schema may wrap it in a check of the whole state
        own_schema = any(
            "__get_pydantic_core_schema__" in vars(k)
            for k in self.model.__mro__
            if k is not BaseModel and issubclass(k, BaseModel)
        )
        return not (
            not self._per_field
            or own_schema
            or self.reducers[name].fn is not _append
            or get_origin(info.annotation) is not list
            or info.frozen
            or any(not isinstance(m, Reducer) for m in info.metadata)
            or decorators.root_validators
            or any(name in v.info.fields or "*" in v.info.fields for v in on_fields)
        )

    def _adapter(self, name: str) -> TypeAdapter[Any]:
        adapter = self._adapters.get(name)
        if adapter is None:
            annotation = self.model.model_fields[name].annotation
            adapter = self._adapters[name] = TypeAdapter(Any if annotation is None else annotation)
        return adapter

    # -- input -----------------------------------------------------------------

    def validate_input(self, data: Any, *, what: str = "input") -> StateT:
        """Validate a run's input (a model instance or a mapping)."""
        if isinstance(data, self.model):
            data = data.__dict__
        elif isinstance(data, BaseModel):
            raise InputValidationError(
                f"{what} is a {type(data).__name__}, but the graph's state is "
                f"{self.model.__name__}; pass a {self.model.__name__} or a dict of its fields"
            )
        elif not isinstance(data, Mapping):
            raise InputValidationError(
                f"{what} must be a {self.model.__name__} or a dict of its fields, "
                f"got {type(data).__name__}"
            )
        try:
            return self.model.model_validate(data)
        except ValidationError as err:
            raise InputValidationError(
                f"{what} does not fit {self.model.__name__}: {_describe(err)}",
                errors=[str(e["loc"]) for e in err.errors()],
            ) from None

    # -- updates ---------------------------------------------------------------

    def normalize(self, state: StateT, result: Any, *, node: str) -> dict[str, Any]:
        """Turn a node's return value (dict, new state, None) into a dict of changes."""
        if result is None:
            return {}
        if isinstance(result, Mapping):
            changes = dict(cast(Mapping[Any, Any], result))
            unknown = [k for k in changes if k not in self._field_set]
            if unknown:
                raise StateUpdateError(
                    f"returned unknown field(s) {', '.join(map(repr, unknown))}; "
                    f"{self.model.__name__} has {', '.join(self.fields)}",
                    node=node,
                    field=str(unknown[0]),
                )
            return changes
        if isinstance(result, self.model):
            old = state.__dict__
            new = result.__dict__
            changes = {k: new[k] for k in self.fields if new[k] is not old[k] and new[k] != old[k]}
            for k in self.reducers.keys() & changes.keys():
                changes[k] = self._as_update(self.reducers[k], old[k], changes[k])
            return changes
        raise StateUpdateError(
            f"returned {type(result).__name__}; a node returns a dict of changes, "
            f"a new {self.model.__name__}, or None",
            node=node,
        )

    @staticmethod
    def _as_update(red: Reducer, before: Any, after: Any) -> Any:
        """The update that turns ``before`` into ``after`` for a reducer field: the new
        tail of an append-only list (so parallel appends still combine), else the whole
        value, set as is."""
        if red.appends and isinstance(before, list | tuple) and isinstance(after, list | tuple):
            old_items = cast(Sequence[Any], before)
            new_items = cast(Sequence[Any], after)
            n = len(old_items)
            if len(new_items) >= n and list(new_items[:n]) == list(old_items):
                return list(new_items[n:])
        return _Replace(after)

    def apply(
        self,
        state: StateT,
        branches: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        reduce: bool = True,
    ) -> tuple[StateT, dict[str, Any]]:
        """Build the next state from one or more branches' changes.

        Reducers combine updates (in branch order); a field without a reducer written by
        two branches is a :class:`ConflictingUpdateError`. Returns the new state and
        the changed fields with their new values.
        """
        applied = self.apply_changes(state, branches, reduce=reduce)
        return applied.state, applied.changed

    def apply_changes(
        self,
        state: StateT,
        branches: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        reduce: bool = True,
    ) -> Applied[StateT]:
        """:meth:`apply`, also telling which fields only had items appended (for
        :meth:`writes`, which then need not compare the old list with the new)."""
        for node, changes in branches:
            unknown = changes.keys() - self._field_set
            if unknown:
                raise StateUpdateError(
                    f"changed unknown field(s) {', '.join(sorted(map(repr, unknown)))}; "
                    f"{self.model.__name__} has {', '.join(self.fields)}",
                    node=node,
                    field=str(min(map(str, unknown))),
                )
        merged: dict[str, Any]
        tails: dict[str, list[tuple[str, list[Any]]]] = {}  # appends: (node, items) each
        if len(branches) == 1 and not self.reducers:
            merged = dict(branches[0][1])  # the hot path: one node, no reducers
        else:
            merged = {}
            writers: dict[str, str] = {}
            replaced: set[str] = set()
            for node, changes in branches:
                for name, value in changes.items():
                    red = self.reducers.get(name) if reduce else None
                    if isinstance(value, _Replace):
                        value = value.value
                        red = None
                        replaced.add(name)
                    elif red is not None and name in replaced:
                        red = None  # a whole new value and an update collide: a conflict
                    if red is not None and name in self._appendable:
                        if not isinstance(value, list | tuple):
                            raise StateUpdateError(
                                f"reducer 'append' of field {name!r} refused the update: an "
                                f"append field takes a list of items to add, got "
                                f"{type(value).__name__}",
                                node=node,
                                field=name,
                            )
                        tails.setdefault(name, []).append((node, list(cast(Sequence[Any], value))))
                        merged[name] = None  # the grown list is made once validated, below
                    elif red is not None:
                        base: Any = merged[name] if name in merged else getattr(state, name)
                        try:
                            merged[name] = red(base, value)
                        except Exception as exc:
                            raise StateUpdateError(
                                f"reducer {red.name!r} of field {name!r} refused the update: {exc}",
                                node=node,
                                field=name,
                            ) from exc
                    elif name in writers:
                        if name in replaced and reduce and name in self.reducers:
                            why = (
                                f"field {name!r} was written by parallel nodes "
                                f"{writers[name]!r} and {node!r}, and one of them returned a "
                                f"whole new state, so its reducer "
                                f"{self.reducers[name].name!r} cannot combine them; return a "
                                f"dict of changes from each branch"
                            )
                        else:
                            why = (
                                f"field {name!r} was written by parallel nodes "
                                f"{writers[name]!r} and {node!r} and has no reducer; declare "
                                f"one, e.g. Annotated[..., go.append], or write it from one "
                                f"branch only"
                            )
                        raise ConflictingUpdateError(why, node=node, field=name)
                    else:
                        merged[name] = value
                    writers.setdefault(name, node)
        if not merged:
            return Applied(state, {}, {})
        appended: dict[str, list[Any]] = {}
        try:
            if self._per_field:
                new_state = _shallow_copy(state)
                assign = self.model.__pydantic_validator__.validate_assignment
                for name, value in merged.items():
                    parts = tails.get(name)
                    if parts is None:
                        assign(new_state, name, value)
                        continue
                    # The model validates the new items as the field's value (its own
                    # config, names and item validators apply); the old ones were valid.
                    try:
                        assign(new_state, name, [x for _, items in parts for x in items])
                    except ValidationError as err:
                        bad = self._bad_append(err, name, parts, len(state.__dict__[name]))
                        raise bad from None
                    items = appended[name] = new_state.__dict__[name]
                    cast(dict[str, Any], new_state.__dict__)[name] = [
                        *state.__dict__[name],
                        *items,
                    ]
            else:
                new_state = self.model.model_validate({**state.__dict__, **merged})
        except ValidationError as err:
            field = _first_loc(err)
            culprit = self._culprit(branches, field)
            raise StateUpdateError(
                f"bad change to field {field!r}: {_describe(err)}", node=culprit, field=field
            ) from None
        changed = {k: new_state.__dict__[k] for k in merged}
        return Applied(new_state, changed, appended)

    @staticmethod
    def _bad_append(
        err: ValidationError, name: str, parts: list[tuple[str, list[Any]]], offset: int
    ) -> StateUpdateError:
        """The error for appended items the model refused, each named by its place in
        the whole list and blamed on the node that appended it."""
        culprit: str | None = None
        described: list[str] = []
        for e in err.errors():
            loc = list(e["loc"])  # (field, index in the new items, ...)
            if len(loc) > 1 and isinstance(loc[1], int):
                index = loc[1]
                for node, items in parts:  # the branch whose items hold the bad one
                    if index < len(items):
                        culprit = culprit or node
                        break
                    index -= len(items)
                loc[1] = offset + loc[1]
            where = ".".join(str(x) for x in loc) or name
            described.append(f"{where}: {e['msg']} (got {e.get('input')!r:.60})")
        return StateUpdateError(
            f"bad change to field {name!r}: {'; '.join(described)}",
            node=culprit or parts[0][0],
            field=name,
        )

    @staticmethod
    def _culprit(branches: Sequence[tuple[str, Mapping[str, Any]]], field: str | None) -> str:
        for node, changes in branches:
            if field in changes:
                return node
        return ", ".join(n for n, _ in branches)

    # -- serialization ---------------------------------------------------------

    def dump_field(self, name: str, value: Any, *, node: str | None = None) -> bytes:
        """The JSON of one field's value; refuses values JSON cannot hold."""
        # values passed validation, so a type mismatch warning cannot arise; values JSON
        # cannot hold raise an error either way (and `warnings="error"` is 10x slower)
        to_json = self._to_json.get(name)
        if to_json is None:
            # what TypeAdapter.dump_json calls, without its wrapper: a step dumps every
            # field it changed, and the wrapper cost four times the serializing
            to_json = self._to_json[name] = self._adapter(name).serializer.to_json
        try:
            return to_json(value, warnings=False)
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            raise UnserializableStateError(
                f"field {name!r} holds a value that cannot be checkpointed "
                f"({type(value).__name__}): {exc}. Keep external resources in the "
                f"Context (deps) and only their ids in the state",
                node=node,
                field=name,
            ) from None

    def writes(
        self,
        old: StateT,
        new: StateT,
        changed: Iterable[str],
        *,
        node: str | None = None,
        appended: Mapping[str, list[Any]] | None = None,
    ) -> dict[str, FieldWrite]:
        """Per-field writes for a checkpoint: pure appends store only the new items
        (``appended``: those :meth:`apply_changes` already knows)."""
        out: dict[str, FieldWrite] = {}
        for name in changed:
            if appended and name in appended:
                out[name] = AppendField(self.dump_field(name, appended[name], node=node))
                continue
            value = new.__dict__[name]
            red = self.reducers.get(name)
            if red is not None and red.appends:
                before = old.__dict__[name]
                n = len(before)
                if len(value) >= n and value[:n] == before:
                    out[name] = AppendField(self.dump_field(name, value[n:], node=node))
                    continue
            out[name] = SetField(self.dump_field(name, value, node=node))
        return out

    def dump_all(self, state: StateT, *, node: str | None = None) -> dict[str, FieldWrite]:
        """Writes that set every field (a run's first checkpoint)."""
        return {n: SetField(self.dump_field(n, state.__dict__[n], node=node)) for n in self.fields}

    def load(self, fields: Mapping[str, bytes], *, what: str = "stored state") -> StateT:
        """Rebuild a state from per-field JSON (as read from a store)."""
        body = b",".join(json.dumps(k).encode() + b":" + v for k, v in fields.items())
        try:
            return self.model.model_validate_json(b"{" + body + b"}")
        except ValidationError as err:
            raise InputValidationError(
                f"{what} no longer fits {self.model.__name__}: {_describe(err)}. "
                f"The state schema changed since it was stored; migrate the data or "
                f"resume with the graph version that wrote it",
                errors=[str(e["loc"]) for e in err.errors()],
            ) from None


_set = object.__setattr__


def _shallow_copy(state: StateT) -> StateT:
    """``state.model_copy()`` without its per-attribute ``copy.copy`` calls (a step's
    hot path): the same new containers, the same field values."""
    cls = type(state)
    new = cls.__new__(cls)
    _set(new, "__dict__", dict(state.__dict__))
    _set(new, "__pydantic_fields_set__", set(state.__pydantic_fields_set__))
    extra = state.__pydantic_extra__
    _set(new, "__pydantic_extra__", None if extra is None else dict(extra))
    private = state.__pydantic_private__
    _set(new, "__pydantic_private__", None if private is None else dict(private))
    return new
