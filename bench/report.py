"""The side-by-side table: figures, graphorch's advantage over each peer, targets."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GO = "graphorch"
GO_MEM = "graphorch (memory)"
LG, LG_BEST, LG_NONE = "langgraph default", "langgraph sync", "langgraph no-ckpt"
BU, BU_BEST, BU_NONE = "burr default", "burr wal", "burr no-persist"
PEER_COLUMNS = ("LangGraph default", "LangGraph sync", "Burr default", "Burr WAL")

Results = dict[str, dict[str, dict[str, Any]]]  # workload -> variant label -> result


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric of one workload."""

    workload: str
    metric: str
    key: str
    higher_better: bool
    fmt: Callable[[float], str]
    ours: str = GO
    peers: tuple[str | None, ...] = (LG, LG_BEST, BU, BU_BEST)
    target: str = ""
    check: Callable[[Results], bool | None] | None = None


def _rate(v: float) -> str:
    return f"{v:,.0f}/s"


def _secs(v: float) -> str:
    return f"{v * 1000:,.0f} ms" if v < 1 else f"{v:,.2f} s"


def _mb(v: float) -> str:
    return f"{v / 1e6:,.2f} MB" if v >= 1e4 else f"{v:,.0f} B"


def _rss(v: float) -> str:
    return f"{v:,.0f} MB"


def _count(v: float) -> str:
    return f"{v:g}"


def get(results: Results, workload: str, label: str, key: str) -> float | None:
    """A figure, or None when that run is missing or failed."""
    value = results.get(workload, {}).get(label, {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def ratio(ours: float | None, theirs: float | None, higher_better: bool) -> float | None:
    """How many times better graphorch is (>1: better)."""
    if ours is None or theirs is None or ours == 0 or theirs == 0:
        return None
    return ours / theirs if higher_better else theirs / ours


def _all(*conds: bool | None) -> bool | None:
    if any(c is False for c in conds):
        return False
    if any(c is None for c in conds):
        return None
    return True


def _at_least(results: Results, w: str, label: str, key: str, floor: float) -> bool | None:
    v = get(results, w, label, key)
    return None if v is None else v >= floor


def _under(results: Results, w: str, label: str, key: str, cap: float) -> bool | None:
    v = get(results, w, label, key)
    return None if v is None else v < cap


def _times(results: Results, w: str, peer: str, key: str, hb: bool, n: float) -> bool | None:
    r = ratio(get(results, w, GO, key), get(results, w, peer, key), hb)
    return None if r is None else r >= n


ROWS: tuple[Row, ...] = (
    Row("W1", "chain, checkpointed", "steps_per_s", True, _rate,
        target="8,000+/s and 15x LG default",
        check=lambda r: _all(_at_least(r, "W1", GO, "steps_per_s", 8000),
                             _times(r, "W1", LG, "steps_per_s", True, 15))),
    Row("W1", "chain, no persistence", "steps_per_s", True, _rate, ours=GO_MEM,
        peers=(LG_NONE, None, BU_NONE, None), target="40,000+/s",
        check=lambda r: _at_least(r, "W1", GO_MEM, "steps_per_s", 40000)),
    Row("W2", "loop steps/s", "steps_per_s", True, _rate, target="15x LG default",
        check=lambda r: _times(r, "W2", LG, "steps_per_s", True, 15)),
    Row("W2", "loop wall", "wall_s", False, _secs),
    Row("W2", "loop bytes on disk", "bytes", False, _mb, target="under 1 MB",
        check=lambda r: _under(r, "W2", GO, "bytes", 1e6)),
    Row("W7", "appends steps/s", "steps_per_s", True, _rate),
    Row("W7", "appends bytes on disk", "bytes", False, _mb, target="under 1 MB",
        check=lambda r: _under(r, "W7", GO, "bytes", 1e6)),
    Row("W3", "fan-out 200 wall", "wall_s", False, _secs, target="under 25 ms",
        check=lambda r: _under(r, "W3", GO, "wall_s", 0.025)),
    Row("W4", "resume: start to 1st new step", "first_step_s", False, _secs,
        target="under 150 ms",
        check=lambda r: _under(r, "W4", GO, "first_step_s", 0.15)),
    Row("W4", "  (of which lease wait)", "lease_wait_s", False, _secs),
    Row("W4", "exactly-once rounds", "exactly_once", True, _count, target="all (10/10)",
        check=lambda r: None if get(r, "W4", GO, "exactly_once") is None
        else get(r, "W4", GO, "exactly_once") == get(r, "W4", GO, "kills")),
    Row("W4", "acked steps re-run (sum)", "reran_acked", False, _count),
    Row("W4", "steps re-run incl. in-flight", "reran_total", False, _count),
    Row("W5", "wide state wall", "wall_s", False, _secs, target="10x LG default",
        check=lambda r: _times(r, "W5", LG, "wall_s", False, 10)),
    Row("W5", "wide state bytes", "bytes", False, _mb, target="under 3 MB",
        check=lambda r: _under(r, "W5", GO, "bytes", 3e6)),
    Row("W6", "1,000 runs wall", "wall_s", False, _secs,
        target="under 1.5 s, 15x LG, 3x Burr",
        check=lambda r: _all(_under(r, "W6", GO, "wall_s", 1.5),
                             _times(r, "W6", LG, "wall_s", False, 15),
                             _times(r, "W6", BU, "wall_s", False, 3))),
    Row("W6", "1,000 runs peak RSS", "peak_rss_mb", False, _rss, target="under 150 MB",
        check=lambda r: _under(r, "W6", GO, "peak_rss_mb", 150)),
    Row("import", "import time", "import_s", False, _secs, target="under 150 ms",
        peers=(LG, None, BU, None),
        check=lambda r: _under(r, "import", GO, "import_s", 0.15)),
)  # fmt: skip


def _cell(results: Results, row: Row, label: str | None) -> str:
    if label is None:
        return "-"
    entry = results.get(row.workload, {}).get(label)
    if entry is None:
        return "-"
    if "error" in entry:
        return "error"
    theirs = get(results, row.workload, label, row.key)
    if theirs is None:
        return "-"
    text = row.fmt(theirs)
    r = ratio(get(results, row.workload, row.ours, row.key), theirs, row.higher_better)
    return f"{text} ({r:.1f}x)" if r is not None and label != row.ours else text


def status(results: Results, row: Row) -> str:
    """'met', 'NOT met', 'n/a' (figures missing) or '' (no target)."""
    if row.check is None:
        return ""
    ok = row.check(results)
    return "n/a" if ok is None else "met" if ok else "NOT met"


def table(results: Results, *, markdown: bool = False) -> str:
    """The table as aligned text (or Markdown). Peer cells: figure (graphorch's advantage)."""
    head = ["workload", "metric", "graphorch", *PEER_COLUMNS, "target", "met?"]
    lines: list[list[str]] = []
    for row in ROWS:
        if row.workload not in results:
            continue
        ours = _cell(results, row, row.ours)
        cells = [_cell(results, row, p) for p in row.peers]
        lines.append([row.workload, row.metric, ours, *cells, row.target, status(results, row)])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt.format(*head), sep, *(fmt.format(*line) for line in lines)])


def errors(results: Results) -> list[str]:
    """Every failed run, as 'workload variant: error'."""
    return [
        f"{w} {label}: {entry['error']}"
        for w, by_label in results.items()
        for label, entry in by_label.items()
        if "error" in entry
    ]
