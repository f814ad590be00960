"""Jupyter display and a stepper: graphs and runs inline, one step at a time.

Graphs and run handles display themselves in Jupyter (their ``_repr_mimebundle_``
calls :func:`graph_mimebundle` and :func:`run_mimebundle`): an SVG drawn by Graphviz's
``dot`` when it is installed, else the Mermaid text with the install hint. Displaying
never raises; a plain ``repr`` is always there and never changes between runs.

:class:`Stepper` steps a run from a notebook with top-level ``await``::

    s = await Stepper.start(runtime, graph, Ticket(text="refund me"))
    await s.step()              # one step: the state change as a table, the graph
    await s.run_until("done")   # steps until "done" is next (or ran)
    await s.back()              # fork from the previous checkpoint and follow the fork
    await s.history()           # the checkpoints that led here

Nothing here imports IPython: every display is a plain mimebundle dict.
"""

from __future__ import annotations

import dataclasses
import enum
import html
import reprlib
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from ._record import Record, replace
from .diagrams import INSTALL_HINT, RenderError, RunOverlay, to_mermaid, to_svg
from .exceptions import CheckpointNotFoundError, GraphorchError, InputValidationError
from .graph import START, FrozenGraph, Graph
from .types import RunStatus

if TYPE_CHECKING:
    from .runs import Run, RunResult, StepResult
    from .runtime import Runtime
    from .store.base import CheckpointInfo, RunRecord

__all__ = [
    "BackView",
    "GraphView",
    "HistoryView",
    "RunUntilView",
    "StepView",
    "Stepper",
    "TableView",
    "graph_mimebundle",
    "overlay_from_run",
    "result_mimebundle",
    "run_mimebundle",
    "step_mimebundle",
    "table",
]

GraphLike = Graph[Any, Any] | FrozenGraph[Any, Any]
Bundle = dict[str, Any]

_NO_DOT_NOTE = (
    "Graphviz's `dot` was not found, so this is the Mermaid text (JupyterLab 4.1+ and "
    f"GitHub draw it). For an SVG: {INSTALL_HINT}."
)
_DASH = "-"  # an empty cell
_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 8
_REPR.maxlevel = 3


# -- the blocks a display is made of ---------------------------------------------------


@dataclass(frozen=True)
class _Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str | None = None
    empty: str = "(nothing)"


@dataclass(frozen=True)
class _Picture:
    graph: GraphLike
    overlay: RunOverlay | None = None


_Block = str | _Table | _Picture  # a str is a line of text


