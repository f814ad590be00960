"""The builder's keyword arguments as node fields: ``retry=`` as a count or a policy,
``backtrack=``, ``approvers=`` and ``roles=`` as one name or several. A value of the
wrong type is passed on as it is, for ``Node.problems`` to refuse naming the node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from .nodes import Retry

__all__ = ["common_fields", "name_set"]


def common_fields(
    retry: Retry | int | None,
    timeout: float | None,
    max_visits: int | None,
    backtrack: Iterable[str] | str | None,
    description: str | None,
) -> dict[str, Any]:
    """The fields every node kind but approve and end takes, from the builder's arguments."""
    if backtrack is None:
        routes: tuple[str, ...] = ()
    elif isinstance(backtrack, str):
        routes = (backtrack,)
    elif isinstance(backtrack, Iterable):  # pyright: ignore[reportUnnecessaryIsInstance]
        routes = tuple(backtrack)
    else:
        routes = (backtrack,)  # refused by Node.problems, naming the node
    return {
        "retry": _retry(retry),
        "timeout": timeout,
        "max_visits": max_visits,
        "backtrack": routes,
        "description": description,
    }


def _retry(value: Retry | int | None) -> Retry | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return Retry(attempts=value)
    return cast("Retry | None", value)  # a bool or anything else is refused by Node.problems


def name_set(value: object) -> tuple[frozenset[str], bool]:
    """A set of names from a str (one name) or an iterable of str; False when neither."""
    if isinstance(value, str):
        return frozenset((value,)), True
    if isinstance(value, Iterable):
        items = list(cast(Iterable[object], value))
        if all(isinstance(i, str) and i for i in items):
            return frozenset(cast(list[str], items)), True
    return frozenset[str](), False
