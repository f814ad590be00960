"""Rendering: DOT and Mermaid snapshots, escaping, run overlays, SVG/PNG, missing `dot`.

Snapshots live in tests/snapshots/; rewrite them with ``UPDATE_SNAPSHOTS=1 pytest``.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import graphorch as go
from graphorch.diagrams import (
    RenderError,
    RunOverlay,
    overlay_for,
    render,
    to_dot,
    to_mermaid,
    to_png,
    to_svg,
)
from graphorch.store.base import CheckpointInfo, RunRecord
from graphorch.types import CheckpointId, RunId

SNAPSHOTS = Path(__file__).parent / "snapshots"
X = "\u00d7"  # the multiplication sign of visit counts
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot not installed")


def assert_snapshot(name: str, text: str) -> None:
    """Compare ``text`` with tests/snapshots/<name> exactly (UPDATE_SNAPSHOTS=1 rewrites)."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing snapshot {path}; run with UPDATE_SNAPSHOTS=1 to create it"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{name} (snapshot)",
                f"{name} (rendered)",
            )
        )
        pytest.fail(f"{name} differs from its snapshot (UPDATE_SNAPSHOTS=1 to accept):\n{diff}")


class Ticket(BaseModel):
    text: str = ""
    category: str | None = None
    ok: bool = False


def _noop(s: Ticket) -> None:
    return None


def is_refund(s: Ticket) -> bool:
    return s.category == "refund"


def billing_agent() -> go.Graph[Ticket, Any]:
    child = go.Graph("billing_agent", state=Ticket)
    child.plan("refund", _noop)
    child.approve("sign_off", roles={"finance"})
    child.end("refunded")
    child.edge(go.START, "refund")
    child.edge("refund", "sign_off")
    child.edge("sign_off", "refunded")
    return child


def support() -> go.Graph[Ticket, Any]:
    """All five node kinds; conditional, default, parallel and backtrack edges."""
    g = go.Graph("support", state=Ticket)
    g.plan("triage", _noop, max_visits=3, description="routes the ticket")
    g.delegate("billing", graph=billing_agent())
    g.tool("file_bug", tool="create_ticket", args=lambda s: {"title": s.text})
    g.tool("notify", tool="send_email")
    g.plan("check", _noop, backtrack="triage")
    g.approve("confirm", approvers={"support-lead"})
    g.end("done")
    g.edge(go.START, "triage")
    g.edge("triage", "billing", when=is_refund)
    g.edge("triage", ["file_bug", "notify"], when=lambda s: s.category == "bug", label="bug")
    g.edge("triage", "check")
    g.edge("billing", "confirm")
    g.edge("file_bug", "check")
    g.edge("notify", "check")
    g.edge("check", "confirm", when=lambda s: s.ok)
    g.edge("check", "done")
    g.edge("confirm", "done")
    return g


# -- static DOT and Mermaid ----------------------------------------------------------


def test_dot_snapshot_with_delegate_expanded() -> None:
    assert_snapshot("support_expanded.dot", to_dot(support(), expand_delegates=True))


def test_dot_snapshot_collapsed() -> None:
    assert_snapshot("support.dot", to_dot(support()))


def test_mermaid_snapshot_with_delegate_expanded() -> None:
    assert_snapshot("support_expanded.mmd", to_mermaid(support(), expand_delegates=True))


def test_dot_draws_each_kind_and_edge_kind_distinctly() -> None:
    dot = to_dot(support())
    shapes = {
        "triage": "box",
        "file_bug": "component",
        "billing": "folder",
        "confirm": "octagon",
        "done": "doublecircle",
    }
    for name, shape in shapes.items():
        assert re.search(rf'^  "{name}" \[.*shape="{shape}"', dot, re.M), name
    fills = set(re.findall(r'fillcolor="(#\w+)"', dot))
    assert len(fills) >= 6  # five kinds and START
    assert '"triage" -> "billing" [label="is_refund"]' in dot  # the predicate's name
    assert '"check" -> "confirm" [label="condition"]' in dot  # an unnamed lambda
    assert '"triage" -> "check" [label="else", style="dashed"]' in dot  # the default
    assert '"confirm" -> "done";' in dot  # a lone unconditional edge stays plain
    assert '"triage" -> "triage/parallel1" [label="bug (parallel)"' in dot
    assert '"triage/parallel1" -> "file_bug";' in dot and '"triage/parallel1" -> "notify";' in dot
    assert re.search(r'"check" -> "triage" \[label="backtrack", style="dotted"', dot)
    assert 'tooltip="routes the ticket"' in dot
    assert "cluster" not in dot


