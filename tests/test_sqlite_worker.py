"""The SQLite writer thread: group commit, one failing job failing alone, wake-ups."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from graphorch.exceptions import StoreError
from graphorch.store._sqlite_worker import Worker


def _opener(path: Path):  # type: ignore[no-untyped-def]
    def open_conn() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)")
        return conn

    return open_conn


def _insert(x: int):  # type: ignore[no-untyped-def]
    def job(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    return job


def _rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")]


async def test_jobs_queued_together_commit_together_and_a_failing_one_fails_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    rollbacks: list[int] = []
    gate = threading.Event()
    worker = Worker(
        "test-writer",
        _opener(path),
        str(path),
        transactional=True,
        on_rollback=lambda: rollbacks.append(1),
    )
    try:
        # holds the thread while the next jobs queue up, so they form one batch
        blocker = worker.submit(lambda conn: gate.wait(10))
        jobs = [worker.submit(_insert(x)) for x in (1, 2, 2, 3)]
        gate.set()
        assert await blocker.wait() is True
        assert await jobs[0].wait() == 1
        assert await jobs[1].wait() == 2
        with pytest.raises(StoreError, match="UNIQUE"):
            await jobs[2].wait()
        assert await jobs[3].wait() == 3
        # the duplicate wrote nothing and took nothing of its batch down with it
        assert _rows(path) == [1, 2, 3]
        # the batch's first, bare attempt was rolled back (caches dropped) before the
        # jobs ran again one savepoint each
        assert rollbacks
    finally:
        await worker.close()


async def test_a_job_awaited_after_it_finished_and_one_awaited_before(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    gate = threading.Event()
    worker = Worker("test-writer", _opener(path), str(path), transactional=True)
    try:
        first = worker.submit(_insert(1))
        await worker.call(lambda conn: None)  # jobs run in order: the first is done
        assert first.done and first.waiter is None  # nobody had to be woken
        assert await first.wait() == 1

        worker.submit(lambda conn: gate.wait(10))
        second = worker.submit(_insert(2))
        results: list[int] = []
        async with anyio.create_task_group() as tg:

            async def waits() -> None:
                results.append(await second.wait())

            tg.start_soon(waits)
            await anyio.wait_all_tasks_blocked()  # the task waits on the job...
            assert second.waiter is not None and not second.done
            gate.set()  # ...and is woken from the writer thread
        assert results == [2]
        assert _rows(path) == [1, 2]
    finally:
        await worker.close()
