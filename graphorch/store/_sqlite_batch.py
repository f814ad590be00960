"""Rows a batch of step commits writes, inserted together just before COMMIT.

Every statement the writer thread runs hands the GIL to the event loop and waits to
get it back. With one INSERT per checkpoint and per event, plus an UPDATE of the
run's chain head, a batch of a thousand steps from a thousand concurrent runs meant
thousands of such hand-offs, which cost the event loop more than the writes
themselves. Deferred rows go in with multi-row statements (a few per table per
batch), and each run's chain head is written once per batch.

Only the writer's optimistic pass defers (see ``Worker``): if a deferred row breaks a
constraint, the whole batch is rolled back and run again with each job's rows
written at once, so the error lands on the job that caused it.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any

__all__ = ["INSERT_CHECKPOINT", "INSERT_EVENT", "BatchRows"]

# Rows per statement: powers of two, so the connection's statement cache keeps every
# variant prepared and n rows take at most log2(n) + 1 statements. Fewer, larger
# statements matter here: each one hands the GIL over and waits to get it back, up
# to the interpreter's switch interval (5 ms) while the event loop is busy.
_MAX_ROWS = 1024  # the widest statement's SQL is then ~20 KB


@functools.cache
def _sizes(max_rows: int) -> tuple[int, ...]:
    """The statement sizes, largest first, up to ``max_rows`` rows."""
    return tuple(2**k for k in range(max(max_rows, 1).bit_length() - 1, -1, -1))


_CHECKPOINT_COLS = "rk, seq, cpid, parent, shape, fields, meta, created_us, created_off"


@functools.cache
def _insert_sql(table: str, cols: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"INSERT INTO {table} ({cols}) VALUES " + ", ".join([one] * rows)


@functools.cache
def _chains_sql(rows: int) -> str:
    # UPDATE ... FROM, not an upsert: a head that was deleted stays deleted, exactly
    # as the one-row UPDATE leaves it.
    values = ", ".join(["(?, ?, ?)"] * rows)
    return (
        f"UPDATE event_chains SET n = v.column2, hash = v.column3 FROM (VALUES {values})"
        " AS v WHERE event_chains.rk = v.column1"
    )


_EVENT_COLS = "rk, n, data, hash"
INSERT_CHECKPOINT = _insert_sql("checkpoints", _CHECKPOINT_COLS, 9, 1)
"""One checkpoint row, written at once (outside a batch's deferred pass)."""
INSERT_EVENT = _insert_sql("events", _EVENT_COLS, 4, 1)
"""One event row, written at once."""

_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


def _insert_many(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]], sql: Any, width: int
) -> None:
    """Run ``sql(size)`` over ``rows`` of ``width`` values each, in as few statements as
    the sizes allow and the build's limit on bound variables (999 before SQLite 3.32,
    32,766 since) admits."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    i, total = 0, len(rows)
    for size in _sizes(min(_MAX_ROWS, limit // width)):
        while total - i >= size:
            chunk = rows[i : i + size]
            conn.execute(sql(size), [value for row in chunk for value in row])
            i += size


class BatchRows:
    """Checkpoint rows, event rows and chain heads waiting for :meth:`flush`."""

    __slots__ = ("chains", "checkpoints", "events")

    def __init__(self) -> None:
        self.checkpoints: list[tuple[Any, ...]] = []
        self.events: list[tuple[int, int, str, bytes]] = []
        self.chains: dict[int, tuple[int, bytes]] = {}  # run key -> (next n, last hash)

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write everything deferred so far (in the open transaction) and forget it."""
        if self.checkpoints:
            _insert_many(
                conn,
                self.checkpoints,
                functools.partial(_insert_sql, "checkpoints", _CHECKPOINT_COLS, 9),
                9,
            )
            self.checkpoints = []
        if self.events:
            _insert_many(
                conn, self.events, functools.partial(_insert_sql, "events", _EVENT_COLS, 4), 4
            )
            self.events = []
        if self.chains:
            heads = [(rk, n, head) for rk, (n, head) in self.chains.items()]
            if _UPDATE_FROM:
                _insert_many(conn, heads, _chains_sql, 3)
            else:  # pragma: no cover - SQLite before 3.33 (2020)
                conn.executemany(
                    "UPDATE event_chains SET n = ?, hash = ? WHERE rk = ?",
                    [(n, head, rk) for rk, n, head in heads],
                )
            self.chains = {}