def _fmt(value: Any) -> str:
    """A short, deterministic text for a value in a table cell."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    try:
        return _REPR.repr(value)
    except Exception:  # a value whose repr fails must not break the display
        return f"<{type(value).__name__}>"


def _row(*values: object) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in values)


def _nodes(names: Iterable[str]) -> str:
    return ", ".join(names) or _DASH


def _state_table(state: Any, title: str = "state") -> _Table:
    return _Table(("field", "value"), tuple((k, _fmt(v)) for k, v in _fields(state).items()), title)


def _fields(item: Any) -> dict[str, Any]:
    """A state, an event, a record or a mapping as ``{name: value}``."""
    if isinstance(item, BaseModel):
        return {name: getattr(item, name) for name in type(item).model_fields}
    if isinstance(item, Record) or (dataclasses.is_dataclass(item) and not isinstance(item, type)):
        names = (
            item.__fields__
            if isinstance(item, Record)
            else tuple(f.name for f in dataclasses.fields(item))
        )
        row = {name: getattr(item, name) for name in names}
        kind = getattr(item, "kind", None)  # an event's kind is a class attribute
        return {"kind": kind, **row} if isinstance(kind, str) and "kind" not in row else row
    if isinstance(item, Mapping):
        items = cast(Mapping[Any, Any], item)
        return {str(k): v for k, v in items.items()}
    return {"value": item}


def _svg_body(svg: str) -> str:
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _html_table(t: _Table) -> str:
    out: list[str] = []
    if t.title:
        out.append(f"<p><b>{html.escape(t.title, quote=False)}</b></p>")
    if not t.rows:
        out.append(f"<p><i>{html.escape(t.empty, quote=False)}</i></p>")
        return "\n".join(out)
    out.append('<table class="graphorch">')
    heads = "".join(f"<th>{html.escape(h, quote=False)}</th>" for h in t.headers)
    out.append(f"<thead><tr>{heads}</tr></thead><tbody>")
    for row in t.rows:
        cells = "".join(
            f'<td style="text-align:left">{html.escape(c, quote=False)}</td>' for c in row
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>") or " "


def _md_table(t: _Table) -> str:
    out: list[str] = []
    if t.title:
        out.append(f"**{t.title}**\n")
    if not t.rows:
        out.append(f"*{t.empty}*")
        return "\n".join(out)
    out.append("| " + " | ".join(_md_cell(h) for h in t.headers) + " |")
    out.append("|" + "---|" * len(t.headers))
    out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows)
    return "\n".join(out)


def _draw_svg(p: _Picture) -> str:
    try:
        return f'<div class="graphorch-graph">{_svg_body(to_svg(p.graph, p.overlay))}</div>'
    except GraphorchError as err:  # dot failed, or the graph is invalid: say why
        return f"<pre>{html.escape(str(err), quote=False)}</pre>"


def _draw_mermaid(p: _Picture) -> str:
    try:
        return f"```mermaid\n{to_mermaid(p.graph, run=p.overlay)}```"
    except GraphorchError as err:
        return f"```text\n{err}\n```"


def _html_block(b: _Block) -> str:
    if isinstance(b, _Table):
        return _html_table(b)
    return _draw_svg(b) if isinstance(b, _Picture) else f"<p>{html.escape(b, quote=False)}</p>"


def _md_block(b: _Block) -> str:
    if isinstance(b, _Table):
        return _md_table(b)
    return _draw_mermaid(b) if isinstance(b, _Picture) else b.replace("\n", "  \n")


def _has_dot() -> bool:
    return shutil.which("dot") is not None


def _bundle(blocks: Sequence[_Block], plain: str, include: Any, exclude: Any) -> Bundle:
    """HTML (tables and inline SVG) when ``dot`` exists, else Markdown with Mermaid."""
    data: Bundle = {"text/plain": plain}
    try:
        if _has_dot():
            parts = [_html_block(b) for b in blocks]
            data["text/html"] = "<div>\n" + "\n".join(parts) + "\n</div>"
        else:
            parts = [_md_block(b) for b in blocks]
            if any(isinstance(b, _Picture) for b in blocks):
                parts.append(f"*{_NO_DOT_NOTE}*")
            data["text/markdown"] = "\n\n".join(parts) + "\n"
    except Exception as exc:  # a display never raises; the plain text is enough
        data["text/plain"] = f"{plain}\n(display failed: {type(exc).__name__}: {exc})"
    return _select(data, include, exclude)


def _select(data: Bundle, include: Any, exclude: Any) -> Bundle:
    if include:
        wanted = set(include)  # pyright: ignore[reportUnknownArgumentType]
        data = {k: v for k, v in data.items() if k in wanted}
    if exclude:
        unwanted = set(exclude)  # pyright: ignore[reportUnknownArgumentType]
        data = {k: v for k, v in data.items() if k not in unwanted}
    return data


# -- displays of the core objects -------------------------------------------------------


def graph_mimebundle(graph: GraphLike, include: Any = None, exclude: Any = None) -> Bundle:
    """The rich display of a graph: its SVG, or its Mermaid text when ``dot`` is missing.

    Never raises: an invalid graph shows its problems as text.
    """
    plain = repr(graph)
    data: Bundle = {"text/plain": plain}
    try:
        try:
            if not _has_dot():
                raise RenderError("no dot")
            data["image/svg+xml"] = to_svg(graph)
        except RenderError:  # Mermaid needs nothing installed
            data["text/markdown"] = f"```mermaid\n{to_mermaid(graph)}```\n\n*{_NO_DOT_NOTE}*\n"
    except Exception as exc:  # a display never raises: an invalid graph lists its problems
        known = isinstance(exc, GraphorchError)
        why = str(exc) if known else f"(display failed: {type(exc).__name__}: {exc})"
        data = {"text/plain": f"{plain}\n{why}"}
    return _select(data, include, exclude)


def overlay_from_run(run: Run[Any]) -> RunOverlay:
    """The overlay of a run handle from what it holds in memory (no store access).

    Visits, the next nodes, a failed or waiting node are exact. Which routes were
    taken is inferred from the visit counts (a route counts when both its ends ran);
    :func:`graphorch.overlay_for` reads the exact path from the store.
    """
    status = run.status
    current: tuple[str, ...] = run.next_nodes if status is RunStatus.RUNNING else ()
    waiting: tuple[str, ...] = ()
    failed: str | None = None
    if status is RunStatus.WAITING:
        waiting = run.next_nodes or ((run.error_node,) if run.error_node else ())
    elif status in (RunStatus.FAILED, RunStatus.NEEDS_ATTENTION):
        failed = run.error_node
    reached = {*current, *waiting, *((failed,) if failed else ())}
    return RunOverlay(
        run_id=run.id,
        graph=run.graph.name,
        status=status,
        seq=run.seq,
        head_seq=run.seq,
        visits=dict(run.visits),
        transitions=_routes(run.graph, run.visits, reached),
        current=current,
        failed=failed,
        waiting=waiting,
        reason=run.reason,
    )


def _routes(
    graph: FrozenGraph[Any, Any], visits: Mapping[str, int], reached: set[str]
) -> dict[tuple[str, str], int]:
    def count(node: str) -> int:
        return visits.get(node, 0) + (node in reached)

    routes: dict[tuple[str, str], int] = {}
    for source, edges in graph.edges.items():
        ran = 1 if source == START else visits.get(source, 0)
        for edge in edges:
            for target in edge.targets:
                if ran and count(target):
                    routes[(source, target)] = min(ran, count(target))
    for name, node in graph.nodes.items():
        for target in node.backtrack:  # a backtrack target ran before and after
            if visits.get(name, 0) and count(target) > 1:
                routes[(name, target)] = min(visits[name], count(target) - 1)
    return routes


def _status_table(run: Run[Any]) -> _Table:
    headers = ("run", "graph", "status", "step", "checkpoint", "next", "reason")
    row = _row(run.id, run.graph.name, run.status.value, run.steps, run.seq, _nodes(run.next_nodes))
    return _Table(headers, ((*row, run.reason or ""),))


def run_mimebundle(run: Run[Any], include: Any = None, exclude: Any = None) -> Bundle:
    """The rich display of a run handle: its status, the graph with its path, its state."""
    try:
        blocks: list[_Block] = [
            _status_table(run),
            _Picture(run.graph, overlay_from_run(run)),
            _state_table(run.state),
        ]
    except Exception as exc:  # a display never raises
        return {"text/plain": f"{run!r}\n(display failed: {type(exc).__name__}: {exc})"}
    return _bundle(blocks, repr(run), include, exclude)


def _step_text(step: StepResult) -> str:
    changed = ", ".join(step.changes) or "nothing"
    text = f"<StepResult step {step.step} of run {step.run_id}: ran {_nodes(step.nodes)}"
    text += f" ({step.status.value}), changed {changed}, next {_nodes(step.next_nodes)}"
    if step.error is not None:
        text += f", error {type(step.error).__name__}"
    return text + ">"


def step_mimebundle(step: StepResult, include: Any = None, exclude: Any = None) -> Bundle:
    """The rich display of a :class:`~graphorch.StepResult`: what ran and what changed."""
    head = ("step", "ran", "status", "next", "checkpoint")
    row = _row(
        step.step, _nodes(step.nodes), step.status.value, _nodes(step.next_nodes), step.checkpoint
    )
    blocks: list[_Block] = [_Table(head, (row,))]
    if step.error is not None:
        blocks.append(f"{type(step.error).__name__}: {step.error}")
    changes = tuple((k, _fmt(v)) for k, v in step.changes.items())
    blocks.append(_Table(("field", "new value"), changes, "changes", "no field changed"))
    return _bundle(blocks, _step_text(step), include, exclude)


def _result_text(result: RunResult[Any]) -> str:
    text = f"<RunResult run {result.run_id} {result.status.value} after {result.steps} steps"
    if result.output is not None:
        text += f" output={_fmt(result.output)}"
    if result.reason:
        text += f" reason={result.reason!r}"
    return text + ">"


def result_mimebundle(result: RunResult[Any], include: Any = None, exclude: Any = None) -> Bundle:
    """The rich display of a :class:`~graphorch.RunResult`: status, output and state."""
    head = ("run", "status", "steps", "node", "reason", "output")
    row = _row(result.run_id, result.status.value, result.steps, result.node, result.reason)
    row = (*row, _fmt(result.output))
    blocks: list[_Block] = [_Table(head, (row,)), _state_table(result.state)]
    return _bundle(blocks, _result_text(result), include, exclude)


# -- views: what the stepper and table() return -----------------------------------------


class _View:
    """Something that displays itself in Jupyter and has a one-line plain repr."""

    def _blocks(self) -> list[_Block]:  # pragma: no cover - every view overrides it
        raise NotImplementedError

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        try:
            blocks = self._blocks()
        except Exception as exc:  # a display never raises
            return {"text/plain": f"{self!r}\n(display failed: {type(exc).__name__}: {exc})"}
        return _bundle(blocks, repr(self), include, exclude)


@dataclass(frozen=True, repr=False)
class TableView(_View):
    """Rows shown as a table (see :func:`table`)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str | None = None

    def _blocks(self) -> list[_Block]:
        return [_Table(self.columns, self.rows, self.title, "no rows")]

    def __repr__(self) -> str:
        lines = [self.title] if self.title else []
        lines.append(" | ".join(self.columns))
        lines.extend(" | ".join(row) for row in self.rows)
        return "\n".join(lines)


