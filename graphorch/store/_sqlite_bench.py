"""Measure the SQLite store: ``python -m graphorch.store._sqlite_bench [--backend trio]``.

Prints committed steps/s for one sequential run, for 100 and 1,000 concurrent runs,
SQLite's own commit rate on this machine for reference, and the file sizes of the two
storage targets. Each rate is the best of a few repetitions (shared machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

from graphorch.events import Event, RunStarted, StepFinished, StepStarted
from graphorch.store.base import (
    AppendField,
    CheckpointWrite,
    FieldWrite,
    Lease,
    RunRecord,
    RunUpdate,
    SetField,
)
from graphorch.store.sqlite import SQLiteStore
from graphorch.types import CheckpointId, RunId, RunStatus


async def _create(store: SQLiteStore, run_id: str, state: dict[str, bytes]) -> Lease:
    rid = RunId(run_id)
    now = datetime.now(UTC)
    head = CheckpointId(f"{run_id}:0")
    record = RunRecord(rid, "bench", "fp", RunStatus.RUNNING, None, None, now, now, head, 0, ("a",))
    first = CheckpointWrite(
        head,
        rid,
        0,
        None,
        (),
        ("a",),
        RunStatus.RUNNING,
        {k: SetField(v) for k, v in state.items()},
        b"{}",
        now,
    )
    await store.create_run(record, first, [RunStarted(run_id=rid, step=0, graph="bench")])
    return await store.acquire_lease(rid, "bench", 600)


async def _step(store: SQLiteStore, lease: Lease, seq: int, writes: dict[str, FieldWrite]) -> None:
    rid = lease.run_id
    cp = CheckpointWrite(
        CheckpointId(f"{rid}:{seq}"),
        rid,
        seq,
        CheckpointId(f"{rid}:{seq - 1}"),
        ("a",),
        ("a",),
        RunStatus.RUNNING,
        writes,
        b'{"steps":%d}' % seq,
        datetime.now(UTC),
    )
    events: list[Event] = [
        StepStarted(run_id=rid, step=seq, node="a"),
        StepFinished(run_id=rid, step=seq, node="a", changed=tuple(writes), next_nodes=("a",)),
    ]
    await store.commit_step(lease, cp, RunUpdate(RunStatus.RUNNING), events, run_id=rid)


async def sequential(path: Path, steps: int) -> float:
    """Steps/s for one run committing ``steps`` steps one after another."""
    store = SQLiteStore(path)
    lease = await _create(store, "seq", {"n": b"0"})
    start = time.perf_counter()
    for seq in range(1, steps + 1):
        await _step(store, lease, seq, {"n": SetField(str(seq).encode())})
    rate = steps / (time.perf_counter() - start)
    await store.close()
    return rate


async def concurrent(path: Path, runs: int, steps: int) -> float:
    """Steps/s for ``runs`` runs advancing at once, ``steps`` steps each."""
    store = SQLiteStore(path)
    leases = [await _create(store, f"c{i}", {"n": b"0"}) for i in range(runs)]

    async def drive(lease: Lease) -> None:
        for seq in range(1, steps + 1):
            await _step(store, lease, seq, {"n": SetField(str(seq).encode())})

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for lease in leases:
            tg.start_soon(drive, lease)
    rate = runs * steps / (time.perf_counter() - start)
    await store.close()
    return rate


def raw_sqlite(path: Path, commits: int) -> float:
    """SQLite's own WAL commit rate: one small insert per transaction, no threads."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    start = time.perf_counter()
    for _ in range(commits):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (data) VALUES (?)", (b"x" * 200,))
        conn.execute("COMMIT")
    rate = commits / (time.perf_counter() - start)
    conn.close()
    return rate


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


async def sizes(tmp: Path) -> tuple[int, int]:
    """Bytes on disk for the two storage targets (after compact)."""
    big = tmp / "big.db"
    store = SQLiteStore(big)
    docs = json.dumps(["x" * 1020 for _ in range(1000)]).encode()
    lease = await _create(store, "big", {"docs": docs, "counter": b"0"})
    for seq in range(1, 101):
        await _step(store, lease, seq, {"counter": SetField(str(seq).encode())})
    await store.compact()
    await store.close()
    log = tmp / "append.db"
    store = SQLiteStore(log)
    lease = await _create(store, "log", {"log": b"[]"})
    item = b'["' + b"i" * 96 + b'"]'
    for seq in range(1, 1001):
        await _step(store, lease, seq, {"log": AppendField(item)})
    await store.compact()
    await store.close()
    return _disk(big), _disk(log)


async def main(repeat: int) -> None:
    """Run every measurement and print the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        best = 0.0
        for i in range(repeat):
            best = max(best, raw_sqlite(root / f"raw{i}.db", 10_000))
        print(f"raw SQLite WAL commits/s (no threads):     {best:8.0f}")
        best = 0.0
        for i in range(repeat):
            best = max(best, await sequential(root / f"seq{i}.db", 5_000))
        print(f"sequential run, committed steps/s:         {best:8.0f}")
        best = 0.0
        for i in range(repeat):
            best = max(best, await concurrent(root / f"c100-{i}.db", 100, 50))
        print(f"100 concurrent runs x 50 steps, steps/s:   {best:8.0f}")
        best = 0.0
        for i in range(repeat):
            best = max(best, await concurrent(root / f"c1000-{i}.db", 1000, 10))
        print(f"1,000 concurrent runs x 10 steps, steps/s: {best:8.0f}")
        big, log = await sizes(root)
        print(f"1 MB state x 100 counter steps, bytes:     {big:8d}  (target < 3 MB)")
        print(f"1,000 x 100-byte appends, bytes:           {log:8d}  (target < 1 MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.repeat, backend=args.backend)
