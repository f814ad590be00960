"""Deleting runs and checkpoints in SQLite (run in the writer thread, in a transaction)."""

from __future__ import annotations

import sqlite3

from graphorch.exceptions import RunNotFoundError
from graphorch.store._sqlite_rows import GC_SQL, canonical
from graphorch.types import RunId

__all__ = ["collect_garbage", "delete_runs", "prune_checkpoints"]

_CHUNK = 500  # ids per IN (...) list, under SQLite's oldest bound-variable limit


def delete_runs(conn: sqlite3.Connection, run_ids: list[str]) -> None:
    """Delete runs with every row of theirs (values are left to :func:`collect_garbage`)."""
    for start in range(0, len(run_ids), _CHUNK):
        chunk = run_ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        keys = [
            int(r[0]) for r in conn.execute(f"SELECT rk FROM runs WHERE run_id IN ({marks})", chunk)
        ]
        rks = ",".join("?" * len(keys))
        for table in ("events", "event_chains", "tool_calls", "checkpoints"):
            conn.execute(f"DELETE FROM {table} WHERE rk IN ({rks})", keys)
        conn.execute(f"DELETE FROM approvals WHERE run_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM runs WHERE rk IN ({rks})", keys)


def collect_garbage(conn: sqlite3.Connection) -> None:
    """Delete stored values and shapes no checkpoint refers to any more."""
    for statement in GC_SQL:
        conn.execute(statement)


def prune_checkpoints(conn: sqlite3.Connection, run_id: RunId, keep_last: int) -> int:
    """Delete a run's checkpoints but its last ``keep_last``, its head and every one a
    fork starts from; returns how many went. Raises RunNotFoundError."""
    found = conn.execute("SELECT rk FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if found is None:
        raise RunNotFoundError(run_id)
    rk = int(found[0])
    seqs: list[tuple[int, str | None]] = [
        (int(r[0]), r[1])
        for r in conn.execute(
            "SELECT seq, cpid FROM checkpoints WHERE rk = ? ORDER BY seq DESC", (rk,)
        )
    ]
    if not seqs:
        return 0
    head = seqs[0][0]
    victims = {
        (cpid or canonical(run_id, seq)): seq for seq, cpid in seqs[keep_last:] if seq != head
    }
    if not victims:
        return 0
    names = list(victims)
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(
            f"SELECT parent FROM checkpoints WHERE parent <> '' AND rk <> ? AND parent IN ({marks})",
            [rk, *chunk],
        ):
            victims.pop(str(r[0]), None)  # a fork still points here
    gone = list(victims.values())
    for start in range(0, len(gone), _CHUNK):
        chunk = gone[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM checkpoints WHERE rk = ? AND seq IN ({marks})", [rk, *chunk])
    return len(gone)