def table(
    rows: Iterable[Any], columns: Sequence[str] | None = None, *, title: str | None = None
) -> TableView:
    """Show rows (mappings, dataclasses such as events, or pydantic models) as a table.

    Args:
        rows: the rows.
        columns: the columns to show, in order (default: every key, first seen first).
        title: a heading.
    """
    dicts = [_fields(r) for r in rows]
    cols = list(dict.fromkeys(k for d in dicts for k in d)) if columns is None else list(columns)
    cells = tuple(
        tuple(_cell(d.get(c)) if c in d else "" for c in cols)  # missing keys stay blank
        for d in dicts
    )
    return TableView(tuple(cols), cells, title)


def _cell(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):  # pyright: ignore[reportUnknownVariableType]
        return ", ".join(cast(Sequence[str], value))
    return _fmt(value)


@dataclass(frozen=True, repr=False)
class GraphView(_View):
    """A graph with a run's progress drawn on it."""

    graph: GraphLike
    overlay: RunOverlay | None = None

    def _blocks(self) -> list[_Block]:
        return [_Picture(self.graph, self.overlay)]

    def __repr__(self) -> str:
        where = f" {self.overlay.caption}" if self.overlay is not None else ""
        return f"<GraphView {self.graph.name!r}{where}>"


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    rows: list[tuple[str, str, str]] = []
    for name, new in after.items():
        old = before.get(name)
        try:
            same = bool(old == new) and name in before
        except Exception:  # values that cannot be compared count as changed
            same = False
        if not same:
            rows.append((name, _fmt(old) if name in before else _DASH, _fmt(new)))
    return tuple(rows)


