"""One thread per process that keeps the leases of the runs being driven alive.

A run's lease must be renewed while a node runs longer than the lease's time to live.
A heartbeat task per run did that, and cost each run a task, a task group, an event and
a timer: with 1,000 runs in flight, ~10% of their wall time and thousands of objects
for the garbage collector. Here one thread wakes every sixth of the time to live and,
only when some lease is due, renews the due ones in their run's event loop.

The keeper never waits on an event loop itself: each loop's renewals run from a short
helper thread, so a loop that is blocked (synchronous code in a node) or gone delays
only its own runs' renewals, never another loop's.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from anyio.lowlevel import EventLoopToken

    from .runs import Run

__all__ = ["KEEPER", "LeaseKeeper"]

_IDLE = 5.0  # seconds; replaced by the shortest registered lease's sixth


class _Entry:
    """A registered run's event loop, and how many ``wait()`` calls registered it."""

    __slots__ = ("count", "token")

    def __init__(self, token: EventLoopToken) -> None:
        self.token = token
        self.count = 1


class LeaseKeeper:
    """Renews the leases of registered runs from a background thread.

    The thread starts with the first run added and ends at a wake that finds none.
    """

    def __init__(self) -> None:
        self._runs: dict[Run[Any], _Entry] = {}
        # Reentrant: a garbage collection inside a locked section may finalize an
        # abandoned wait() coroutine, whose ``finally`` calls discard() on this thread.
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._wait = _IDLE
        self._busy: set[EventLoopToken] = set()  # loops with renewals still running

    def add(self, run: Run[Any]) -> None:
        """Keep ``run``'s lease alive until :meth:`discard`; call it in the run's loop."""
        token = anyio.lowlevel.current_token()
        wait = run._lease_ttl / 6  # pyright: ignore[reportPrivateUsage]
        with self._lock:
            entry = self._runs.get(run)
            if entry is None:
                self._runs[run] = _Entry(token)
            else:
                entry.count += 1
            if self._thread is None:
                self._wait = wait
                self._thread = threading.Thread(
                    target=self._loop, name="graphorch-lease-keeper", daemon=True
                )
                self._thread.start()
            elif wait < self._wait:  # the thread sleeps too long for this lease
                self._wait = wait
                self._wake.notify()

    def discard(self, run: Run[Any]) -> None:
        """Undo one :meth:`add`: the run's lease is no longer renewed once each
        ``add`` has been undone."""
        with self._lock:
            entry = self._runs.get(run)
            if entry is not None:
                entry.count -= 1
                if entry.count <= 0:
                    del self._runs[run]

    def _loop(self) -> None:
        while True:
            with self._lock:
                # A lease is renewed once a third of its time to live has passed,
                # and this wait makes that happen before half of it has.
                self._wake.wait(self._wait)
                if not self._runs:
                    self._thread = None  # a later add() starts a new thread
                    return
                registered = list(self._runs.items())
                self._wait = min(r._lease_ttl for r, _ in registered) / 6  # pyright: ignore[reportPrivateUsage]
                now = time.monotonic()
                due: dict[EventLoopToken, list[Run[Any]]] = {}
                for run, entry in registered:
                    if entry.token not in self._busy and run._lease_due(now):  # pyright: ignore[reportPrivateUsage]
                        due.setdefault(entry.token, []).append(run)
                self._busy.update(due)
            for token, runs in due.items():
                threading.Thread(
                    target=self._renew_in,
                    args=(token, runs),
                    name="graphorch-lease-renewal",
                    daemon=True,
                ).start()

    def _renew_in(self, token: EventLoopToken, runs: list[Run[Any]]) -> None:
        """Renew ``runs``' leases in their event loop, waiting as long as it takes."""
        # Imported here, in a thread: it costs ~8 ms (concurrent.futures, logging),
        # and a process that resumes one run must reach its first step fast.
        import anyio.from_thread

        try:
            anyio.from_thread.run(_renew_all, runs, token=token)
        except BaseException:  # the loop has ended, or is ending
            # Its runs are no longer driven; any error a renewal met shows in the
            # run's next commit, which the lease fences.
            with self._lock:
                for run in runs:
                    entry = self._runs.get(run)
                    if entry is not None and entry.token == token:
                        del self._runs[run]
        finally:
            with self._lock:
                self._busy.discard(token)


KEEPER = LeaseKeeper()
"""The process's one keeper: every runtime's driven runs."""


def _forget_in_child() -> None:
    # A forked child has none of the parent's threads, and drives none of its runs.
    KEEPER.__init__()


os.register_at_fork(after_in_child=_forget_in_child)


async def _renew_all(runs: list[Run[Any]]) -> None:
    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(_renew, run)


async def _renew(run: Run[Any]) -> None:
    # A lost lease, a closed store: the run's next commit, fenced by the lease, meets
    # the same and stops the run with the reason.
    with contextlib.suppress(Exception):
        await run._keep_alive()  # pyright: ignore[reportPrivateUsage]
