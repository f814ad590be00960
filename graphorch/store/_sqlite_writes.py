"""The rows a step writes in SQLite, and the writer thread's caches that make them cheap.

Only the writer thread uses a :class:`RowWriter`. Its caches (a checkpoint's field map,
a run's chain tail, shape ids, value ids) hold only while no other connection wrote
to the file: the store clears them at the start of a transaction that finds the file
changed, and after every rollback.
"""

from __future__ import annotations

import sqlite3

from graphorch.exceptions import CheckpointNotFoundError, StoreError
from graphorch.store._audit import genesis, link
from graphorch.store._sqlite_batch import INSERT_CHECKPOINT, INSERT_EVENT, BatchRows
from graphorch.store._sqlite_rows import RK, canonical, names_json, split_id
from graphorch.store._sqlite_values import (
    Ref,
    ValueCache,
    decode_fields,
    encode_fields,
    encode_time,
)
from graphorch.store.base import AppendField, CheckpointWrite

__all__ = ["RowWriter"]

_CACHED = 10_000  # entries a cache holds before it starts over


class RowWriter:
    """Writes checkpoint and event rows, deferring them while a batch asks it to."""

    def __init__(self) -> None:
        self._values = ValueCache()
        self._maps: dict[str, dict[str, Ref]] = {}
        self._ev_tail: dict[int, tuple[int, bytes]] = {}  # run key -> (next n, last hash)
        self._shapes: dict[tuple[str, str, str, str], int] = {}
        self._rows: BatchRows | None = None  # rows deferred to the end of the batch

    def clear(self) -> None:
        """Forget every cache and deferred row (after a rollback, or another writer)."""
        self._rows = None  # rolled back with the transaction
        self._values.clear()
        self._maps.clear()
        self._ev_tail.clear()
        self._shapes.clear()

    def defer(self) -> None:
        """From now on, rows wait for :meth:`flush` (a batch's optimistic pass)."""
        if self._rows is None:
            self._rows = BatchRows()

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write the deferred rows and stop deferring."""
        rows, self._rows = self._rows, None
        if rows is not None:
            rows.flush(conn)

    def _flush_for_read(self, conn: sqlite3.Connection) -> None:
        """Before reading checkpoints or events: deferred rows are written first."""
        if self._rows is not None:
            self._rows.flush(conn)

    def load_map(self, conn: sqlite3.Connection, checkpoint_id: str) -> dict[str, Ref]:
        """A checkpoint's field map. Raises CheckpointNotFoundError."""
        cached = self._maps.get(checkpoint_id)
        if cached is not None:
            return cached
        self._flush_for_read(conn)
        row = None
        parts = split_id(checkpoint_id)
        if parts is not None:
            row = conn.execute(
                f"SELECT fields FROM checkpoints WHERE rk = {RK} AND seq = ? AND cpid IS NULL",
                parts,
            ).fetchone()
        if row is None:
            row = conn.execute(
                "SELECT fields FROM checkpoints WHERE cpid = ?", (checkpoint_id,)
            ).fetchone()
        if row is None:
            raise CheckpointNotFoundError(
                f"parent checkpoint {checkpoint_id!r} does not exist (deleted or pruned?)"
            )
        return decode_fields(row[0])

    def _shape(self, conn: sqlite3.Connection, key: tuple[str, str, str, str]) -> int:
        """The id of a checkpoint shape (nodes, next nodes, status, changed), stored once."""
        sid = self._shapes.get(key)
        if sid is None:
            row = conn.execute(
                "SELECT id FROM shapes WHERE nodes = ? AND next_nodes = ? AND status = ?"
                " AND changed = ?",
                key,
            ).fetchone()
            if row is not None:
                sid = int(row[0])
            else:
                cur = conn.execute(
                    "INSERT INTO shapes (nodes, next_nodes, status, changed) VALUES (?, ?, ?, ?)",
                    key,
                )
                sid = int(cur.lastrowid or 0)
            if len(self._shapes) > _CACHED:
                self._shapes.clear()
            self._shapes[key] = sid
        return sid

    def insert_checkpoint(self, conn: sqlite3.Connection, rk: int, cp: CheckpointWrite) -> None:
        """Write a checkpoint row (its changed values first), keyed by run key ``rk``."""
        base = {} if cp.parent is None else self.load_map(conn, cp.parent)
        fields = dict(base)
        for name, change in cp.writes.items():
            if isinstance(change, AppendField):
                fields[name] = self._values.append(conn, fields.get(name), change.items)
            else:
                fields[name] = self._values.put(conn, change.json)
        if cp.parent is None:
            parent: str | None = None
        elif cp.parent == canonical(cp.run_id, cp.seq - 1):
            parent = ""
        else:
            parent = cp.parent
        cpid = None if cp.checkpoint_id == canonical(cp.run_id, cp.seq) else cp.checkpoint_id
        us, off = encode_time(cp.created_at)
        shape = self._shape(
            conn,
            (
                names_json(cp.nodes),
                names_json(cp.next_nodes),
                cp.status.value,
                names_json(tuple(cp.writes)),
            ),
        )
        row = (rk, cp.seq, cpid, parent, shape, encode_fields(fields), cp.meta, us, off)
        try:
            if self._rows is not None:
                self._rows.checkpoints.append(row)
            else:
                conn.execute(INSERT_CHECKPOINT, row)
        except sqlite3.IntegrityError:
            raise StoreError(
                f"checkpoint {cp.checkpoint_id!r} (run {cp.run_id}, seq {cp.seq}) already "
                "exists; a checkpoint is written once"
            ) from None
        if len(self._maps) > _CACHED:
            self._maps.clear()
        if parent == "":
            self._maps.pop(cp.parent or "", None)
        self._maps[cp.checkpoint_id] = fields

    def insert_events(
        self, conn: sqlite3.Connection, rk: int, run_id: str, events: list[tuple[str, str]]
    ) -> None:
        """Append events given as (JSON as hashed, form stored) to the run's chain."""
        if not events:
            return
        tail = self._ev_tail.get(rk)
        if tail is None:
            self._flush_for_read(conn)
            # The recorded head, not the last row: rows deleted from the end of the log
            # stay a visible gap instead of being silently chained over.
            row = conn.execute("SELECT n, hash FROM event_chains WHERE rk = ?", (rk,)).fetchone()
            if row is None:  # the head itself was deleted: go on from the last row
                row = conn.execute(
                    "SELECT n + 1, hash FROM events WHERE rk = ? ORDER BY n DESC LIMIT 1", (rk,)
                ).fetchone()
            tail = (0, genesis(run_id)) if row is None else (int(row[0]), bytes(row[1]))
        rows, n, prev = _chained(rk, tail, events)
        self._insert_event_rows(conn, rows)
        if self._rows is not None:
            self._rows.chains[rk] = (n, prev)
        else:
            conn.execute("UPDATE event_chains SET n = ?, hash = ? WHERE rk = ?", (n, prev, rk))
        self._remember_tail(rk, n, prev)

    def start_chain(
        self, conn: sqlite3.Connection, rk: int, run_id: str, events: list[tuple[str, str]]
    ) -> None:
        """A new run's event log: its first events, and its chain head written once."""
        rows, n, prev = _chained(rk, (0, genesis(run_id)), events)
        self._insert_event_rows(conn, rows)
        conn.execute("INSERT INTO event_chains (rk, n, hash) VALUES (?, ?, ?)", (rk, n, prev))
        self._remember_tail(rk, n, prev)

    def _insert_event_rows(
        self, conn: sqlite3.Connection, rows: list[tuple[int, int, str, bytes]]
    ) -> None:
        """Event rows now, or at the end of the batch while deferring."""
        if self._rows is not None:
            self._rows.events.extend(rows)
        elif len(rows) == 1:
            conn.execute(INSERT_EVENT, rows[0])
        elif rows:
            conn.executemany(INSERT_EVENT, rows)

    def _remember_tail(self, rk: int, n: int, prev: bytes) -> None:
        if len(self._ev_tail) > _CACHED:
            self._ev_tail.clear()
        self._ev_tail[rk] = (n, prev)


def _chained(
    rk: int, tail: tuple[int, bytes], events: list[tuple[str, str]]
) -> tuple[list[tuple[int, int, str, bytes]], int, bytes]:
    """Event rows ``(rk, n, stored, hash)`` chained on from ``tail`` (next n, last
    hash), and the chain's new tail."""
    n, prev = tail
    rows: list[tuple[int, int, str, bytes]] = []
    for full, stored in events:
        prev = link(prev, full)
        rows.append((rk, n, stored, prev))
        n += 1
    return rows, n, prev
