"""A process that fans out to 50 children and may SIGKILL itself half-way.

Usage: python fanout_child.py DB LOG RUN_ID KILL_AFTER

Each child appends "<pid> <item>" to LOG when it works. With KILL_AFTER > 0 the process
kills itself with SIGKILL once that many children have logged their work (some
finished and committed, some in flight). Without, it resumes (or starts) the run and
prints the parent's output.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Any

import anyio
from pydantic import BaseModel

import graphorch as go

ITEMS = 50


class Job(BaseModel):
    item: int = 0
    result: int = 0


class Batch(BaseModel):
    items: list[int] = []
    results: list[int] = []
    total: Annotated[int, go.add] = 0


def build(log: str, kill_after: int) -> go.Graph[Batch, Any]:
    worker = go.Graph("worker", state=Job)

    @worker.plan
    async def work(s: Job) -> dict[str, Any]:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{os.getpid()} {s.item}\n".encode())
        os.close(fd)
        if kill_after:
            with open(log) as f:  # noqa: ASYNC230 - a tiny local log in a test process
                if sum(1 for _ in f) >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
        await anyio.sleep(0.005 * (s.item % 4))
        return {"result": s.item * s.item}

    worker.end("done", output=lambda s: s.result)
    worker.edge(go.START, "work").edge("work", "done")

    parent = go.Graph("fanout", state=Batch)
    parent.delegate(
        "spread",
        graph=worker,
        each="items",
        input=lambda item: {"item": item},
        output="results",
        concurrency=8,
    )
    parent.plan("join", lambda s: {"total": sum(s.results)})
    parent.end("done", output=lambda s: s.total)
    parent.edge(go.START, "spread").edge("spread", "join").edge("join", "done")
    return parent


async def main() -> None:
    db, log, run_id, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    graph = build(log, kill_after)
    async with go.SQLiteStore(db) as store:
        rt = go.Runtime(store, graphs=[graph])
        try:
            await store.get_run(go.RunId(run_id))
        except go.RunNotFoundError:
            run = await rt.start(graph, Batch(items=list(range(ITEMS))), run_id=run_id)
        else:
            run = await rt.resume(run_id)
        result = await run.wait()
        print(result.status.value, result.output, flush=True)


if __name__ == "__main__":
    anyio.run(main)