def test_expanded_delegate_is_a_cluster_with_prefixed_ids() -> None:
    dot = to_dot(support(), expand_delegates=True)
    assert 'subgraph "cluster_1" {' in dot
    assert 'label="billing: billing_agent"' in dot
    assert '"billing/refund" -> "billing/sign_off";' in dot
    assert re.search(r'"billing" -> "billing/__start__" \[label="delegates"', dot)


def test_nested_and_recursive_delegates_expand_once_per_level() -> None:
    inner = billing_agent()
    middle = go.Graph("middle", state=Ticket)
    middle.delegate("pay", graph=inner)
    middle.end("ok")
    middle.edge(go.START, "pay").edge("pay", "ok")
    outer = go.Graph("outer", state=Ticket)
    outer.delegate("mid", graph=middle)
    outer.delegate("again", graph=outer)  # delegates to itself: not expanded forever
    outer.end("fin")
    outer.edge(go.START, "mid").edge("mid", "again").edge("again", "fin")
    dot = to_dot(outer, expand_delegates=True)
    assert '"mid/pay/refund" -> "mid/pay/sign_off";' in dot
    assert dot.count("subgraph") == 2
    assert '"again" -> ' in dot and '"again/' not in dot
    mermaid = to_mermaid(outer, expand_delegates=True)
    assert mermaid.count("subgraph ") == 2 and "n_mid_pay_refund" in mermaid


def test_a_node_name_clashing_with_a_prefixed_id_gets_its_own_id() -> None:
    g = go.Graph("clash", state=Ticket)
    g.delegate("billing", graph=billing_agent())
    g.plan("billing/refund", _noop)
    g.end("done")
    g.edge(go.START, "billing").edge("billing", "billing/refund").edge("billing/refund", "done")
    dot = to_dot(g, expand_delegates=True)
    assert '"billing" -> "billing/refund";' in dot  # the top-level node keeps its name
    assert '"billing/refund#2" -> "billing/sign_off";' in dot  # the child's is suffixed


def test_output_is_deterministic_and_accepts_a_frozen_graph() -> None:
    assert to_dot(support()) == to_dot(support()) == to_dot(support().freeze())
    assert to_mermaid(support()) == to_mermaid(support().freeze())


def test_an_invalid_graph_raises_listing_every_problem() -> None:
    g = go.Graph("broken", state=Ticket)
    g.plan("a", _noop)
    g.edge("a", "nowhere")
    for draw in (to_dot, to_mermaid, lambda graph: render(graph, "dot")):
        with pytest.raises(go.GraphDefinitionError) as info:
            draw(g)
        message = str(info.value)
        assert "graph 'broken' has" in message
        assert "unknown node 'nowhere'" in message
        assert "no end node" in message
        assert "nothing leaves START" in message
        assert any("rendering needs a valid graph" in n for n in info.value.__notes__)


NASTY = [
    'say "hi"',
    "back\\slash\\",
    "two\nlines",
    "ünïcødé ✓ 日本",
    "end",
    "a;b|c#d<e>&f`g",
    "[x]{y}(z)",
]


def _nasty() -> go.Graph[Ticket, Any]:
    g = go.Graph('evil "graph"\n', state=Ticket)
    prev = go.START
    for name in NASTY:
        g.plan(name, _noop)
        g.edge(prev, name, when=lambda s: bool(s.ok), label=f'if "{name}" \\ ok')
        g.edge(prev, name)
        prev = name
    g.end("fin")
    g.edge(prev, "fin")
    return g


