"""Approvals as SQLite statements: requests inserted with a step, decisions set once.

Functions here run in the store's threads on its connections: writes inside the
writer's transaction, reads on the reader.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from graphorch.exceptions import RunNotFoundError, StoreError
from graphorch.store._sqlite_rows import names_json, names_tuple
from graphorch.store._sqlite_values import decode_time, encode_time
from graphorch.store.approvals import ApprovalRecord, ApprovalStatus, decision_refused
from graphorch.types import RunId

__all__ = ["decide", "get", "insert", "list_approvals", "list_query"]

_COLS = (
    "approval_id, run_id, seq, node, prompt, context, approvers, roles, requested_us,"
    " requested_off, status, expires_us, expires_off, tool, call_key, args, decided_by,"
    " decided_us, decided_off, comment, edits"
)
_INSERT = f"INSERT INTO approvals ({_COLS}) VALUES ({', '.join('?' * 21)})"
# The compare-and-set: only a pending row takes a decision. In the writer's
# BEGIN IMMEDIATE transaction, so of racing deciders (threads or processes) one wins.
_DECIDE = (
    "UPDATE approvals SET status = ?, decided_by = ?, decided_us = ?, decided_off = ?,"
    " comment = ?, edits = ? WHERE approval_id = ? AND run_id = ? AND status = 'pending'"
)


def _time(dt: Any) -> tuple[int | None, int | None]:
    return (None, None) if dt is None else encode_time(dt)


def _row(a: ApprovalRecord) -> tuple[Any, ...]:
    return (
        a.approval_id,
        a.run_id,
        a.seq,
        a.node,
        a.prompt,
        a.context,
        names_json(a.approvers),
        names_json(a.roles),
        *encode_time(a.requested_at),
        ApprovalStatus(a.status).value,
        *_time(a.expires_at),
        a.tool,
        a.call_key,
        a.args,
        a.decided_by,
        *_time(a.decided_at),
        a.comment,
        a.edits,
    )


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _from_row(r: Sequence[Any]) -> ApprovalRecord:
    return ApprovalRecord(
        approval_id=r[0],
        run_id=RunId(r[1]),
        seq=int(r[2]),
        node=r[3],
        prompt=r[4],
        context=bytes(r[5]),
        approvers=names_tuple(r[6]),
        roles=names_tuple(r[7]),
        requested_at=decode_time(r[8], r[9]),
        status=ApprovalStatus(r[10]),
        expires_at=None if r[11] is None else decode_time(r[11], r[12]),
        tool=r[13],
        call_key=r[14],
        args=_blob(r[15]),
        decided_by=r[16],
        decided_at=None if r[17] is None else decode_time(r[17], r[18]),
        comment=r[19],
        edits=_blob(r[20]),
    )


def insert(conn: sqlite3.Connection, run_id: str, approvals: Sequence[ApprovalRecord]) -> None:
    """Insert new approval requests of ``run_id`` (in the writer's transaction)."""
    try:
        conn.executemany(_INSERT, [_row(a) for a in approvals])
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" in str(exc):
            raise RunNotFoundError(run_id) from None
        ids = [a.approval_id for a in approvals]
        raise StoreError(f"an approval among {ids} already exists; nothing was written") from None


def get(conn: sqlite3.Connection, approval_id: str) -> ApprovalRecord | None:
    row = conn.execute(
        f"SELECT {_COLS} FROM approvals WHERE approval_id = ?", (approval_id,)
    ).fetchone()
    return None if row is None else _from_row(row)


def list_query(run_id: str | None, status: ApprovalStatus | None) -> tuple[str, list[Any]]:
    """The SQL and parameters of :func:`list_approvals` (for EXPLAIN QUERY PLAN)."""
    where: list[str] = []
    args: list[Any] = []
    if run_id is not None:
        where.append("run_id = ?")
        args.append(run_id)
    if status is not None:
        where.append("status = ?")
        args.append(ApprovalStatus(status).value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {_COLS} FROM approvals{clause} ORDER BY requested_us, rowid", args


def list_approvals(
    conn: sqlite3.Connection, run_id: str | None, status: ApprovalStatus | None
) -> list[ApprovalRecord]:
    """Matching approvals, oldest first; ties in the order they were stored."""
    sql, args = list_query(run_id, status)
    return [_from_row(r) for r in conn.execute(sql, args)]


def decide(conn: sqlite3.Connection, record: ApprovalRecord) -> None:
    """Set ``record``'s decision if the stored approval is still pending, else raise
    (in the writer's transaction, before anything else of the job is written)."""
    changed = conn.execute(
        _DECIDE,
        (
            ApprovalStatus(record.status).value,
            record.decided_by,
            *_time(record.decided_at),
            record.comment,
            record.edits,
            record.approval_id,
            record.run_id,
        ),
    ).rowcount
    if changed == 1:
        return
    # the update matched no pending row of this run: one of the reasons holds
    raise decision_refused(record, get(conn, record.approval_id)) or StoreError(
        f"approval {record.approval_id!r} could not be decided; nothing was written"
    )
