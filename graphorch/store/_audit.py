"""The audit log's hash chain, shared by every store so they chain and verify alike.

Each run's events form one chain. Event ``n`` of a run is stored as its JSON (without
the run id, which the chain's start binds) and the hash
``sha256(hash of event n - 1 + JSON)``, where the hash "before" event 0 is
``sha256("graphorch-run:" + run_id)``. Beside the rows, a store keeps the chain's head
(how many events the run has and the last hash), written in the same transaction, so
rows deleted from the end are detected too, not only rows edited or removed from the
middle.

A chain without a secret detects edits by anyone who does not recompute it: someone
who rewrites rows, the following hashes and the head together is not caught. Export
the log (or its last hash) elsewhere to anchor it.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

from pydantic_core import to_json

from graphorch.events import Event
from graphorch.exceptions import StoreError
from graphorch.store.base import AuditRow
from graphorch.types import RunId

__all__ = ["audit_row", "check_chain", "event_json", "genesis", "link"]


def event_json(event: Event) -> str:
    """The JSON an event is stored and hashed as: its data without its run id."""
    data = event.to_data()
    data.pop("run_id", None)  # the row's run holds it, and the chain's start binds it
    try:
        # pydantic-core's encoder: the same compact JSON as json's with separators
        # (",", ":") and ensure_ascii=False for what events hold, several times faster.
        # The chain hashes the stored text, so verifying never re-encodes an event.
        return to_json(data).decode()
    except (TypeError, ValueError) as exc:
        raise StoreError(f"event {event.kind!r} cannot be stored as JSON: {exc}") from None


@functools.cache
def _sha256() -> Callable[[bytes], Any]:
    """hashlib's sha256, imported with the first run rather than with the package."""
    from hashlib import sha256

    return sha256


def genesis(run_id: str) -> bytes:
    """The hash a run's chain starts from: it binds the chain to its run."""
    return _sha256()(b"graphorch-run:" + run_id.encode()).digest()


def link(prev: bytes, data: str) -> bytes:
    """The hash of an event stored as ``data`` after an event hashed ``prev``."""
    return _sha256()(prev + data.encode()).digest()


def _span(first: int, last: int) -> str:
    return f"position {first}" if first == last else f"positions {first}-{last}"


def _text(data: Any) -> str:
    return data if isinstance(data, str) else repr(data)


def _digest(digest: Any) -> bytes:
    return bytes(digest) if isinstance(digest, bytes) else b""


def check_chain(
    run_id: str, rows: Iterable[tuple[int, Any, Any]], head: tuple[int, bytes] | None
) -> tuple[int, list[str]]:
    """Check one run's rows ``(position, data, hash)``, in position order, against its
    recorded head ``(count, last hash)`` (None: the head is missing).

    Returns:
        how many rows were checked, and the problems found, each naming the run and
        the position and saying what is wrong.
    """
    where = f"run {run_id!r}"
    problems: list[str] = []
    checked = 0
    expect = 0  # the next position
    prev: bytes | None = genesis(run_id)  # None: unknown (rows before it are missing)
    if head is None:
        problems.append(
            f"{where}: chain head missing (its recorded count and last hash were deleted)"
        )
    for n, group in itertools.groupby(rows, key=lambda r: int(r[0])):
        found = [(_text(data), _digest(digest)) for _, data, digest in group]
        checked += len(found)
        if n < expect:
            problems.append(f"{where}, position {n}: inserted (out of order)")
            continue
        if n > expect:
            problems.append(f"{where}, {_span(expect, n - 1)}: deleted (missing from the chain)")
            prev = None  # the row after a gap cannot be checked against it
        text, stored = found[0]
        if len(found) > 1:  # the genuine row, if any, is the one that chains
            if prev is not None:
                text, stored = next((f for f in found if link(prev, f[0]) == f[1]), found[0])
            problems.append(
                f"{where}, position {n}: inserted ({len(found) - 1} more row(s) at this position)"
            )
        if head is not None and n >= head[0]:
            problems.append(
                f"{where}, position {n}: inserted (after the chain head, which records "
                f"{head[0]} events)"
            )
        elif prev is not None and link(prev, text) != stored:
            problems.append(
                f"{where}, position {n}: edited (its hash does not match its content and "
                "the previous row's hash; or a row was inserted here)"
            )
        prev = stored
        expect = n + 1
    if head is not None:
        count, last = head
        if expect < count:
            problems.append(
                f"{where}, {_span(expect, count - 1)}: deleted (the chain head records "
                f"{count} events; the log ends at position {expect - 1})"
            )
        elif expect == count and count > 0 and prev != last:
            problems.append(
                f"{where}, position {count - 1}: edited (its hash differs from the one the "
                "chain head recorded)"
            )
    return checked, problems


def audit_row(run_id: str, n: int, data: Any, prev: bytes, digest: bytes) -> AuditRow:
    """An exportable row: the event in its :meth:`Event.to_data` form, hashes in hex."""
    event: dict[str, Any]
    try:
        decoded = json.loads(data)
        if not isinstance(decoded, dict):
            raise ValueError("not an object")
        fields: dict[str, Any] = dict(decoded)  # pyright: ignore[reportUnknownArgumentType]
        event = {"kind": fields.pop("kind", None), "run_id": run_id, **fields}
    except (TypeError, ValueError):
        event = {"kind": None, "run_id": run_id, "unreadable": repr(data)}
    return AuditRow(
        run_id=RunId(run_id), position=n, event=event, prev_hash=prev.hex(), hash=digest.hex()
    )