def test_dot_escapes_quotes_backslashes_newlines_and_keeps_unicode() -> None:
    dot = to_dot(_nasty())
    assert dot.startswith('digraph "evil \\"graph\\"\\n" {')
    assert '"say \\"hi\\"" [label="say \\"hi\\""' in dot
    assert '"back\\\\slash\\\\" [label="back\\\\slash\\\\"' in dot
    assert '"two\\nlines" [label="two\\nlines"' in dot
    assert '"ünïcødé ✓ 日本"' in dot
    assert 'label="if \\"say \\"hi\\"\\" \\\\ ok"' in dot
    # every line is statements of complete quoted strings: nothing left unbalanced
    quoted = re.compile(r'"(?:[^"\\]|\\.)*"')
    for line in dot.splitlines():
        assert '"' not in quoted.sub("", line), line


def test_mermaid_escapes_specials_and_makes_safe_ids() -> None:
    mermaid = to_mermaid(_nasty())
    body = mermaid.split("flowchart TD\n", 1)[1]
    assert mermaid.startswith('---\ntitle: "evil \\"graph\\"\\n"\n---\n')
    assert '"say #34;hi#34;"' in body
    assert '"two<br>lines"' in body
    assert '"a#59;b#124;c#35;d#60;e#62;#38;f#96;g"' in body
    assert '"ünïcødé ✓ 日本"' in body
    declared = re.findall(r"^  (\w+)[(\[{]", body, re.M)
    assert len(declared) == len(set(declared)) == len(NASTY) + 2  # + start and fin
    assert "end" not in declared  # a Mermaid keyword
    for line in body.splitlines():
        # outside quoted labels only ids, arrows and styles remain
        bare = re.sub(r'"[^"]*"', "", line)
        assert re.fullmatch(r"[\w\s(){}\[\]|.>:#,;-]*", bare), line


# -- run overlays --------------------------------------------------------------------


class Count(BaseModel):
    n: int = 0


def looping() -> go.Graph[Count, Any]:
    g = go.Graph("looping", state=Count)

    @g.plan(max_visits=5)
    def work(s: Count) -> dict[str, int]:
        return {"n": s.n + 1}

    g.plan("never", _noop)
    g.end("done", output=lambda s: s.n)
    g.edge(go.START, "work")
    g.edge("work", "work", when=lambda s: s.n < 2, label="again")
    g.edge("work", "never", when=lambda s: s.n > 100, label="huge")
    g.edge("work", "done")
    g.edge("never", "done")
    return g


async def test_overlay_of_a_finished_run_shows_path_counts_and_edges() -> None:
    rt = go.Runtime()
    run = await rt.start(looping(), Count())
    result = await run.wait()
    assert result.status is go.RunStatus.SUCCEEDED
    overlay = await overlay_for(rt, run.id)
    assert overlay.visits == {"work": 2, "done": 1}
    assert overlay.transitions == {
        ("__start__", "work"): 1,
        ("work", "work"): 1,
        ("work", "done"): 1,
    }
    assert overlay.current == () and overlay.failed is None and overlay.seq == overlay.head_seq == 3
    dot = to_dot(looping(), run=overlay)
    assert f"run {run.id} · succeeded · checkpoint 3/3" in dot
    assert re.search(rf'"work" \[label="work {X}2".*color="#2E7D32", penwidth="2"', dot)
    assert re.search(rf'"done" \[label="done {X}1"', dot)
    assert re.search(r'"never" \[label="never".*color="#9E9E9E"', dot)  # not on the path
    assert re.search(r'"work" -> "work" \[label="again", color="#2E7D32".*penwidth="2.5"', dot)
    assert re.search(r'"work" -> "done" \[label="else", style="dashed", color="#2E7D32"', dot)
    assert re.search(r'"work" -> "never" \[label="huge", color="#BDBDBD"', dot)
    mermaid = to_mermaid(looping(), run=overlay)
    assert f'"work {X}2"' in mermaid and "style n_work stroke:#2E7D32" in mermaid
    assert re.search(r"linkStyle [\d,]+ stroke:#2E7D32,stroke-width:3px", mermaid)


