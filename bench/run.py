"""Run every workload for graphorch and its peers, side by side, and print the table.

    python bench/run.py [--quick] [--only W1,W3] [--json FILE] [--peers/--no-peers]
                        [--graphorch-python PATH]

Every workload runs in a fresh subprocess. Each side runs with the python of its own
virtualenv, created on first use: the peers (LangGraph, Burr) in bench/.peers/, graphorch
(installed editable from this checkout) in bench/.graphorch/. Clean environments alike,
so process-start figures (W4) compare interpreters that load the same amount of site.
"""

from __future__ import annotations

import argparse
import hashlib
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
GO_DIR = HERE / ".graphorch"
REPO = HERE.parent
PEER_PACKAGES = ("langgraph", "langgraph-checkpoint-sqlite", "apache-burr", "aiosqlite")
WORKLOADS = ("W1", "W2", "W7", "W3", "W4", "W5", "W6", "import")

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "W1": {"length": 100, "runs": 20},
        "W2": {"iterations": 1000},
        "W7": {"steps": 1000},
        "W3": {"width": 200, "delay": 0.01, "repeat": 3},
        "W4": {"steps": 100, "kill_at": 50, "delay": 0.002, "lease_ttl": 0.5, "kills": 10},
        "W5": {"docs": 1000, "steps": 100},
        "W6": {"runs": 1000, "steps": 10, "delay": 0.01},
        "import": {"repeat": 7},
    },
    "quick": {
        "W1": {"length": 100, "runs": 5},
        "W2": {"iterations": 300},
        "W7": {"steps": 1000},
        "W3": {"width": 200, "delay": 0.01, "repeat": 2},
        "W4": {"steps": 100, "kill_at": 50, "delay": 0.002, "lease_ttl": 0.5, "kills": 3},
        "W5": {"docs": 1000, "steps": 30},
        "W6": {"runs": 200, "steps": 10, "delay": 0.01},
        "import": {"repeat": 3},
    },
    "tiny": {  # the smoke test's size: proves the workloads run, measures nothing
        "W1": {"length": 10, "runs": 2},
        "W2": {"iterations": 20},
        "W7": {"steps": 20},
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


def _venv_python(
    directory: Path, label: str, install: list[str], check: str, stamp: str = ""
) -> str | None:
    """The python of the virtualenv ``directory``, creating it and pip-installing
    ``install`` on first use (or when ``stamp`` changed); None if that fails."""
    python = directory / "bin" / "python"
    stamp_file = directory / "graphorch-bench-stamp"
    ready = (
        python.exists()
        and (not stamp or (stamp_file.exists() and stamp_file.read_text() == stamp))
        and subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0
    )
    if ready:
        return str(python)
    try:
        if not python.exists():
            log(f"{label}: creating virtualenv {directory} ...")
            subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
        log(f"{label}: pip install {' '.join(install)} ...")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *install], check=True)
        subprocess.run([str(python), "-c", check], check=True, capture_output=True)
        stamp_file.write_text(stamp)
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"{label}: COULD NOT INSTALL into {directory} ({exc})")
        return None
    log(f"{label}: installed")
    return str(python)


def peer_python() -> str | None:
    """The peers' venv python, creating bench/.peers/ on first use; None if unavailable."""
    return _venv_python(
        PEERS_DIR,
        "peers",
        list(PEER_PACKAGES),
        "import langgraph.graph, langgraph.checkpoint.sqlite, burr.core",
    )


def graphorch_python() -> str:
    """The python graphorch's workloads run with: bench/.graphorch/, a virtualenv with
    this checkout installed editable (reinstalled when pyproject.toml changes), so
    graphorch starts as cleanly as the peers do. Falls back to this interpreter."""
    stamp = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    check = (
        "import graphorch, pathlib; "
        f"assert pathlib.Path(graphorch.__file__).resolve().is_relative_to({str(REPO)!r})"
    )
    python = _venv_python(GO_DIR, "graphorch", ["-e", str(REPO)], check, stamp)
    if python is None:
        log(f"graphorch: running with {sys.executable} instead")
        return sys.executable
    return python


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


def run_all(workloads: list[str], size: str, go: str, peers: str | None) -> dict[str, Any]:
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
            python = go if framework == "graphorch" else peers
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
    ap.add_argument(
        "--graphorch-python",
        metavar="PATH",
        help="run graphorch's workloads with this python (default: bench/.graphorch/)",
    )
    args = ap.parse_args(argv)
    # every workload process may cache bytecode, as users' installs do (the peers' wheels
    # arrive compiled; an editable graphorch compiles on first import, done below)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    chosen = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    go = args.graphorch_python or graphorch_python()
    subprocess.run([go, "-c", "import graphorch.store.sqlite"], check=False)
    peers = peer_python() if args.peers else None
    info: dict[str, Any] = {"size": size, "machine": machine(), "graphorch_python": go}
    if peers is not None:
        info["peers"] = peer_versions(peers)
    elif args.peers:
        print("NOTE: the peers could not be installed; graphorch's figures only.\n")
    log(f"bench: size={size}, workloads={','.join(chosen)}, machine={info['machine']}")
    t0 = time.perf_counter()
    results = run_all(chosen, size, go, peers)
    info["elapsed_s"] = time.perf_counter() - t0
    print(f"graphorch bench ({size}); peers: {info.get('peers', 'not run')}")
    if go == sys.executable and not args.graphorch_python:
        print(f"NOTE: graphorch ran with {go}, not a virtualenv of its own like the peers.")
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
