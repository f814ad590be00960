"""The tool-call journal and the audit log's checks, as SQLite statements.

Functions here run in the store's threads on its connections: writes inside the
writer's transaction, reads on the reader.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from graphorch.exceptions import RunNotFoundError, StoreError
from graphorch.store._audit import audit_row, check_chain, genesis
from graphorch.store._sqlite_events import expand, expander
from graphorch.store._sqlite_rows import RK
from graphorch.store._sqlite_schema import key_from_tail, key_tail
from graphorch.store._sqlite_values import decode_time, encode_time
from graphorch.store.base import AuditReport, AuditRow
from graphorch.store.journal import CallStatus, ToolCallRecord
from graphorch.types import RunId

__all__ = ["audit_rows", "list_calls", "put_calls", "verify"]

_CALL_COLS = (
    "k, rk, seq, node, idx, tool, args, status, result, error, error_type, cost,"
    " started_us, started_off, finished_us, finished_off, resolved_by"
)
# A later record for a key replaces the earlier one in place: the row keeps its id, so
# listing by id gives the order calls were first journaled.
_UPSERT = f"""
INSERT INTO tool_calls ({_CALL_COLS}) VALUES ({", ".join("?" * 17)})
ON CONFLICT(rk, k) DO UPDATE SET
    seq = excluded.seq, node = excluded.node, idx = excluded.idx, tool = excluded.tool,
    args = excluded.args, status = excluded.status, result = excluded.result,
    error = excluded.error, error_type = excluded.error_type, cost = excluded.cost,
    started_us = excluded.started_us, started_off = excluded.started_off,
    finished_us = excluded.finished_us, finished_off = excluded.finished_off,
    resolved_by = excluded.resolved_by