async def test_overlay_at_an_earlier_checkpoint_truncates_the_path() -> None:
    rt = go.Runtime()
    run = await rt.start(looping(), Count())
    await run.wait()
    overlay = await overlay_for(rt.store, run.id, at=1)
    assert overlay.status is go.RunStatus.RUNNING
    assert overlay.visits == {"work": 1}
    assert overlay.current == ("work",)
    dot = to_dot(looping(), run=overlay)
    assert "checkpoint 1/3" in dot
    assert re.search(rf'"work" \[label="work {X}1\\n▶ next".*color="#1565C0", penwidth="3"', dot)
    assert re.search(r'"done" \[label="done".*color="#9E9E9E"', dot)
    first = await overlay_for(rt, run.id, at=f"{run.id}:0")  # by checkpoint id
    assert first.visits == {} and first.current == ("work",)
    with pytest.raises(go.CheckpointNotFoundError, match=r"seq 0\.\.3"):
        await overlay_for(rt, run.id, at=9)


async def test_overlay_marks_parallel_branches_through_their_fork() -> None:
    g = go.Graph("fan", state=Count)
    g.plan("a", lambda s: {"n": 1})
    g.plan("b", _noop)
    g.end("done")
    g.edge(go.START, ["a", "b"])
    g.edge("a", "done").edge("b", "done")
    rt = go.Runtime()
    run = await rt.start(g, Count())
    await run.wait()
    dot = to_dot(g, run=await overlay_for(rt, run.id))
    assert re.search(r'"__start__" -> "__start__/parallel1" \[.*color="#2E7D32"', dot)
    assert re.search(r'"__start__/parallel1" -> "b" \[color="#2E7D32"', dot)
    assert re.search(r'"__start__/parallel1" \[.*color="#2E7D32", penwidth="2"', dot)


async def test_overlay_marks_the_failed_node() -> None:
    g = go.Graph("failing", state=Count)

    @g.plan
    def ok(s: Count) -> dict[str, int]:
        return {"n": 1}

    @g.plan
    def boom(s: Count) -> None:
        raise ValueError("no")

    g.end("done")
    g.edge(go.START, "ok").edge("ok", "boom").edge("boom", "done")
    rt = go.Runtime()
    run = await rt.start(g, Count())
    result = await run.wait()
    assert result.status is go.RunStatus.FAILED
    overlay = await overlay_for(rt, run.id)
    assert overlay.failed == "boom" and overlay.current == ()
    dot = to_dot(g, run=overlay)
    assert re.search(r'"boom" \[label="boom\\n✖ failed".*color="#C62828"', dot)
    assert re.search(r'"ok" -> "boom" \[color="#2E7D32"', dot)
    assert "· failed · checkpoint 1/1 · raised ValueError: no" in dot
    mermaid = to_mermaid(g, run=overlay)
    assert "style n_boom fill:#FFCDD2,stroke:#C62828,stroke-width:3px" in mermaid


def test_overlay_marks_a_waiting_node() -> None:
    now = datetime.now(UTC)
    rid = RunId("r1")

    def cp(seq: int, nodes: tuple[str, ...], nxt: tuple[str, ...]) -> CheckpointInfo:
        return CheckpointInfo(
            CheckpointId(f"r1:{seq}"), rid, seq, None, nodes, nxt, go.RunStatus.RUNNING, now
        )

    history = [cp(0, (), ("triage",)), cp(1, ("triage",), ("billing",))]
    history.append(cp(2, ("billing",), ("confirm",)))
    record = RunRecord(
        rid, "support", "x", go.RunStatus.WAITING, "waits for support-lead", None, now, now,
        CheckpointId("r1:2"), 2, ("confirm",),
    )  # fmt: skip
    overlay = RunOverlay.from_history(record, history)
    assert overlay.waiting == ("confirm",) and overlay.current == ()
    dot = to_dot(support(), run=overlay)
    assert re.search(r'"confirm" \[label="confirm\\nby support-lead\\n◔ waiting".*#EF6C00', dot)
    assert re.search(r'"triage" -> "billing" \[label="is_refund", color="#2E7D32"', dot)
    assert_snapshot("support_waiting.dot", dot)
    assert_snapshot("support_waiting.mmd", to_mermaid(support(), run=overlay))
    earlier = RunOverlay.from_history(record, history, at=1)
    assert earlier.current == ("billing",) and earlier.waiting == ()


