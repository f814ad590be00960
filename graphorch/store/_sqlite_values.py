"""How field values and times are laid out in SQLite rows.

A checkpoint stores a small map ``{field: ref}``. A ref is either the value's JSON text
inline (short values: counters, flags, short strings) or the id of a row in ``vals``.

``vals`` rows are of two kinds:

- a whole value, content-addressed by the sha256 of its JSON, stored once however many
  checkpoints, runs or forks hold it;
- an append segment: the items an :class:`~graphorch.store.base.AppendField` added,
  linked to the value it extends (``prev``).

Walking ``prev`` links would grow with every append, so segments are merged like a
log-structured tree: when ``FANOUT`` consecutive segments of level ``L`` would form,
their items are written once more as one level ``L + 1`` segment that skips them.
Loading any value then reads at most ``(FANOUT - 1) * levels + 1`` rows, and every
item is stored about ``levels`` times (``levels = log_FANOUT(appends)``: 2 up to
1,024 appends, 3 up to 32,768) instead of once per checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from pydantic_core import to_json

from graphorch.exceptions import DatabaseError
from graphorch.store.base import join_lists

__all__ = [
    "FANOUT",
    "INLINE_MAX",
    "Ref",
    "ValueCache",
    "decode_fields",
    "decode_time",
    "encode_fields",
    "encode_time",
    "join_lists",
    "materialize",
]

Ref = int | str
"""A ``vals`` row id, or a short value's JSON text kept inline."""

INLINE_MAX = 40
"""Values up to this many bytes live inline in the checkpoint row."""

FANOUT = 32
"""Segments of one level merged into one of the next level."""

_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def encode_time(dt: datetime) -> tuple[int, int | None]:
    """Exact integer microseconds since the epoch, and the UTC offset in seconds.

    A naive datetime is counted as if it were UTC and gets offset None, so it reads
    back naive.
    """
    offset = dt.utcoffset()
    if offset is None:
        return (dt - _EPOCH) // _US, None
    return (dt - _EPOCH_UTC) // _US, offset // timedelta(seconds=1)


def decode_time(us: int, offset: int | None) -> datetime:
    """The datetime :func:`encode_time` encoded."""
    if offset is None:
        return _EPOCH + timedelta(microseconds=us)
    tz = UTC if offset == 0 else timezone(timedelta(seconds=offset))
    return (_EPOCH_UTC + timedelta(microseconds=us)).astimezone(tz)


def encode_fields(fields: dict[str, Ref]) -> str:
    """A checkpoint's field map as compact JSON (what ``json.dumps`` with separators
    ``(",", ":")`` and ``ensure_ascii=False`` gives, from pydantic-core's faster encoder)."""
    return to_json(fields).decode()


def decode_fields(text: str) -> dict[str, Ref]:
    """The field map :func:`encode_fields` wrote."""
    data: dict[str, Ref] = json.loads(text)
    return data


_CHAIN = """
WITH RECURSIVE chain(id, prev, data, depth) AS (
    SELECT id, prev, data, 0 FROM vals WHERE id = ?
    UNION ALL
    SELECT v.id, v.prev, v.data, chain.depth + 1 FROM vals v JOIN chain ON v.id = chain.prev
)
SELECT prev, data FROM chain ORDER BY depth
"""


def materialize(conn: sqlite3.Connection, ref: Ref) -> bytes:
    """A value's whole JSON, reading at most a bounded number of rows."""
    if isinstance(ref, str):
        return ref.encode()
    rows: list[tuple[int | None, bytes]] = conn.execute(_CHAIN, (ref,)).fetchall()
    if not rows or rows[-1][0] is not None:
        raise DatabaseError(
            f"value {ref} is missing from the database (corrupt or hand-edited file); "
            "restore it from a backup"
        )
    root = bytes(rows[-1][1])
    if len(rows) == 1:
        return root
    return join_lists(root, [bytes(r[1]) for r in reversed(rows[:-1])])


@dataclass
class _Meta:
    lvl: int | None
    cnt: int
    prev: int | None


class ValueCache:
    """Writes values, remembering recent rows so hot commits skip lookups.

    Lives in the writer thread. Must be cleared whenever rows it remembers may have
    gone: a rollback, a delete, or a commit by another connection.
    """

    def __init__(self) -> None:
        self._meta: dict[int, _Meta] = {}
        self._by_hash: dict[bytes, int] = {}

    def clear(self) -> None:
        """Forget everything."""
        self._meta.clear()
        self._by_hash.clear()

    def _trim(self) -> None:
        if len(self._meta) > 100_000 or len(self._by_hash) > 100_000:
            self.clear()

    def put(self, conn: sqlite3.Connection, data: bytes) -> Ref:
        """Store a whole value (once per distinct content) and return its ref."""
        if len(data) <= INLINE_MAX:
            try:
                return data.decode()
            except UnicodeDecodeError:
                pass
        digest = hashlib.sha256(data).digest()
        vid = self._by_hash.get(digest)
        if vid is not None:
            return vid
        row = conn.execute("SELECT id FROM vals WHERE hash = ?", (digest,)).fetchone()
        if row is not None:
            vid = int(row[0])
        else:
            cur = conn.execute(
                "INSERT INTO vals (hash, prev, lvl, cnt, data) VALUES (?, NULL, NULL, 0, ?)",
                (digest, data),
            )
            vid = int(cur.lastrowid or 0)
        self._trim()
        self._by_hash[digest] = vid
        self._meta[vid] = _Meta(None, 0, None)
        return vid

    def _get_meta(self, conn: sqlite3.Connection, vid: int) -> _Meta:
        meta = self._meta.get(vid)
        if meta is None:
            row = conn.execute("SELECT lvl, cnt, prev FROM vals WHERE id = ?", (vid,)).fetchone()
            if row is None:
                raise DatabaseError(f"value {vid} is missing from the database; restore a backup")
            meta = _Meta(row[0], int(row[1]), row[2])
            self._trim()
            self._meta[vid] = meta
        return meta

    def append(self, conn: sqlite3.Connection, base: Ref | None, items: bytes) -> Ref:
        """The ref of ``base`` with the JSON array ``items`` appended."""
        if items == b"[]":
            return base if base is not None else self.put(conn, b"[]")
        if base is None:
            return self.put(conn, items)
        if isinstance(base, str):
            return self.put(conn, join_lists(base.encode(), [items]))
        node_id = base
        node = self._get_meta(conn, node_id)
        lvl = 0
        data = items
        while True:
            cnt = node.cnt + 1 if node.lvl == lvl else 1
            if cnt < FANOUT:
                break
            # Merge: this segment and the FANOUT - 1 same-level ones before it become
            # one segment of the next level, linked past all of them.
            ids: list[int] = []
            for _ in range(FANOUT - 1):
                ids.append(node_id)
                if node.prev is None:
                    raise DatabaseError(f"value {node_id} has a broken chain; restore a backup")
                node_id = node.prev
                node = self._get_meta(conn, node_id)
            marks = ",".join("?" * len(ids))
            found = {
                int(r[0]): bytes(r[1])
                for r in conn.execute(f"SELECT id, data FROM vals WHERE id IN ({marks})", ids)
            }
            older = [found[i] for i in reversed(ids)]
            data = join_lists(older[0], [*older[1:], data])
            lvl += 1
        cur = conn.execute(
            "INSERT INTO vals (hash, prev, lvl, cnt, data) VALUES (NULL, ?, ?, ?, ?)",
            (node_id, lvl, cnt, data),
        )
        vid = int(cur.lastrowid or 0)
        self._trim()
        self._meta[vid] = _Meta(lvl, cnt, node_id)
        return vid
