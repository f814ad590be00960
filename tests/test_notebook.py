"""Notebook display and the stepper: mimebundles with and without `dot`, step, run_until,
back (a fork), history, and plain reprs that never change between identical runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

import graphorch as go
from graphorch import notebook
from graphorch.notebook import Stepper, graph_mimebundle, overlay_from_run, run_mimebundle

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot not installed")


class Doc(BaseModel):
    topic: str
    outline: list[str] = []
    draft: str | None = None
    words: int = 0
    log: Annotated[list[str], go.append] = []


def writer() -> go.Graph[Doc, Any]:
    g = go.Graph("writer", state=Doc)
    g.plan("outline", lambda s: {"outline": [f"{s.topic}: intro", "body"], "log": ["outlined"]})
    g.plan("draft", lambda s: {"draft": " / ".join(s.outline), "log": ["drafted"]})
    g.plan("count", lambda s: {"words": len((s.draft or "").split()), "log": ["counted"]})
    g.end("done", output=lambda s: s.draft)
    g.edge(go.START, "outline").edge("outline", "draft").edge("draft", "count")
    g.edge("count", "done")
    return g


def failing() -> go.Graph[Doc, Any]:
    g = go.Graph("failing", state=Doc)
    g.plan("outline", lambda s: {"log": ["outlined"]})

    @g.plan
    def broken(state: Doc) -> dict[str, Any]:
        raise RuntimeError("the printer is on fire")

    g.end("done")
    g.edge(go.START, "outline").edge("outline", "broken").edge("broken", "done")
    return g


@pytest.fixture
def no_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Graphviz missing: PATH is an empty directory."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("dot") is None


# -- graphs ---------------------------------------------------------------------------


@needs_dot
def test_a_graph_displays_as_svg() -> None:
    g = writer()
    bundle = g._repr_mimebundle_()
    assert bundle["text/plain"] == repr(g)
    assert "<svg" in bundle["image/svg+xml"] and "outline" in bundle["image/svg+xml"]
    assert "text/markdown" not in bundle  # frontends would prefer it to the SVG
    assert g.freeze()._repr_mimebundle_()["text/plain"] == repr(g.freeze())


@pytest.mark.usefixtures("no_dot")
def test_without_dot_a_graph_displays_as_mermaid_with_the_install_hint() -> None:
    bundle = graph_mimebundle(writer())
    assert "image/svg+xml" not in bundle
    md = bundle["text/markdown"]
    assert md.startswith("```mermaid\n") and "flowchart TD" in md
    assert "apt-get install graphviz" in md and "`dot` was not found" in md


def test_an_invalid_graph_displays_its_problems_and_never_raises() -> None:
    g = go.Graph("broken", state=Doc)
    g.plan("a", lambda s: {})
    g.edge("a", "nowhere")
    bundle = graph_mimebundle(g)
    assert bundle["text/plain"].startswith(repr(g))
    assert "nowhere" in bundle["text/plain"]


def test_include_and_exclude_select_mimetypes() -> None:
    g = writer()
    assert list(graph_mimebundle(g, include=["text/plain"])) == ["text/plain"]
    assert "text/plain" not in graph_mimebundle(g, exclude=["text/plain"])


# -- runs, steps, results -------------------------------------------------------------


@needs_dot
async def test_a_run_displays_its_status_path_and_state_as_html() -> None:
    rt = go.Runtime()
    run = await rt.start(writer(), Doc(topic="owls"), run_id="r1")
    await run.step()
    bundle = run._repr_mimebundle_()
    assert (
        bundle["text/plain"] == repr(run) == "<Run r1 graph='writer' running step=1 next=['draft']>"
    )
    page = bundle["text/html"]
    assert "<svg" in page and "run r1 · running · checkpoint 1/1" in page
    assert "<th>status</th>" in page and "<td" in page and "owls: intro" in page
    assert "▶ next" in page  # draft is marked as the next node


@pytest.mark.usefixtures("no_dot")
async def test_without_dot_a_run_displays_as_markdown_with_mermaid() -> None:
    rt = go.Runtime()
    run = await rt.start(writer(), Doc(topic="owls"), run_id="r1")
    await run.wait()
    md = run_mimebundle(run)["text/markdown"]
    assert "| run | graph | status |" in md and "| r1 | writer | succeeded |" in md
    assert "```mermaid" in md and "apt-get install graphviz" in md
    assert "| words | 4 |" in md


async def test_the_overlay_of_a_handle_matches_the_stored_history() -> None:
    rt = go.Runtime()
    run = await rt.start(writer(), Doc(topic="owls"))
    for _ in range(2):
        await run.step()
    assert overlay_from_run(run) == await go.overlay_for(rt, run.id)
    await run.wait()
    assert overlay_from_run(run) == await go.overlay_for(rt, run.id)


async def test_a_failed_run_marks_the_failed_node() -> None:
    rt = go.Runtime()
    run = await rt.start(failing(), Doc(topic="x"))
    result = await run.wait()
    overlay = overlay_from_run(run)
    assert result.status is go.RunStatus.FAILED and overlay.failed == "broken"
    assert overlay.mark("broken") == "failed"
    assert "✖ failed" in go.to_mermaid(run.graph, run=overlay)


async def test_steps_and_results_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notebook, "_has_dot", lambda: False)
    rt = go.Runtime()
    run = await rt.start(writer(), Doc(topic="owls"), run_id="r1")
    step = await run.step()
    bundle = notebook.step_mimebundle(step)
    assert bundle["text/plain"] == (
        "<StepResult step 1 of run r1: ran outline (running), changed outline, log, next draft>"
    )
    assert "| outline | ['owls: intro', 'body'] |" in bundle["text/markdown"]
    result = await run.wait()
    bundle = notebook.result_mimebundle(result)
    assert bundle["text/plain"] == (
        "<RunResult run r1 succeeded after 4 steps output='owls: intro / body' "
        "reason='reached end node done'>"
    )
    assert "| draft | 'owls: intro / body' |" in bundle["text/markdown"]


async def test_a_display_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(notebook, "_has_dot", lambda: True)
    monkeypatch.setattr(notebook, "_draw_svg", explode)
    rt = go.Runtime()
    run = await rt.start(writer(), Doc(topic="owls"))
    bundle = run_mimebundle(run)
    assert bundle == {"text/plain": f"{run!r}\n(display failed: RuntimeError: boom)"}
    monkeypatch.setattr(notebook, "to_svg", explode)
    assert "display failed: RuntimeError: boom" in graph_mimebundle(writer())["text/plain"]


async def test_a_table_of_events_and_dicts() -> None:
    rt = go.Runtime()
    run = await rt.start(writer(), Doc(topic="owls"), run_id="r1")
    await run.wait()
    events = [e for e in await rt.store.list_events(run.id) if isinstance(e, go.StepFinished)]
    view = notebook.table(events, ["node", "changed", "next_nodes"], title="steps")
    assert view.rows[0] == ("outline", "outline, log", "draft")
    assert repr(view).splitlines()[:2] == ["steps", "node | changed | next_nodes"]
    kinds = notebook.table(events[:1]).columns
    assert kinds[0] == "kind" and notebook.table(events[:1]).rows[0][0] == "step_finished"
    loose = notebook.table([{"a": 1}, {"b": None}])
    assert loose.columns == ("a", "b") and loose.rows == (("1", ""), ("", ""))
    empty = notebook.table([], ["a"])._repr_mimebundle_()
    assert "no rows" in (empty.get("text/html") or empty["text/markdown"])


# -- the stepper ----------------------------------------------------------------------


async def test_step_shows_the_state_change_and_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notebook, "_has_dot", lambda: False)
    s = await Stepper.start(go.Runtime(), writer(), Doc(topic="owls"), run_id="r1")
    assert repr(s) == "<Stepper run r1 running step=0 next=['outline']>"
    view = await s.step()
    assert view.changes == (
        ("outline", "[]", "['owls: intro', 'body']"),
        ("log", "[]", "['outlined']"),
    )
    assert repr(view) == (
        "<StepView run r1 step 1: ran outline → running, next draft; changed outline, log>"
    )
    md = view._repr_mimebundle_()["text/markdown"]
    assert "| field | before | after |" in md and "```mermaid" in md
    assert s.state.outline == ["owls: intro", "body"]
    assert s.graph().overlay == await go.overlay_for(s.runtime, "r1")


async def test_run_until_stops_before_the_node_then_runs_it() -> None:
    s = await Stepper.start(go.Runtime(), writer(), Doc(topic="owls"), run_id="r1")
    until = await s.run_until("count")
    assert [st.nodes for st in until.steps] == [("outline",), ("draft",)]
    assert until.stopped == "'count' is next" and s.run.next_nodes == ("count",)
    assert {c[0] for c in until.changes} == {"outline", "draft", "log"}
    again = await s.run_until("count")
    assert [st.nodes for st in again.steps] == [("count",)] and again.stopped == "'count' ran"
    rest = await s.run_until("outline")  # never next again: runs to the end
    assert rest.stopped == "run is succeeded (reached end node done)"
    idle = await s.run_until("done")
    assert idle.steps == () and idle.stopped.startswith("run is succeeded")
    with pytest.raises(go.InputValidationError, match=r"no node 'nope'.*outline, draft"):
        await s.run_until("nope")


async def test_run_until_stops_at_a_failure() -> None:
    s = await Stepper.start(go.Runtime(), failing(), Doc(topic="x"))
    until = await s.run_until("done")
    assert until.stopped.startswith("run is failed") and "printer is on fire" in until.stopped
    assert until.overlay.failed == "broken"
    assert "broken" in repr(until)


async def test_back_forks_from_the_previous_checkpoint_and_leaves_the_run_intact() -> None:
    rt = go.Runtime()
    s = await Stepper.start(rt, writer(), Doc(topic="owls"), run_id="r1")
    await s.run_until("count")  # outline, draft ran; seq 2
    back = await s.back()
    assert back.left_run == "r1" and back.left_seq == 2 and back.forked_from == "r1:1"
    assert s.run.id == back.new_run != "r1" and s.runs == ["r1", back.new_run]
    assert s.run.next_nodes == ("draft",) and s.state.draft is None
    assert "left intact" in repr(back) and "now following fork" in repr(back)
    original = await rt.get_run("r1")
    assert original.seq == 2 and original.next_nodes == ("count",)
    assert (await rt.state_at("r1")).draft == "owls: intro / body"
    # the fork's drawing includes the path taken before the fork
    assert back.overlay.visits == {"outline": 1} and back.overlay.current == ("draft",)
    # a second step back goes past the fork's first checkpoint into the original run
    back2 = await s.back()
    assert back2.forked_from == "r1:0" and s.run.next_nodes == ("outline",)
    assert len(s.runs) == 3
    with pytest.raises(go.CheckpointNotFoundError, match="first checkpoint"):
        await s.back()
    # and the new branch runs to its own end
    await s.run_until("done")
    await s.run_until("done")
    assert s.status is go.RunStatus.SUCCEEDED and s.state.words == 4


async def test_back_after_a_patch_free_fork_keeps_history_across_runs() -> None:
    rt = go.Runtime()
    s = await Stepper.start(rt, writer(), Doc(topic="owls"), run_id="r1")
    await s.run_until("done")
    await s.back()
    await s.step()
    history = await s.history()
    runs = [run for run, _ in history.checkpoints]
    assert runs == ["r1", "r1", "r1", s.run.id, s.run.id]
    assert [cp.nodes for _, cp in history.checkpoints] == [
        (),
        ("outline",),
        ("draft",),
        (),
        ("count",),
    ]
    assert repr(history) == (
        f"<HistoryView run {s.run.id}: 5 checkpoints; ran outline → draft → count>"
    )
    page = history._repr_mimebundle_()
    body = page.get("text/html") or page["text/markdown"]
    assert "forked from" in body and "(fork of r1:2)" in body


async def test_history_of_a_plain_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notebook, "_has_dot", lambda: False)
    s = await Stepper.start(go.Runtime(), writer(), Doc(topic="owls"), run_id="r1")
    await s.step()
    md = (await s.history())._repr_mimebundle_()["text/markdown"]
    assert "| seq | ran | next | status | time | changed |" in md
    assert "| 1 | outline | draft | running |" in md and "outline, log |" in md


async def test_the_stepper_displays_itself_and_its_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notebook, "_has_dot", lambda: False)
    rt = go.Runtime()
    run = await rt.start(writer(), Doc(topic="owls"), run_id="r1")
    s = Stepper(rt, run)  # wrapping a handle: the display works before any await
    assert "| r1 | writer | running | 0 |" in s._repr_mimebundle_()["text/markdown"]
    await s.step()
    await s.back()
    assert repr(s) == f"<Stepper run {s.run.id} (fork 1 of r1) running step=0 next=['outline']>"
    assert f"runs followed: r1 → {s.run.id}" in s._repr_mimebundle_()["text/markdown"]


async def test_reprs_are_the_same_for_identical_runs() -> None:
    def reprs(s: Stepper, *views: Any) -> list[str]:
        return [repr(s), *map(repr, views), run_mimebundle(s.run)["text/plain"]]

    seen: list[list[str]] = []
    for _ in range(2):
        s = await Stepper.start(go.Runtime(), writer(), Doc(topic="owls"), run_id="same")
        views = [await s.step(), await s.run_until("done"), await s.history()]
        seen.append(reprs(s, *views))
    assert seen[0] == seen[1]