def _snapshot(state: Any) -> dict[str, Any]:
    if isinstance(state, BaseModel):
        return state.model_dump()  # a deep copy: later steps cannot change it
    return _fields(state)


_CHANGE_HEADERS = ("field", "before", "after")


@dataclass(frozen=True, repr=False)
class StepView(_View):
    """One step taken by a :class:`Stepper`: what ran, the state change, the graph.

    Attributes:
        result: the core's :class:`~graphorch.StepResult`.
        changes: ``(field, before, after)`` for every field the step changed.
        overlay: the run's progress after the step.
        graph: the run's graph.
    """

    result: StepResult
    changes: tuple[tuple[str, str, str], ...]
    overlay: RunOverlay
    graph: FrozenGraph[Any, Any]

    @property
    def status(self) -> RunStatus:
        """The run's status after the step."""
        return self.result.status

    def _blocks(self) -> list[_Block]:
        error = self.result.error
        return [
            self._headline() + (f"; {type(error).__name__}: {error}" if error else ""),
            _Table(_CHANGE_HEADERS, self.changes, "state change", "no field changed"),
            _Picture(self.graph, self.overlay),
        ]

    def _headline(self) -> str:
        r = self.result
        text = f"step {r.step}: ran {_nodes(r.nodes)} → {r.status.value}"
        return text + (f", next {_nodes(r.next_nodes)}" if r.next_nodes else "")

    def __repr__(self) -> str:
        changed = ", ".join(c[0] for c in self.changes) or "nothing"
        return f"<StepView run {self.result.run_id} {self._headline()}; changed {changed}>"


