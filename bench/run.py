"""Run every workload for graphorch and its peers, side by side, and print the table.

    python bench/run.py [--quick] [--only W1,W3] [--json FILE] [--peers/--no-peers]

Every workload runs in a fresh subprocess; the peers (LangGraph, Burr) run with the
python of their own virtualenv, bench/.peers/, created on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import drivers  # noqa: E402
import report  # noqa: E402

PEERS_DIR = HERE / ".peers"
PEER_PACKAGES = ("langgraph", "langgraph-checkpoint-sqlite", "apache-burr", "aiosqlite")
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "import")

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "W1": {"length": 100, "runs": 20},
        "W2": {"iterations": 1000},
        "W3": {"width": 200, "delay": 0.01, "repeat": 3},
        "W4": {"steps": 100, "kill_at": 50, "delay": 0.002, "lease_ttl": 0.5, "kills": 10},
        "W5": {"docs": 1000, "steps": 100},
        "W6": {"runs": 1000, "steps": 10, "delay": 0.01},
        "import": {"repeat": 7},
    },
    "quick": {
        "W1": {"length": 100, "runs": 5},
        "W2": {"iterations": 300},
        "W3": {"width": 200, "delay": 0.01, "repeat": 2},
        "W4": {"steps": 100, "kill_at": 50, "delay": 0.002, "lease_ttl": 0.5, "kills": 3},
        "W5": {"docs": 1000, "steps": 30},
        "W6": {"runs": 200, "steps": 10, "delay": 0.01},
        "import": {"repeat": 3},
    },
    "tiny": {  # the smoke test's size: proves the workloads run, measures nothing
        "W1": {"length": 10, "runs": 2},
        "W2": {"iterations": 20},
        "W3": {"width": 10, "delay": 0.001, "repeat": 1},
        "W4": {"steps": 12, "kill_at": 5, "delay": 0.002, "lease_ttl": 0.5, "kills": 2},
        "W5": {"docs": 20, "steps": 5},
        "W6": {"runs": 10, "steps": 3, "delay": 0.001},
        "import": {"repeat": 1},
    },
}

# (result label, framework, extra params) per workload; W1 adds the no-persistence runs
GO_VARIANTS = [(report.GO, "graphorch", {})]
PEER_VARIANTS = [
    (report.LG, "langgraph", {"mode": "default"}),
    (report.LG_BEST, "langgraph", {"mode": "sync"}),
    (report.BU, "burr", {"mode": "default"}),
    (report.BU_BEST, "burr", {"mode": "wal"}),
]
NO_PERSISTENCE = [
    (report.GO_MEM, "graphorch", {"store": "memory"}),
    (report.LG_NONE, "langgraph", {"mode": "none"}),
    (report.BU_NONE, "burr", {"mode": "none"}),
]
IMPORTS = {"graphorch": "graphorch", "langgraph": "langgraph.graph", "burr": "burr.core"}


def log(msg: str) -> None:
    """Progress on stderr (stdout carries the table)."""
    print(msg, file=sys.stderr, flush=True)


def peer_python(install: bool = True) -> str | None:
    """The peers' venv python, creating bench/.peers/ on first use; None if unavailable."""
    python = PEERS_DIR / "bin" / "python"
    check = [str(python), "-c", "import langgraph.graph, langgraph.checkpoint.sqlite, burr.core"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python)
    if not install:
        return None
    try:
        if not python.exists():
            log(f"peers: creating virtualenv {PEERS_DIR} ...")
            subprocess.run([sys.executable, "-m", "venv", str(PEERS_DIR)], check=True)
        log(f"peers: pip install {' '.join(PEER_PACKAGES)} (first run only) ...")
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
            check=True,
        )
        subprocess.run(check, check=True, capture_output=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"peers: COULD NOT INSTALL the peers ({exc}); running graphorch's side only")
        return None
    log("peers: installed")
    return str(python)


def peer_versions(python: str) -> dict[str, str]:
    """Installed versions of the peers."""
    code = (
        "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
        "('langgraph', 'langgraph-checkpoint-sqlite', 'apache-burr')}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python version, load average at the start."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def run_all(workloads: list[str], size: str, peers: str | None) -> dict[str, Any]:
    """Every selected workload, graphorch first then each peer variant; the results."""
    sizes = SIZES[size]
    results: report.Results = {}
    for w in workloads:
        variants = list(GO_VARIANTS)
        if w == "W1":
            variants.append(NO_PERSISTENCE[0])
        if peers is not None:
            variants += PEER_VARIANTS
            if w == "W1":
                variants += NO_PERSISTENCE[1:]
        results[w] = {}
        for label, framework, extra in variants:
            python = sys.executable if framework == "graphorch" else peers
            assert python is not None
            if w == "import":
                if label not in (report.GO, report.LG, report.BU):
                    continue
                log(f"{w}: {label} ...")
                out = drivers.import_time(python, IMPORTS[framework], sizes[w]["repeat"])
            elif w == "W4":
                log(f"{w}: {label} ({sizes[w]['kills']} kills) ...")
                out = drivers.w4(python, framework, {**sizes[w], **extra})
            else:
                log(f"{w}: {label} ...")
                out = drivers.run_worker(python, framework, w, {**sizes[w], **extra})
            if "error" in out:
                log(f"  ERROR: {out['error']}")
            results[w][label] = out
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the table; exit 1 if a graphorch workload failed."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3,import")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument(
        "--peers", action=argparse.BooleanOptionalAction, default=True, help="run the peers too"
    )
    args = ap.parse_args(argv)
    # every workload process may cache bytecode, as users' installs do (the peers' wheels
    # arrive compiled; an editable graphorch compiles on first import, done below)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", "import graphorch.store.sqlite"], check=False)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    chosen = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    peers = peer_python() if args.peers else None
    info: dict[str, Any] = {"size": size, "machine": machine()}
    if peers is not None:
        info["peers"] = peer_versions(peers)
    elif args.peers:
        print("NOTE: the peers could not be installed; graphorch's figures only.\n")
    log(f"bench: size={size}, workloads={','.join(chosen)}, machine={info['machine']}")
    t0 = time.perf_counter()
    results = run_all(chosen, size, peers)
    info["elapsed_s"] = time.perf_counter() - t0
    print(f"graphorch bench ({size}); peers: {info.get('peers', 'not run')}")
    print(
        "Peer cells: figure (graphorch's advantage: >1x means graphorch is better)."
        + ("" if size == "full" else " Targets are for the full sizes; this run is indicative.")
    )
    print(report.table(results))
    for line in report.errors(results):
        print(f"ERROR {line}")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "results": results}, indent=1))
    failed = any("error" in results[w].get(report.GO, {}) for w in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