"""
_OWNER = f"SELECT 1 FROM tool_calls WHERE rk = {RK} AND k = ?"


def _call_row(rk: int, call: ToolCallRecord) -> tuple[Any, ...]:
    sus, soff = encode_time(call.started_at)
    fus, foff = (None, None) if call.finished_at is None else encode_time(call.finished_at)
    return (
        key_tail(call.run_id, call.key),
        rk,
        call.seq,
        call.node,
        call.index,
        call.tool,
        call.args,
        CallStatus(call.status).value,
        call.result,
        call.error,
        call.error_type,
        float(call.cost),
        sus,
        soff,
        fus,
        foff,
        call.resolved_by,
    )


def _call_from_row(run_id: str, row: Sequence[Any]) -> ToolCallRecord:
    return ToolCallRecord(
        key=key_from_tail(run_id, row[0]),
        run_id=RunId(run_id),
        seq=int(row[2]),
        node=row[3],
        index=int(row[4]),
        tool=row[5],
        args=bytes(row[6]),
        status=CallStatus(row[7]),
        result=None if row[8] is None else bytes(row[8]),
        error=row[9],
        error_type=row[10],
        cost=float(row[11]),
        started_at=decode_time(row[12], row[13]),
        finished_at=None if row[14] is None else decode_time(row[14], row[15]),
        resolved_by=row[16],
    )


def _foreign(conn: sqlite3.Connection, rk: int, run_id: str, key: str) -> bool:
    """Whether another run journaled ``key``.

    A key starting with its run's id (every key the runtime makes) belongs to that
    run. Any other key (rare) is looked for under each run its text could start with,
    and kept whole under any run.
    """
    if key.startswith(run_id + ":"):
        return False
    start = 0
    while (cut := key.find(":", start)) > 0:
        owner, tail = key[:cut], key[cut + 1 :]
        found = key_tail(owner, key) == tail and conn.execute(_OWNER, (owner, tail)).fetchone()
        if found:
            return True
        start = cut + 1
    whole = key_tail(run_id, key)
    return (
        conn.execute(
            "SELECT 1 FROM tool_calls WHERE k = ? AND rk <> ? LIMIT 1", (whole, rk)
        ).fetchone()
        is not None
    )


def put_calls(
    conn: sqlite3.Connection, rk: int, run_id: str, calls: Sequence[ToolCallRecord]
) -> None:
    """Upsert call records of ``run_id`` (in the writer's transaction)."""
    taken = [c.key for c in calls if _foreign(conn, rk, run_id, c.key)]
    if taken:
        raise StoreError(
            f"call keys {taken} are already journaled for another run (not {run_id}); "
            "nothing was written"
        )
    conn.executemany(_UPSERT, [_call_row(rk, c) for c in calls])


def _run_exists(conn: sqlite3.Connection, run_id: str) -> bool:
    return conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None


def list_calls(conn: sqlite3.Connection, run_id: str, seq: int | None) -> list[ToolCallRecord]:
    """The run's calls in the order they were first journaled."""
    if seq is None:
        cur = conn.execute(
            f"SELECT {_CALL_COLS} FROM tool_calls WHERE rk = {RK} ORDER BY id", (run_id,)
        )
    else:
        cur = conn.execute(
            f"SELECT {_CALL_COLS} FROM tool_calls WHERE rk = {RK} AND seq = ? ORDER BY id",
            (run_id, seq),
        )
    calls = [_call_from_row(run_id, r) for r in cur]
    if not calls and not _run_exists(conn, run_id):
        raise RunNotFoundError(run_id)
    return calls


def _expanded(rows: Iterable[Sequence[Any]], table: dict[int, str]) -> Iterator[tuple[Any, ...]]:
    """Rows ``(n, data, hash)`` with each event's JSON as it was hashed."""
    for n, data, digest in rows:
        yield n, expand(data, table) if isinstance(data, str) else data, digest


class _Snapshot:
    """Reads on one snapshot of the file: the rows and the heads must agree."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN")
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def _head(row: Sequence[Any] | None) -> tuple[int, bytes] | None:
    return None if row is None else (int(row[0]), bytes(row[1]))


def verify(conn: sqlite3.Connection, run_id: str | None) -> AuditReport:
    """Check one run's event chain, or every run's (on the reader)."""
    checked = 0
    problems: list[str] = []
    with _Snapshot(conn):
        if run_id is not None:
            head = _head(
                conn.execute(
                    f"SELECT n, hash FROM event_chains WHERE rk = {RK}", (run_id,)
                ).fetchone()
            )
            rows = conn.execute(
                f"SELECT n, data, hash FROM events WHERE rk = {RK} ORDER BY n", (run_id,)
            ).fetchall()
            if head is None and not rows and not _run_exists(conn, run_id):
                raise RunNotFoundError(run_id)
            checked, problems = check_chain(run_id, _expanded(rows, expander(run_id)), head)
        else:
            # A row whose run is gone (deleted by hand) is named by its key.
            names: dict[Any, str] = {
                r[0]: str(r[1]) for r in conn.execute("SELECT rk, run_id FROM runs")
            }
            heads = {
                r[0]: (int(r[1]), bytes(r[2]))
                for r in conn.execute("SELECT rk, n, hash FROM event_chains")
            }
            # In key order: each run's rows are one range of the events B-tree.
            cur = conn.execute("SELECT rk, n, data, hash FROM events ORDER BY rk, n")
            for rk, group in itertools.groupby(cur, key=lambda r: r[0]):
                rid = names.get(rk, str(rk))
                ordered = _expanded(((r[1], r[2], r[3]) for r in group), expander(rid))
                count, found = check_chain(rid, ordered, heads.pop(rk, None))
                checked += count
                problems += found
            for rid, head in sorted((names.get(k, str(k)), h) for k, h in heads.items()):
                _, found = check_chain(rid, (), head)  # runs whose rows are all gone
                problems += found
    return AuditReport(ok=not problems, checked=checked, problems=problems)


def audit_rows(conn: sqlite3.Connection, run_id: str) -> list[AuditRow]:
    """The run's events as stored, with their hashes (on the reader)."""
    rows = conn.execute(
        f"SELECT n, data, hash FROM events WHERE rk = {RK} ORDER BY n", (run_id,)
    ).fetchall()
    if not rows and not _run_exists(conn, run_id):
        raise RunNotFoundError(run_id)
    prev = genesis(run_id)
    out: list[AuditRow] = []
    for n, data, digest in _expanded(rows, expander(run_id)):
        stored = bytes(digest)
        out.append(audit_row(run_id, int(n), data, prev, stored))
        prev = stored
    return out
