"""The SQLite writer thread: group commit, one failing job failing alone, wake-ups,
and step commits whose rows wait for the end of their batch."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import graphorch as go
from graphorch.events import Event, StepFinished
from graphorch.exceptions import StoreError
from graphorch.store._sqlite_worker import Worker
from graphorch.store.base import CheckpointWrite, RunUpdate, SetField


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


# -- step commits deferred to the end of a batch (SQLiteStore) ----------------------


class _Counter(BaseModel):
    n: int = 0


def _chain(steps: int) -> go.Graph[_Counter, None]:
    g: go.Graph[_Counter, None] = go.Graph("chain", state=_Counter)

    async def inc(state: _Counter) -> dict[str, Any]:
        return {"n": state.n + 1}

    for i in range(steps):
        g.plan(f"n{i}", inc)
    g.end("done")
    g.edge(go.START, "n0")
    for i in range(steps - 1):
        g.edge(f"n{i}", f"n{i + 1}")
    g.edge(f"n{steps - 1}", "done")
    return g


def _step_write(run_id: str, seq: int, n: int) -> tuple[CheckpointWrite, list[Event]]:
    cp = CheckpointWrite(
        checkpoint_id=f"{run_id}:{seq}",
        run_id=run_id,
        seq=seq,
        parent=f"{run_id}:{seq - 1}",
        nodes=("n0",),
        next_nodes=("n1",),
        status=go.RunStatus.RUNNING,
        writes={"n": SetField(json=str(n).encode())},
        meta=b'{"steps":1,"visits":{}}',
        created_at=datetime.now(UTC),
    )
    event = StepFinished(
        run_id=run_id,
        step=seq,
        node="n0",
        changed=("n",),
        next_nodes=("n1",),
        checkpoint=cp.checkpoint_id,
    )
    return cp, [event]


async def test_many_runs_committing_together_keep_exact_histories_and_chains(
    tmp_path: Path,
) -> None:
    async with go.SQLiteStore(tmp_path / "s.db") as store:
        rt = go.Runtime(store)
        g = _chain(6).freeze()
        results: list[go.RunResult[_Counter]] = []

        async def one() -> None:
            results.append(await (await rt.start(g, _Counter())).wait())

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
        assert len(results) == 40
        for result in results:
            assert result.status is go.RunStatus.SUCCEEDED and result.state.n == 6
            assert [c.seq for c in await rt.history(result.run_id)] == list(range(8))
            events = await store.list_events(result.run_id)
            assert [e.kind for e in events].count("step_finished") == 7
        report = await store.verify_events()
        assert report.ok, report


async def test_a_deferred_row_that_breaks_a_constraint_fails_its_own_commit_only(
    tmp_path: Path,
) -> None:
    async with go.SQLiteStore(tmp_path / "s.db") as store:
        rt = go.Runtime(store)
        run = await rt.start(_chain(3), _Counter())
        gate = threading.Event()
        blocker = store._writer.submit(lambda conn: gate.wait(10))  # pyright: ignore[reportPrivateUsage]
        update = RunUpdate(status=go.RunStatus.RUNNING)
        first_cp, first_events = _step_write(run.id, 1, 1)
        again_cp, again_events = _step_write(run.id, 1, 7)  # the same checkpoint again
        first = store.submit_step(None, first_cp, update, first_events, run_id=run.id)
        again = store.submit_step(None, again_cp, update, again_events, run_id=run.id)
        gate.set()
        await blocker.wait()
        await first.wait()
        with pytest.raises(go.StoreError, match="already exists"):
            await again.wait()
        assert (await rt.state_at(run.id)).n == 1
        events = await store.list_events(run.id)
        assert [e.kind for e in events] == ["run_started", "step_finished"]
        assert (await store.verify_events(run.id)).ok


async def test_a_delete_queued_between_commits_leaves_no_row_behind(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with go.SQLiteStore(path) as store:
        rt = go.Runtime(store)
        run = await rt.start(_chain(3), _Counter())
        keep = await rt.start(_chain(3), _Counter())
        gate = threading.Event()
        blocker = store._writer.submit(lambda conn: gate.wait(10))  # pyright: ignore[reportPrivateUsage]
        update = RunUpdate(status=go.RunStatus.RUNNING)
        cp, events = _step_write(run.id, 1, 1)
        committed = store.submit_step(None, cp, update, events, run_id=run.id)
        kept_cp, kept_events = _step_write(keep.id, 1, 1)
        kept = store.submit_step(None, kept_cp, update, kept_events, run_id=keep.id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.delete_run, run.id)
            await anyio.wait_all_tasks_blocked()  # the delete is queued behind the commits
            gate.set()
        await blocker.wait()
        await committed.wait()
        await kept.wait()
        with pytest.raises(go.RunNotFoundError):
            await store.get_run(run.id)
        assert (await rt.state_at(keep.id)).n == 1
    with sqlite3.connect(path) as conn:
        for table in ("checkpoints", "events", "event_chains"):
            rks = {r[0] for r in conn.execute(f"SELECT DISTINCT rk FROM {table}")}
            assert len(rks) == 1, table  # only the kept run's rows


async def test_a_failing_begin_hook_fails_its_batch_and_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    calls: list[int] = []

    def on_begin(conn: sqlite3.Connection) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")

    worker = Worker("test-writer", _opener(path), str(path), transactional=True, on_begin=on_begin)
    try:
        with pytest.raises(StoreError, match="disk I/O error"):
            await worker.call(_insert(1))
        assert await worker.call(_insert(2)) == 2  # the next batch begins afresh
        assert _rows(path) == [2]
    finally:
        await worker.close()


class _CountingWorker(Worker):
    """Counts the pauses the writer takes to let more jobs join a batch."""

    lingered = 0

    def _linger(self, expected: int) -> None:
        self.lingered += 1
        super()._linger(expected)


async def test_the_writer_does_not_linger_for_a_job_its_caller_already_awaits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    worker = _CountingWorker("test-writer", _opener(path), str(path), transactional=True)

    async def batch_of_three(first: int) -> None:
        gate = threading.Event()
        blocker = worker.submit(lambda conn: gate.wait(10))  # the next jobs queue behind it
        jobs = [worker.submit(_insert(x)) for x in range(first, first + 3)]
        gate.set()
        await blocker.wait()
        for job in jobs:
            await job.wait()

    try:
        await batch_of_three(1)
        # after a batch of many, a job its caller awaits runs at once
        assert await worker.call(_insert(4)) == 4
        assert worker.lingered == 0
        await batch_of_three(5)
        # one queued and not awaited waits a moment for company
        ran = threading.Event()

        def insert_8(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t (x) VALUES (8)")
            ran.set()

        queued = worker.submit(insert_8)
        assert await anyio.to_thread.run_sync(ran.wait, 10)  # not via the job: no waiter
        await queued.wait()
        assert worker.lingered == 1
        assert _rows(path) == [1, 2, 3, 4, 5, 6, 7, 8]
    finally:
        await worker.close()
