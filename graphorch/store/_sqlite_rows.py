"""How runs and checkpoints map to SQLite rows and back (pure functions, no I/O)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from graphorch.store._sqlite_values import decode_time, encode_time
from graphorch.store.base import CheckpointInfo, RunRecord
from graphorch.types import CheckpointId, RunId, RunStatus

__all__ = [
    "CP_COLS",
    "CP_FROM",
    "GC_SQL",
    "RK",
    "RUN_COLS",
    "RUN_SELECT",
    "TERMINAL",
    "canonical",
    "dumps",
    "info_from_row",
    "names_json",
    "names_tuple",
    "run_from_row",
    "runs_query",
    "split_id",
]

RUN_COLS = (
    "run_id, graph, graph_fingerprint, status, reason, error_node, created_us, created_off, "
    "updated_us, updated_off, parent_run, forked_from, output"
)
# A run with its head: the highest checkpoint. CROSS JOIN keeps runs the outer loop, so
# list_runs walks a runs index newest-first and looks each head up by primary key.
RUN_SELECT = """
SELECT r.run_id, r.graph, r.graph_fingerprint, r.status, r.reason, r.error_node,
       r.created_us, r.created_off, r.updated_us, r.updated_off, r.parent_run,
       r.forked_from, r.output, c.seq, c.cpid, s.next_nodes, c.created_us, c.created_off
FROM runs r CROSS JOIN checkpoints c
ON c.rk = r.rk AND c.seq = (SELECT max(seq) FROM checkpoints WHERE rk = r.rk)
JOIN shapes s ON s.id = c.shape
"""
RK = "(SELECT rk FROM runs WHERE run_id = ?)"
"""A run's integer key, looked up by its id inside a statement."""
# The run id is the statement's first parameter: the rows hold only its key.
CP_COLS = (
    "?, c.seq, c.cpid, c.parent, s.nodes, s.next_nodes, s.status, s.changed, c.created_us,"
    " c.created_off"
)
CP_FROM = "checkpoints c JOIN shapes s ON s.id = c.shape"
TERMINAL = tuple(s.value for s in RunStatus if s.is_terminal)
GC_SQL = (
    """
WITH RECURSIVE live(id) AS (
    SELECT j.value FROM checkpoints c, json_each(c.fields) j WHERE j.type = 'integer'
    UNION
    SELECT v.prev FROM vals v JOIN live ON v.id = live.id WHERE v.prev IS NOT NULL
)
DELETE FROM vals WHERE id NOT IN (SELECT id FROM live)
""",
    "DELETE FROM shapes WHERE id NOT IN (SELECT shape FROM checkpoints)",
)


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_names_json: dict[tuple[str, ...], str] = {}
_json_names: dict[str, tuple[str, ...]] = {}


def dumps(value: Any) -> str:
    return _encode(value)


def names_json(names: Sequence[str]) -> str:
    """JSON of a tuple of node or field names; the few distinct ones are memoized."""
    key = tuple(names)
    text = _names_json.get(key)
    if text is None:
        text = _encode(key)
        if len(_names_json) < 4096:
            _names_json[key] = text
    return text


def names_tuple(text: str) -> tuple[str, ...]:
    names = _json_names.get(text)
    if names is None:
        names = tuple(json.loads(text))
        if len(_json_names) < 4096:
            _json_names[text] = names
    return names


def canonical(run_id: str, seq: int) -> str:
    return f"{run_id}:{seq}"


def split_id(checkpoint_id: str) -> tuple[str, int] | None:
    run_id, sep, seq = checkpoint_id.rpartition(":")
    if not sep or not seq.isdigit():
        return None
    return run_id, int(seq)


def run_from_row(row: Sequence[Any]) -> RunRecord:
    seq: int = row[13]
    # The row changes on status changes, the head on every step: the later one counts.
    updated = decode_time(row[16], row[17]) if row[16] > row[8] else decode_time(row[8], row[9])
    return RunRecord(
        run_id=RunId(row[0]),
        graph=row[1],
        graph_fingerprint=row[2],
        status=RunStatus(row[3]),
        reason=row[4],
        error_node=row[5],
        created_at=decode_time(row[6], row[7]),
        updated_at=updated,
        head=CheckpointId(row[14] if row[14] is not None else canonical(row[0], seq)),
        seq=seq,
        next_nodes=names_tuple(row[15]),
        parent_run=None if row[10] is None else RunId(row[10]),
        forked_from=None if row[11] is None else CheckpointId(row[11]),
        output=None if row[12] is None else bytes(row[12]),
    )


def info_from_row(row: Sequence[Any]) -> CheckpointInfo:
    run_id: str = row[0]
    seq: int = row[1]
    parent: str | None = row[3]
    if parent == "":
        parent = canonical(run_id, seq - 1)
    return CheckpointInfo(
        checkpoint_id=CheckpointId(row[2] if row[2] is not None else canonical(run_id, seq)),
        run_id=RunId(run_id),
        seq=seq,
        parent=None if parent is None else CheckpointId(parent),
        nodes=names_tuple(row[4]),
        next_nodes=names_tuple(row[5]),
        status=RunStatus(row[6]),
        created_at=decode_time(row[8], row[9]),
        changed=names_tuple(row[7]),
    )


def runs_query(
    *,
    status: RunStatus | None = None,
    graph: str | None = None,
    parent_run: RunId | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int | None = 100,
) -> tuple[str, list[Any]]:
    """The SQL and parameters :meth:`list_runs` runs (for EXPLAIN QUERY PLAN)."""
    where: list[str] = []
    args: list[Any] = []
    if status is not None:
        where.append("r.status = ?")
        args.append(RunStatus(status).value)
    if graph is not None:
        where.append("r.graph = ?")
        args.append(graph)
    if parent_run is not None:
        where.append("r.parent_run = ?")
        args.append(parent_run)
    if created_after is not None:
        where.append("r.created_us >= ?")
        args.append(encode_time(created_after)[0])
    if created_before is not None:
        where.append("r.created_us < ?")
        args.append(encode_time(created_before)[0])
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    args.append(-1 if limit is None else limit)
    sql = f"{RUN_SELECT}{clause} ORDER BY r.created_us DESC, r.rowid DESC LIMIT ?"
    return sql, args