@dataclass(frozen=True, repr=False)
class RunUntilView(_View):
    """The steps :meth:`Stepper.run_until` took, why it stopped, the overall change."""

    run_id: str
    target: str
    steps: tuple[StepResult, ...]
    stopped: str
    changes: tuple[tuple[str, str, str], ...]
    overlay: RunOverlay
    graph: FrozenGraph[Any, Any]

    def _blocks(self) -> list[_Block]:
        rows = tuple(
            (str(s.step), _nodes(s.nodes), ", ".join(s.changes) or _DASH, s.status.value)
            for s in self.steps
        )
        return [
            f"{len(self.steps)} step(s); stopped: {self.stopped}",
            _Table(("step", "ran", "changed", "status"), rows, "steps", "no step taken"),
            _Table(_CHANGE_HEADERS, self.changes, "state change", "no field changed"),
            _Picture(self.graph, self.overlay),
        ]

    def __repr__(self) -> str:
        ran = " → ".join(_nodes(s.nodes) for s in self.steps) or "nothing"
        return (
            f"<RunUntilView run {self.run_id} until {self.target!r}: ran {ran}; "
            f"stopped: {self.stopped}>"
        )


@dataclass(frozen=True, repr=False)
class BackView(_View):
    """A step back: the fork the stepper now follows, and the run it left intact."""

    left_run: str
    left_seq: int
    new_run: str
    forked_from: str
    state: Any
    overlay: RunOverlay
    graph: FrozenGraph[Any, Any]

    def _blocks(self) -> list[_Block]:
        return [
            self._summary(),
            f"run {self.left_run} is left intact at checkpoint {self.left_seq} "
            f"(runtime.resume({self.left_run!r}) picks it up again).",
            _state_table(self.state, "state now"),
            _Picture(self.graph, self.overlay),
        ]

    def _summary(self) -> str:
        return (
            f"stepped back: now following fork {self.new_run}, forked from checkpoint "
            f"{self.forked_from}; next {_nodes(self.overlay.current)}"
        )

    def __repr__(self) -> str:
        return f"<BackView {self._summary()}; run {self.left_run} left intact>"


@dataclass(frozen=True, repr=False)
class HistoryView(_View):
    """The checkpoints that led to the stepper's run, oldest first, across its forks.

    Attributes:
        run_id: the run now followed.
        checkpoints: ``(run, checkpoint)`` pairs; earlier runs are the ones it was
            forked from.
    """

    run_id: str
    checkpoints: tuple[tuple[str, CheckpointInfo], ...]

    def _blocks(self) -> list[_Block]:
        many = len({run for run, _ in self.checkpoints}) > 1
        head = ("run", "seq", "ran", "next", "status", "time", "changed")
        rows = tuple(
            (
                run,
                str(cp.seq),
                _nodes(cp.nodes) if cp.nodes else _first(cp),
                _nodes(cp.next_nodes),
                cp.status.value,
                cp.created_at.strftime("%H:%M:%S"),
                ", ".join(cp.changed) or _DASH,
            )[0 if many else 1 :]
            for run, cp in self.checkpoints
        )
        blocks: list[_Block] = [
            _Table(head[0 if many else 1 :], rows, f"history of run {self.run_id}")
        ]
        if many:
            blocks.append("Earlier rows belong to the runs this one was forked from.")
        return blocks

    def __repr__(self) -> str:
        path = " → ".join(_nodes(cp.nodes) for _, cp in self.checkpoints if cp.nodes) or _DASH
        return f"<HistoryView run {self.run_id}: {len(self.checkpoints)} checkpoints; ran {path}>"


