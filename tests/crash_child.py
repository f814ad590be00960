"""A process the crash tests start, kill with SIGKILL, and resume.

Usage: python crash_child.py DB LOG RUN_ID KILL [STEPS]

It starts run RUN_ID (or resumes it if it exists) of a loop graph that counts to STEPS,
one step per node visit. Every execution of the counting node appends "<pid> <n>" to
LOG *before* it returns, so the log shows every attempt, committed or not. KILL says
where this process kills itself with SIGKILL:

    none              run to the end
    node:K:before     inside the node that computes step K, before its side effect
    node:K:after      inside that node, after its side effect (before the commit)
    commit:K          right after step K's commit was acknowledged
    tool:K            inside the tool call of step K, after its effect
    charge:K          inside the non-idempotent `charge` call of step K (made only at the
                      step CRASH_CHARGE_AT names), after its effect
    hold:K            inside the node of step K, after its effect, wait until the file
                      LOG.go exists (the parent SIGSTOPs us meanwhile)
    wait              never kill itself (the parent kills it at a random moment)

GRAPHORCH_TEST_TTL sets the lease's time to live; a resume that finds the run locked
by a live owner retries until that lease expires.

After each process, the parent reads how many steps are committed, so it can check
that no later process executes a committed step again.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import anyio
from pydantic import BaseModel

import graphorch as go


class Count(BaseModel):
    n: int = 0
    receipts: list[str] = []


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def build(steps: int, kill: str, log: str) -> tuple[go.Graph[Count, Any], go.ToolRegistry]:
    tools = go.ToolRegistry()

    @tools.tool(idempotent=True)
    def stamp(n: int, ctx: go.ToolContext) -> str:
        with open(log + ".tool", "a") as f:
            f.write(f"{os.getpid()} {n} {ctx.idempotency_key}\n")
        if kill == f"tool:{n}":
            die()
        return f"r{n}"

    charge_at = int(os.environ.get("CRASH_CHARGE_AT", "0"))

    @tools.tool  # not idempotent: a crash inside it leaves its outcome unknown
    def charge(n: int) -> str:
        with open(log + ".charge", "a") as f:
            f.write(f"{os.getpid()} {n}\n")
        if kill == f"charge:{n}":
            die()
        return f"c{n}"

    g = go.Graph("crashy", state=Count, max_steps=steps * 3 + 10)

    @g.tool(max_visits=steps + 1)
    async def work(s: Count, ctx: go.Context[None]) -> dict[str, Any]:
        n = s.n + 1
        if kill == f"node:{n}:before":
            die()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{os.getpid()} {n}\n".encode())
        os.close(fd)
        if kill == f"node:{n}:after":
            die()
        if kill == f"hold:{n}":
            await anyio.Path(log + ".hold").touch()
            go_file = anyio.Path(log + ".go")
            while not await go_file.exists():  # noqa: ASYNC110 - another process makes it
                await anyio.sleep(0.01)
        receipt = await ctx.tools.call("stamp", n=n)
        if n == charge_at:
            receipt += "+" + await ctx.tools.call("charge", n=n)
        return {"n": n, "receipts": [*s.receipts, receipt]}

    g.end("done", output=lambda s: s.n)
    g.edge(go.START, "work")
    g.edge("work", "done", when=lambda s: s.n >= steps)
    g.edge("work", "work")
    return g, tools


class KillAfterCommit:
    """Wraps a store: SIGKILL right after the commit of step K is acknowledged."""

    def __init__(self, inner: go.SQLiteStore, seq: int) -> None:
        self._inner = inner
        self._seq = seq

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def commit_step(self, lease: Any, checkpoint: Any, *args: Any, **kwargs: Any) -> None:
        await self._inner.commit_step(lease, checkpoint, *args, **kwargs)
        if checkpoint is not None and checkpoint.seq == self._seq:
            die()


async def main() -> None:
    db, log, run_id, kill = sys.argv[1:5]
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    graph, tools = build(steps, kill, log)
    store: Any = go.SQLiteStore(db)
    if kill.startswith("commit:"):
        store = KillAfterCommit(store, int(kill.split(":")[1]))
    ttl = float(os.environ.get("GRAPHORCH_TEST_TTL", "60"))
    rt = go.Runtime(store, graphs=[graph], tools=tools, lease_ttl=ttl)
    try:
        await store.get_run(go.RunId(run_id))
    except go.RunNotFoundError:
        run = await rt.start(graph, Count(), run_id=run_id)
    else:
        with anyio.fail_after(30):
            while True:
                try:
                    run = await rt.resume(run_id)
                    break
                except go.RunLockedError:
                    await anyio.sleep(0.05)  # a live owner: wait for its lease to expire
    print("ready", flush=True)
    result = await run.wait()
    if result.status is go.RunStatus.RUNNING:
        print("stopped:", result.reason, flush=True)
    else:
        print(result.status.value, result.output, flush=True)
    await store.close()


if __name__ == "__main__":
    anyio.run(main)
