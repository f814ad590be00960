"""Where W4's "start to first new step" goes: a resumed process, phase by phase.

    python bench/startup.py                      # 10 rounds with bench/.graphorch's python
    python bench/startup.py --rounds 20 --python PATH

Each round SIGKILLs a process in the middle of a 100-step run, then starts a fresh
process that resumes it, and records when that process reaches each phase: the
interpreter up, anyio, pydantic and graphorch imported, the first state model built,
the graph built, the event loop running, the store open, the run resumed, the first
new step. The table gives the median time of each phase alone and since the parent
started the process, so a target for the whole (W4: 150 ms) can be checked against
the parts graphorch does not control (the interpreter, pydantic, the event loop).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import os, sys, time
T0 = float(sys.argv[3])
marks = [("interpreter", time.time() - T0)]
def mark(label):
    marks.append((label, time.time() - T0))
import anyio
mark("import anyio")
from pydantic import BaseModel
mark("import pydantic")
import graphorch as go
mark("import graphorch")
class Counter(BaseModel):
    n: int = 0
mark("first state model")
mode, db = sys.argv[1], sys.argv[2]
g = go.Graph("resume", state=Counter, max_steps=200)
@g.plan
async def work(state: Counter) -> dict[str, int]:
    if len(marks) == 7:
        mark("first new step")
    if mode == "victim" and state.n == 50:
        os.kill(os.getpid(), 9)
    return {"n": state.n + 1}
g.end("done")
g.edge(go.START, "work")
g.edge("work", "work", when=lambda s: s.n < 100)
g.edge("work", "done")
mark("graph built")
async def main() -> None:
    mark("event loop")
    rt = go.Runtime(go.SQLiteStore(db), graphs=[g], lease_ttl=0.5)
    if mode == "victim":
        run = await rt.start(g, Counter(), run_id="r")
        while run.active:
            await run.step()
    run = await rt.resume("r")
    await run.wait()
    await rt.store.close()
anyio.run(main)
import json
print(json.dumps(marks))
"""

PHASES = (
    "interpreter",
    "import anyio",
    "import pydantic",
    "import graphorch",
    "first state model",
    "graph built",
    "event loop",
    "first new step",
)
OURS = {"import graphorch", "graph built", "first new step"}


def one_round(python: str, directory: Path) -> dict[str, float]:
    """Kill a run at step 50, resume it in a fresh process; that process's marks."""
    db = str(directory / "w4.db")
    for name in os.listdir(directory):
        os.unlink(directory / name)
    victim = subprocess.run(
        [python, "-c", CHILD, "victim", db, str(time.time())], capture_output=True, text=True
    )
    if victim.returncode != -signal.SIGKILL:
        raise SystemExit(f"the victim was not killed as planned:\n{victim.stderr}")
    t0 = time.time()
    resumed = subprocess.run(
        [python, "-c", CHILD, "resume", db, repr(t0)], capture_output=True, text=True
    )
    if resumed.returncode != 0:
        raise SystemExit(f"the resume failed:\n{resumed.stderr}")
    marks = dict(json.loads(resumed.stdout.strip().splitlines()[-1]))
    # the store open and resume happen between "event loop" and the first step
    return {label: float(marks[label]) for label in PHASES}


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the rounds, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    default = HERE / ".graphorch" / "bin" / "python"
    ap.add_argument(
        "--python",
        default=str(default) if default.exists() else sys.executable,
        help="the interpreter to measure (default: bench/.graphorch's, made by bench/run.py)",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        rounds = [one_round(args.python, Path(tmp)) for _ in range(args.rounds)]
    print(f"{args.rounds} resumes with {args.python}; median ms (* = graphorch's own work)")
    print(f"  {'phase':34} {'alone':>7} {'since start':>12}")

    def alone(r: dict[str, float], label: str) -> float:
        i = PHASES.index(label)
        return r[label] - (r[PHASES[i - 1]] if i else 0.0)

    for label in PHASES:
        star = "*" if label in OURS else " "
        name = "store open + resume + first step" if label == "first new step" else label
        print(
            f"  {star}{name:33} {statistics.median(alone(r, label) for r in rounds) * 1000:7.1f}"
            f" {statistics.median(r[label] for r in rounds) * 1000:12.1f}"
        )
    ours = statistics.median(sum(alone(r, p) for p in OURS) for r in rounds)
    total = statistics.median(r[PHASES[-1]] for r in rounds)
    print(f"  graphorch's own phases together: {ours * 1000:.1f} ms of {total * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