def _first(cp: CheckpointInfo) -> str:
    return f"(fork of {cp.parent})" if cp.parent else "(start)"


# -- the stepper -----------------------------------------------------------------------


def _split_checkpoint(checkpoint: str) -> tuple[str, int]:
    run, _, seq = checkpoint.rpartition(":")
    return run, int(seq)


async def _lineage(
    runtime: Runtime, run_id: str
) -> tuple[RunRecord, list[tuple[str, CheckpointInfo]]]:
    """A run's record and its checkpoints, preceded by those of the runs it was forked from."""
    record = await runtime.get_run(run_id)
    chain = [(str(record.run_id), cp) for cp in await runtime.history(run_id)]
    source = record.forked_from
    for _ in range(1000):  # a fork of a fork of ...; bounded against a cycle
        if source is None:
            break
        parent_id, seq = _split_checkpoint(source)
        parent = await runtime.get_run(parent_id)
        before = [(parent_id, cp) for cp in await runtime.history(parent_id) if cp.seq <= seq]
        chain = before + chain  # then the fork's first checkpoint: where it branched off
        source = parent.forked_from
    return record, chain


async def _exact_overlay(runtime: Runtime, run_id: str) -> RunOverlay:
    record, chain = await _lineage(runtime, run_id)
    numbered = [replace(cp, seq=i) for i, (_, cp) in enumerate(chain)]
    overlay = RunOverlay.from_history(replace(record, forked_from=None), numbered)
    return replace(overlay, seq=record.seq, head_seq=record.seq)


