"""Rows deferred to the end of a writer batch all go in, in few statements."""

from __future__ import annotations

import sqlite3

import pytest

from graphorch.store._sqlite_batch import BatchRows

SCHEMA = """
CREATE TABLE checkpoints (rk, seq, cpid, parent, shape, fields, meta, created_us,
                          created_off, PRIMARY KEY (rk, seq)) WITHOUT ROWID;
CREATE TABLE events (rk, n, data, hash, PRIMARY KEY (rk, n)) WITHOUT ROWID;
CREATE TABLE event_chains (rk INTEGER PRIMARY KEY, n, hash);
"""


@pytest.mark.parametrize("variables", [None, 999])  # 999: SQLite builds before 3.32
@pytest.mark.parametrize("count", [1, 3, 1023, 1024, 1025, 2500])
def test_every_deferred_row_is_written_once_in_few_statements(
    count: int, variables: int | None
) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    if variables is not None:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variables)
    conn.executemany(
        "INSERT INTO event_chains VALUES (?, 0, x'00')", [(rk,) for rk in range(count)]
    )
    rows = BatchRows()
    rows.checkpoints = [(rk, 1, None, "", 1, "{}", b"{}", rk, 0) for rk in range(count)]
    rows.events = [(rk, 0, f"event {rk}", b"h") for rk in range(count)]
    rows.chains = {rk: (1, bytes([rk % 256])) for rk in range(count)}
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    rows.flush(conn)
    conn.set_trace_callback(None)

    assert conn.execute("SELECT count(*), sum(created_us) FROM checkpoints").fetchone() == (
        count,
        sum(range(count)),
    )
    assert conn.execute("SELECT data FROM events ORDER BY rk").fetchall() == [
        (f"event {rk}",) for rk in range(count)
    ]
    chains = conn.execute("SELECT rk, n, hash FROM event_chains ORDER BY rk").fetchall()
    assert chains == [(rk, 1, bytes([rk % 256])) for rk in range(count)]
    assert rows.checkpoints == [] and rows.events == [] and rows.chains == {}
    # per table: at most one statement per full 1,024 rows plus one per binary digit
    most = 3 * (count // 1024 + 11) if variables is None else 3 * (count // 64 + 7)
    assert len(statements) <= most
    if count >= 1024 and variables is None:
        assert len(statements) <= 3 * (count // 1024 + bin(count % 1024).count("1"))
