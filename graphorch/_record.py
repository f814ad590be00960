"""Light frozen records: dataclass semantics without generating code per class.

``dataclasses.dataclass`` compiles an ``__init__``, ``__repr__`` and ``__eq__`` for every
class, which made importing graphorch's ~40 small record types cost tens of
milliseconds. :class:`Record` gives the same behaviour (keyword or positional
construction, defaults and default factories, equality, repr, immutability) from one
generic implementation, and ``dataclass_transform`` tells type checkers so.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast, dataclass_transform, get_origin

__all__ = ["KwRecord", "Record", "field", "replace"]

_MISSING: Any = object()
T = TypeVar("T")


class _Field:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any, default_factory: Callable[[], Any] | None) -> None:
        self.default = default
        self.default_factory = default_factory


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None) -> Any:
    """A field's default, or a factory making a fresh default for each record."""
    return _Field(default, default_factory)


def _compile_init(cls: type[Record]) -> Callable[..., None]:
    """A fast ``__init__`` for ``cls``: its fields as parameters, in order."""
    kw_only = issubclass(cls, KwRecord)
    params: list[str] = []
    # Writing the instance dict directly is ~10x cheaper than object.__setattr__ per
    # field; classes whose instances have no __dict__ (slots) take the slow path.
    has_dict = all("__slots__" not in vars(k) for k in cls.__mro__ if k is not object)
    body: list[str] = ["    _d = self.__dict__" if has_dict else "    _set = _object_setattr"]
    namespace: dict[str, Any] = {"_object_setattr": object.__setattr__, "_MISSING": _MISSING}
    for i, name in enumerate(cls.__fields__):
        default = cls.__defaults__.get(name, _MISSING)
        if isinstance(default, _Field) and default.default_factory is not None:
            namespace[f"_factory_{i}"] = default.default_factory
            params.append(f"{name}=_MISSING")
            body.append(f"    if {name} is _MISSING: {name} = _factory_{i}()")
        else:
            if isinstance(default, _Field):
                default = default.default
            namespace[f"_default_{i}"] = default
            params.append(f"{name}=_default_{i}")
            if default is _MISSING:
                message = f"{cls.__name__} is missing field {name!r}"
                body.append(f"    if {name} is _MISSING: raise TypeError({message!r})")
        body.append(
            f"    _d[{name!r}] = {name}" if has_dict else f"    _set(self, {name!r}, {name})"
        )
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    star = "*, " if kw_only and params else ""
    source = f"def __init__(self, {star}{', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # our own generated code, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar")) or get_origin(annotation) is ClassVar


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Record:
    """Base of immutable records; subclasses declare fields as annotations."""

    __fields__: ClassVar[tuple[str, ...]] = ()
    __defaults__: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = list(cls.__fields__)
        defaults = dict(cls.__defaults__)
        for name, annotation in inspect.get_annotations(cls).items():
            if _is_classvar(annotation):
                continue
            if name not in names:
                names.append(name)
            if name in cls.__dict__:
                value = cls.__dict__[name]
                defaults[name] = value
                if isinstance(value, _Field):
                    delattr(cls, name)  # the instance attribute will hold the value
        cls.__fields__ = tuple(names)
        cls.__defaults__ = defaults
        # every class gets its own __init__ entry, so a subclass never runs (and never
        # compiles over) its parent's: each one compiles its own on first use
        cls.__init__ = Record.__init__  # type: ignore[method-assign]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The first record of a class compiles that class's own __init__ (as dataclasses
        # do, but on first use rather than at import), then every later one uses it.
        init = _compile_init(type(self))
        type(self).__init__ = init  # type: ignore[method-assign]
        init(self, *args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__fields__)

    def __hash__(self) -> int:
        return hash((type(self), *(getattr(self, n) for n in self.__fields__)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__fields__)
        return f"{type(self).__name__}({inner})"


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of a record (or dataclass) with some fields changed."""
    if isinstance(obj, Record):
        values = {n: getattr(obj, n) for n in obj.__fields__}
        values.update(changes)
        return type(obj)(**values)
    import dataclasses

    return cast(T, dataclasses.replace(obj, **changes))  # pyright: ignore[reportArgumentType]


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
class KwRecord(Record):
    """A :class:`Record` whose fields are given by keyword (so defaults may come first)."""