class Stepper:
    """Step through a run from a notebook: one step, until a node, back, history.

    Every method that touches the store is async (top-level ``await`` in Jupyter);
    each returns a view that displays itself. Stepping back forks the run from the
    previous checkpoint and follows the fork; the run it leaves stays as it was.

    Args:
        runtime: the runtime the run belongs to.
        run: the run handle to step (from ``runtime.start``, ``resume`` or ``fork``).

    Attributes:
        runtime: the runtime.
        run: the run handle followed now (a new one after :meth:`back`).
        runs: the ids of every run followed, oldest first.
    """

    def __init__(self, runtime: Runtime, run: Run[Any]) -> None:
        self.runtime = runtime
        self.run = run
        self.runs: list[str] = [str(run.id)]
        self._overlay: RunOverlay | None = None  # exact, read from the store

    @classmethod
    async def start(cls, runtime: Runtime, graph: GraphLike, input: Any, **options: Any) -> Stepper:
        """Start a run of ``graph`` with ``input`` (``options`` go to ``runtime.start``)."""
        run = await runtime.start(graph, input, **options)
        stepper = cls(runtime, run)
        await stepper._refresh()
        return stepper

    @property
    def state(self) -> Any:
        """The current state."""
        return self.run.state

    @property
    def status(self) -> RunStatus:
        """The followed run's status."""
        return self.run.status

    @property
    def overlay(self) -> RunOverlay:
        """The run's progress now (exact once an awaited call read the store)."""
        cached, run = self._overlay, self.run
        if cached and (cached.run_id, cached.seq, cached.status) == (run.id, run.seq, run.status):
            return cached
        return overlay_from_run(run)

    async def _refresh(self) -> RunOverlay:
        try:
            self._overlay = await _exact_overlay(self.runtime, self.run.id)
        except GraphorchError:  # e.g. pruned history: the handle's own data will do
            self._overlay = None
        return self.overlay

    async def step(self) -> StepView:
        """Take one step; the view shows the state change and the highlighted graph.

        Raises:
            RunNotActiveError: the run has stopped or waits for a person.
        """
        before = _snapshot(self.run.state)
        result = await self.run.step()
        overlay = await self._refresh()
        return StepView(result, _diff(before, _snapshot(self.run.state)), overlay, self.run.graph)

    async def run_until(self, node: str, *, max_steps: int = 1000) -> RunUntilView:
        """Step until ``node`` is next, or ran (when it was next already).

        Stops early when the run ends, waits for a person or fails, or after
        ``max_steps`` steps. Takes at least one step while the run is active.

        Raises:
            InputValidationError: the graph has no such node.
        """
        graph = self.run.graph
        if node not in graph.nodes:
            raise InputValidationError(
                f"graph {graph.name!r} has no node {node!r}; its nodes: {', '.join(graph.nodes)}"
            )
        before = _snapshot(self.run.state)
        taken: list[StepResult] = []
        stopped = ""
        while not stopped:
            if not self.run.active:
                why = f" ({self.run.reason})" if self.run.reason else ""
                stopped = f"run is {self.run.status.value}{why}"
            elif len(taken) >= max_steps:
                stopped = f"took max_steps={max_steps} steps"
            else:
                result = await self.run.step()
                taken.append(result)
                if node in result.nodes:
                    stopped = f"{node!r} ran"
                elif node in self.run.next_nodes:
                    stopped = f"{node!r} is next"
        overlay = await self._refresh()
        changes = _diff(before, _snapshot(self.run.state))
        return RunUntilView(self.run.id, node, tuple(taken), stopped, changes, overlay, graph)

    async def _previous(self) -> tuple[str, int]:
        """The checkpoint before the current one, following forks back to their source."""
        run_id, seq = str(self.run.id), self.run.seq
        for _ in range(1000):
            if seq > 0:
                return run_id, seq - 1
            source = (await self.runtime.get_run(run_id)).forked_from
            if source is None:
                break
            run_id, seq = _split_checkpoint(source)
        raise CheckpointNotFoundError(
            f"run {self.run.id} is at its first checkpoint; there is no step to go back to"
        )

    async def back(self) -> BackView:
        """Step back: fork from the previous checkpoint and follow the fork.

        The run left behind is not changed; its id stays in :attr:`runs`.

        Raises:
            CheckpointNotFoundError: the run is at its very first checkpoint.
        """
        source, seq = await self._previous()
        left = self.run
        fork = await self.runtime.fork(source, at=seq, graph=left.graph)
        self.run = fork
        self.runs.append(str(fork.id))
        overlay = await self._refresh()
        return BackView(
            left_run=left.id,
            left_seq=left.seq,
            new_run=fork.id,
            forked_from=f"{source}:{seq}",
            state=fork.state,
            overlay=overlay,
            graph=fork.graph,
        )

    async def history(self) -> HistoryView:
        """The checkpoints that led here (those of the runs it was forked from first)."""
        _, chain = await _lineage(self.runtime, self.run.id)
        await self._refresh()
        return HistoryView(self.run.id, tuple(chain))

    def graph(self) -> GraphView:
        """The graph with the run's progress at the current point."""
        return GraphView(self.run.graph, self.overlay)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        try:
            blocks: list[_Block] = [
                _status_table(self.run),
                _Picture(self.run.graph, self.overlay),
                _state_table(self.run.state),
            ]
            if len(self.runs) > 1:
                blocks.insert(1, "runs followed: " + " → ".join(self.runs))
        except Exception as exc:  # a display never raises
            return {"text/plain": f"{self!r}\n(display failed: {type(exc).__name__}: {exc})"}
        return _bundle(blocks, repr(self), include, exclude)

    def __repr__(self) -> str:
        run = self.run
        where = f" next={list(run.next_nodes)}" if run.next_nodes else ""
        forks = f" (fork {len(self.runs) - 1} of {self.runs[0]})" if len(self.runs) > 1 else ""
        return f"<Stepper run {run.id}{forks} {run.status.value} step={run.steps}{where}>"