async def test_overlay_of_an_unknown_run_raises_run_not_found() -> None:
    rt = go.Runtime()
    with pytest.raises(go.RunNotFoundError, match="no run 'nope'"):
        await overlay_for(rt, "nope")
    with pytest.raises(go.RunNotFoundError):
        await overlay_for(rt.store, "nope")


async def test_overlay_of_another_graph_is_refused() -> None:
    rt = go.Runtime()
    run = await rt.start(looping(), Count())
    overlay = await overlay_for(rt, run.id)
    with pytest.raises(RenderError, match="belongs to graph 'looping', not 'support'"):
        to_dot(support(), run=overlay)


# -- files, SVG and PNG ----------------------------------------------------------------


def test_dot_and_mermaid_files_need_no_graphviz(tmp_path: Path) -> None:
    assert render(support(), tmp_path / "g.dot") == tmp_path / "g.dot"
    assert (tmp_path / "g.dot").read_text(encoding="utf-8") == to_dot(support())
    render(support(), tmp_path / "g.mmd", expand_delegates=True)
    expected = to_mermaid(support(), expand_delegates=True)
    assert (tmp_path / "g.mmd").read_text(encoding="utf-8") == expected
    assert render(support(), "mermaid") == to_mermaid(support())
    with pytest.raises(RenderError, match=r"use \.svg, \.png"):
        render(support(), tmp_path / "g.jpeg")


@needs_dot
def test_svg_and_png_through_graphviz(tmp_path: Path) -> None:
    svg = to_svg(support())
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "file_bug" in svg
    assert render(support(), "svg").startswith("<?xml")
    assert to_png(support()).startswith(b"\x89PNG")
    assert render(support(), "png").startswith(b"\x89PNG")
    render(support(), tmp_path / "g.svg", expand_delegates=True)
    assert "billing: billing_agent" in (tmp_path / "g.svg").read_text(encoding="utf-8")
    render(support(), tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")


@needs_dot
def test_graphviz_renders_the_nasty_names(tmp_path: Path) -> None:
    svg = to_svg(_nasty())
    for text in (
        "say &quot;hi&quot;",
        "back\\slash\\",
        "ünïcødé ✓ 日本",
        "a;b|c#d&lt;e&gt;&amp;f`g",
    ):
        assert text in svg, text


@needs_dot
async def test_svg_of_a_run_overlay() -> None:
    rt = go.Runtime()
    run = await rt.start(looping(), Count())
    await run.wait()
    svg = to_svg(looping(), await overlay_for(rt, run.id, at=2))
    assert f"work {X}2" in svg and "checkpoint 2/3" in svg and "▶ next" in svg


def test_missing_dot_is_a_clear_error_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for draw in (lambda: render(support(), "svg"), lambda: to_png(support())):
        with pytest.raises(RenderError) as info:
            draw()
        message = str(info.value)
        assert "`dot` program was not found" in message
        assert "apt-get install graphviz" in message
        assert "brew install graphviz" in message
        assert "https://graphviz.org/download/" in message
        assert "to_dot(graph)" in message
    with pytest.raises(RenderError, match="cannot render SVG"):
        render(support(), tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()
    render(support(), tmp_path / "g.dot")  # DOT still works
    assert isinstance(info.value, go.GraphorchError)
