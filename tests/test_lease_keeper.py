"""A driven run's lease stays alive while a node runs longer than the lease lives."""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import graphorch as go
from graphorch._lease_keeper import KEEPER
from graphorch.store.base import Lease


class N(BaseModel):
    n: int = 0


class CountingStore(go.MemoryStore):
    """Counts lease renewals asked for and lets a test wait for the ``k``-th."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals = 0
        self.late: list[float] = []  # seconds past expiry, of renewals that came too late
        self.by_run: dict[str, int] = {}
        self.seen: dict[int, anyio.Event] = {}

    def renewed(self, k: int) -> anyio.Event:
        return self.seen.setdefault(k, anyio.Event())

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        self.renewals += 1  # asked, whether or not the lease is still held
        # The store would renew an expired lease nobody took: count it as a miss.
        if time.time() > lease.expires_at:
            self.late.append(time.time() - lease.expires_at)
        self.by_run[lease.run_id] = self.by_run.get(lease.run_id, 0) + 1
        for k, event in self.seen.items():
            if self.renewals >= k:
                event.set()
        return await super().renew_lease(lease, ttl)


TTL = 0.6  # renewed from 0.2 s on, checked every 0.1 s: late only if a wake slips 0.3 s


def slow_setup(runs: int = 1) -> tuple[CountingStore, go.Runtime, go.Graph[N, None]]:
    """A store, a runtime with a ``TTL`` lease, and a graph whose one node outlives the
    lease three times over (``runs`` of it at once), checking that no one else can
    take its run meanwhile."""
    store = CountingStore()
    other = go.Runtime(store)
    g: go.Graph[N, None] = go.Graph("slow", state=N)

    @g.plan
    async def slow(state: N, ctx: go.Context[None]) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        # Only renewals let the lease outlive this wait: a lease is renewed once a
        # third of its time to live has passed, so three rounds take at least that.
        await store.renewed(3 * runs).wait()
        with pytest.raises(go.RunLockedError):
            await other.resume(ctx.run_id)
        return {"n": state.n + 1}

    g.end("done")
    g.edge(go.START, "slow").edge("slow", "done")
    other.register(g)
    return store, go.Runtime(store, lease_ttl=TTL), g


async def test_a_node_that_outlives_the_lease_keeps_the_run() -> None:
    store, rt, g = slow_setup()
    run = await rt.start(g, N())
    with anyio.fail_after(10):
        result = await run.wait()
    assert result.status is go.RunStatus.SUCCEEDED and result.state.n == 1
    assert store.renewals >= 3 and store.late == []
    # finished runs are no longer renewed (nor held by the keeper)
    assert run not in KEEPER._runs  # pyright: ignore[reportPrivateUsage]


async def test_many_runs_are_kept_by_one_thread() -> None:
    import threading

    store, rt, g = slow_setup(runs=20)
    runs = [await rt.start(g, N()) for _ in range(20)]
    results: list[go.RunResult[N]] = []

    async def drive(run: go.Run[N]) -> None:
        results.append(await run.wait())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for run in runs:
                tg.start_soon(drive, run)
            await store.renewed(1).wait()
            keepers = [t for t in threading.enumerate() if t.name == "graphorch-lease-keeper"]
            assert len(keepers) == 1
    assert [r.status for r in results] == [go.RunStatus.SUCCEEDED] * 20
    assert sorted(store.by_run) == sorted(r.id for r in runs)  # every run's lease renewed
    assert store.late == []


async def test_a_second_wait_refused_does_not_stop_the_first_ones_renewals() -> None:
    store, rt, g = slow_setup()
    run = await rt.start(g, N())
    results: list[go.RunResult[N]] = []

    async def drive() -> None:
        results.append(await run.wait())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive)
            await store.renewed(1).wait()  # the first wait() is driving the run
            with pytest.raises(go.RunNotActiveError):
                await run.wait()
    assert [r.status for r in results] == [go.RunStatus.SUCCEEDED]
    assert store.late == []


async def test_a_blocked_event_loop_does_not_hold_up_another_loops_renewals() -> None:
    """A node blocks its own event loop (synchronous code in an async node): that
    loop's renewals wait, and the runs of every other loop are still renewed."""
    blocked_store = CountingStore()
    release = threading.Event()
    entered = threading.Event()
    g: go.Graph[N, None] = go.Graph("blocking", state=N)

    @g.plan
    async def block(state: N) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        entered.set()
        release.wait(10)  # blocks this event loop, on purpose
        return {"n": 1}

    g.end("done")
    g.edge(go.START, "block").edge("block", "done")

    def other_loop() -> None:
        async def main() -> None:
            rt = go.Runtime(blocked_store, lease_ttl=TTL)
            await (await rt.start(g, N())).wait()

        anyio.run(main)

    blocker = threading.Thread(target=other_loop, daemon=True)
    blocker.start()
    try:
        assert await anyio.to_thread.run_sync(entered.wait, 10)
        store, rt, slow = slow_setup()  # this loop's run needs three renewals
        with anyio.fail_after(10):
            result = await (await rt.start(slow, N())).wait()
        assert result.status is go.RunStatus.SUCCEEDED and store.late == []
    finally:
        release.set()
        await anyio.to_thread.run_sync(blocker.join, 10)


async def test_a_renewal_that_fails_stops_the_run_at_its_next_commit() -> None:
    """Another owner takes the run while a node runs: the keeper's renewal fails
    quietly, and the run's next commit is fenced (the run stops, writing nothing)."""
    store = CountingStore()
    g: go.Graph[N, None] = go.Graph("taken", state=N)
    rt = go.Runtime(store, lease_ttl=TTL)

    @g.plan
    async def slow(state: N, ctx: go.Context[None]) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        # as a second process does once the first one's lease has expired
        await store.acquire_lease(ctx.run_id, "thief", 30, steal_from=rt.owner)
        await store.renewed(1).wait()  # the keeper tried, and lost
        return {"n": 1}

    g.end("done")
    g.edge(go.START, "slow").edge("slow", "done")
    run = await rt.start(g, N())
    with anyio.fail_after(10):
        result = await run.wait()
    assert result.status is go.RunStatus.RUNNING
    assert isinstance(result.error, go.LeaseLostError)
    assert result.state.n == 0
    assert (await store.get_run(run.id)).status is go.RunStatus.RUNNING
    assert [c.seq for c in await store.list_checkpoints(run.id)] == [0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
async def test_a_forked_child_forgets_the_parents_keeper() -> None:
    """A child forked while the keeper thread runs does not have that thread: it must
    start its own for its runs, not count on one that does not exist there."""
    store, rt, g = slow_setup()
    run = await rt.start(g, N())
    status = -1
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.wait)
            await store.renewed(1).wait()  # the keeper thread is running
            assert KEEPER._thread is not None  # pyright: ignore[reportPrivateUsage]
            with warnings.catch_warnings():
                # Python 3.12+ warns about forking a process with threads
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the child: report what it holds, and exit at once
                os._exit(0 if _keeper_idle() else 1)
            _, status = await anyio.to_thread.run_sync(os.waitpid, pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _keeper_idle() -> bool:
    return KEEPER._thread is None and not KEEPER._runs  # pyright: ignore[reportPrivateUsage]
