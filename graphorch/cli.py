"""The ``graphorch`` command: run the demos, start, inspect, resume, fork, approve,
render, audit and prune runs stored in a SQLite database.

Also available as ``python -m graphorch``. See ``graphorch --help`` for the exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
from pydantic import BaseModel

import graphorch as go
from graphorch._cli_format import (
    approval_data,
    audit_row_data,
    checkpoint_data,
    dumps,
    event_summary,
    result_data,
    run_data,
    short,
    table,
)
from graphorch._cli_target import CliError, Target, load_target, lookup, remember
from graphorch.examples._demo import drive
from graphorch.types import RunId

__all__ = ["EXIT_ATTENTION", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "EXIT_WAITING", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WAITING = 3
EXIT_ATTENTION = 4

EPILOG = """\
exit codes:
  0  succeeded (or the command did what it was asked)
  1  the run failed or was cancelled; audit --verify found a tampered log
  2  usage or input error: unknown run, malformed JSON, a module that does not
     import, a missing database, a person not allowed to approve
  3  the run is waiting for approval
  4  the run needs attention (a tool call's outcome is unknown after a crash)

database: --db PATH, else $GRAPHORCH_DB, else ./graphorch.db
first steps: graphorch demo; graphorch runs; graphorch show RUN_ID
"""

_STATUS_CODES = {
    go.RunStatus.SUCCEEDED: EXIT_OK,
    go.RunStatus.RUNNING: EXIT_OK,
    go.RunStatus.FAILED: EXIT_FAILED,
    go.RunStatus.CANCELLED: EXIT_FAILED,
    go.RunStatus.WAITING: EXIT_WAITING,
    go.RunStatus.NEEDS_ATTENTION: EXIT_ATTENTION,
}


def default_db() -> str:
    """``$GRAPHORCH_DB``, else ``graphorch.db``."""
    return os.environ.get("GRAPHORCH_DB") or "graphorch.db"


@dataclass
class Cli:
    """One invocation: its arguments and how it prints."""

    args: argparse.Namespace

    @property
    def db(self) -> str:
        return str(self.args.db or default_db())

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    def out(self, text: str = "") -> None:
        print(text, flush=True)

    def data(self, value: Any) -> None:
        print(dumps(value), flush=True)

    def progress(self, line: str) -> None:
        if not self.args.quiet:
            print(line, file=sys.stderr, flush=True)

    def require_db(self) -> None:
        if not Path(self.db).is_file():
            raise CliError(
                f"no database at {self.db}",
                "start a run first (`graphorch demo`), or point --db / $GRAPHORCH_DB at one",
            )

    def store(self) -> go.SQLiteStore:
        return go.SQLiteStore(self.db)


# -- shared steps -----------------------------------------------------------------------


def _runtime(store: go.Store, target: Target | None) -> go.Runtime:
    if target is None:
        return go.Runtime(store)
    return go.Runtime(
        store,
        graphs=[target.graph, *target.children.values()],
        tools=target.tools,
        guardrails=target.guardrails,
        roles_of=target.roles_of,
        model=target.model,
    )


async def _resolve(cli: Cli, store: go.Store, run_id: str) -> Target:
    """The graph a stored run needs, from ``--graph``, the recorded import path of its
    (root) graph, or the built-in examples."""
    record = await store.get_run(RunId(run_id))
    spec: str | None = cli.args.graph
    # the runtime checks the structure where a run needs it (skipped for an unchanged
    # graph on resume), so loading leaves it unchecked
    if spec is not None:
        return load_target(spec, check=False)
    chain = [record]
    while chain[-1].parent_run is not None:
        chain.append(await store.get_run(chain[-1].parent_run))
    for rec in reversed(chain):  # the root first: it knows its children
        found = lookup(cli.db, rec.graph)
        if found is not None:
            return load_target(found, check=False)
    raise CliError(
        f"run {run_id} belongs to graph {record.graph!r}, whose import path this database "
        f"does not know",
        "pass --graph MODULE:GRAPH (runs started with `graphorch run` are remembered)",
    )


def _parse_json(text: str, what: str) -> Any:
    source = what
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise CliError(f"cannot read {what} file {str(path)!r}: {err.strerror}", None) from None
        source = f"{what} file {str(path)!r}"
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CliError(
            f"{source} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}",
            'quote it for the shell, e.g. --input \'{"text": "refund me"}\'',
        ) from None


async def _pending(rt: go.Runtime, run_id: str) -> list[go.ApprovalRecord]:
    pending = await rt.pending_approvals(run_id)
    if pending:
        return pending
    # a parent waiting for a child: show the child's approval
    children = await rt.store.list_runs(parent_run=RunId(run_id), status=go.RunStatus.WAITING)
    found: list[go.ApprovalRecord] = []
    for child in children:
        found += await rt.pending_approvals(child.run_id)
    return found


async def _report(cli: Cli, rt: go.Runtime, result: go.RunResult[Any], graph: str) -> int:
    """Print where a run stands after driving it; its exit code."""
    pending = await _pending(rt, result.run_id) if result.status is go.RunStatus.WAITING else []
    code = _STATUS_CODES[result.status]
    if cli.json:
        cli.data(result_data(result, graph, pending))
        return code
    status = result.status.value
    cli.out(f"run {result.run_id} ({graph}) {status} after {result.steps} steps")
    if result.status is go.RunStatus.SUCCEEDED:
        if result.output is not None:
            text = result.output if isinstance(result.output, str) else dumps(result.output)
            cli.out(f"output: {text}")
    elif result.reason:
        where = f" at {result.node}" if result.node else ""
        cli.out(f"reason{where}: {result.reason}")
    for a in pending:
        what = f"{a.tool} {(a.args or b'').decode()}" if a.tool else a.prompt
        cli.out(f"pending approval {a.approval_id}: {what}")
        allowed = ", ".join([*a.approvers, *(f"role:{r}" for r in a.roles)])
        cli.out(f"  may decide: {allowed or 'anyone'}")
        cli.out(f"  approve: graphorch approve {a.run_id} --by NAME   (reject: add --reject)")
    if result.status is go.RunStatus.NEEDS_ATTENTION:
        cli.out(f"  see its calls: graphorch show {result.run_id}; then graphorch resume")
    return code


async def _drive_and_report(cli: Cli, rt: go.Runtime, run: go.Run[Any]) -> int:
    cli.progress(
        f"run {run.id} ({run.graph.name}): step {run.steps}, next {', '.join(run.next_nodes) or '-'}"
    )
    result = await drive(run, cli.progress)
    return await _report(cli, rt, result, run.graph.name)


# -- commands ---------------------------------------------------------------------------


async def cmd_demo(cli: Cli) -> int:
    import importlib

    names = [cli.args.example] if cli.args.example else ["support", "research", "devops"]
    worst = EXIT_OK
    collected: list[dict[str, Any]] = []
    for name in names:
        module = importlib.import_module(f"graphorch.examples.{name}")
        cli.progress(f"== demo: {name} (database {cli.db}) ==")
        results: list[go.RunResult[Any]] = await module.run_demo(cli.db, progress=cli.progress)
        for result in results:
            code = _STATUS_CODES[result.status]
            worst = code if worst == EXIT_OK else worst
            collected.append({"example": name, **result_data(result, name)})
            if not cli.json:
                out = result.output if isinstance(result.output, str) else dumps(result.output)
                cli.out(f"[{name}] run {result.run_id} {result.status.value}")
                cli.out(f"{out}" if result.succeeded else f"  reason: {result.reason}")
                cli.out()
    if cli.json:
        cli.data(collected)
    else:
        cli.out("next: `graphorch runs` lists the runs; `graphorch show RUN_ID` shows one;")
        cli.out(
            "      `graphorch history RUN_ID` its checkpoints; `graphorch audit RUN_ID --verify`"
        )
    return worst


async def cmd_run(cli: Cli) -> int:
    target = load_target(cli.args.target)
    data: Any = (
        _parse_json(cli.args.input, "--input")
        if cli.args.input is not None
        else target.example_input()
    )
    data = {} if data is None else data
    if not isinstance(data, dict | BaseModel):
        raise CliError(
            f"--input must be a JSON object of the state's fields, got {type(data).__name__}",
            'e.g. --input \'{"text": "refund me"}\'',
        )
    async with cli.store() as store:
        rt = _runtime(store, target)
        run = await rt.start(target.graph, cast("dict[str, Any] | BaseModel", data))
        remember(cli.db, target.graph.name, target.spec)
        return await _drive_and_report(cli, rt, run)


async def cmd_runs(cli: Cli) -> int:
    cli.require_db()
    status = go.RunStatus(cli.args.status) if cli.args.status else None
    async with cli.store() as store:
        records = await store.list_runs(
            status=status, graph=cli.args.graph_name, limit=cli.args.limit
        )
    if cli.json:
        cli.data([run_data(r) for r in records])
        return EXIT_OK
    if not records:
        cli.out("no runs" + (" match" if status or cli.args.graph_name else " yet"))
        return EXIT_OK
    rows = [
        [
            r.run_id,
            r.graph,
            r.status.value,
            str(r.seq),
            r.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            short(r.reason or "", 50),
        ]
        for r in records
    ]
    cli.out(table(["RUN ID", "GRAPH", "STATUS", "SEQ", "UPDATED", "REASON"], rows))
    return EXIT_OK


async def cmd_show(cli: Cli) -> int:
    cli.require_db()
    async with cli.store() as store:
        record = await store.get_run(RunId(cli.args.run_id))
        head = await store.get_checkpoint(record.run_id)
        rt = go.Runtime(store)
        pending = await _pending(rt, record.run_id) if record.status is go.RunStatus.WAITING else []
        calls = await store.list_calls(record.run_id)
        children = await store.list_runs(parent_run=record.run_id, limit=None)
    state = {name: json.loads(raw) for name, raw in head.state.items()}
    current = list(record.next_nodes) or ([record.error_node] if record.error_node else [])
    if cli.json:
        cli.data(
            {
                **run_data(record),
                "current_nodes": current,
                "state": state,
                "pending_approvals": [approval_data(a) for a in pending],
                "calls": [
                    {"key": c.key, "tool": c.tool, "status": c.status.value, "node": c.node}
                    for c in calls
                ],
                "children": [run_data(c) for c in children],
            }
        )
        return _STATUS_CODES[record.status]
    cli.out(f"run      {record.run_id}")
    cli.out(f"graph    {record.graph}")
    cli.out(f"status   {record.status.value}" + (f" ({record.reason})" if record.reason else ""))
    cli.out(f"node     {', '.join(current) or '-'}")
    cli.out(f"seq      {record.seq}")
    cli.out(f"created  {record.created_at.isoformat(timespec='seconds')}")
    if record.parent_run:
        cli.out(f"parent   {record.parent_run}")
    if record.forked_from:
        cli.out(f"forked   from {record.forked_from}")
    if record.output is not None:
        cli.out(f"output   {short(json.loads(record.output), 200)}")
    cli.out("state:")
    for name, value in state.items():
        cli.out(f"  {name}: {short(value, 100)}")
    for c in children:
        cli.out(f"child    {c.run_id} ({c.graph}) {c.status.value}")
    for call in calls:
        cli.out(f"call     {call.key} {call.tool} {call.status.value}")
    for a in pending:
        what = f"{a.tool} {(a.args or b'').decode()}" if a.tool else a.prompt
        cli.out(f"pending  {a.approval_id}: {what}")
        cli.out(f"         may decide: {', '.join([*a.approvers, *a.roles]) or 'anyone'}")
    return _STATUS_CODES[record.status]


async def cmd_history(cli: Cli) -> int:
    cli.require_db()
    async with cli.store() as store:
        checkpoints = await store.list_checkpoints(RunId(cli.args.run_id))
    if cli.json:
        cli.data([checkpoint_data(c) for c in checkpoints])
        return EXIT_OK
    rows = [
        [
            str(c.seq),
            ",".join(c.nodes) or "(start)",
            ",".join(c.next_nodes) or "-",
            c.status.value,
            short(", ".join(c.changed), 40),
            c.created_at.strftime("%H:%M:%S"),
        ]
        for c in checkpoints
    ]
    cli.out(table(["SEQ", "NODES", "NEXT", "STATUS", "CHANGED", "TIME"], rows))
    return EXIT_OK


async def cmd_resume(cli: Cli) -> int:
    cli.require_db()
    async with cli.store() as store:
        target = await _resolve(cli, store, cli.args.run_id)
        rt = _runtime(store, target)
        run = await rt.resume(cli.args.run_id)
        return await _drive_and_report(cli, rt, run)


def _patch(pairs: Sequence[str]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--set {pair!r} is not FIELD=JSON", "e.g. --set replicas=5")
        try:
            patch[name] = json.loads(value)
        except json.JSONDecodeError as err:
            raise CliError(
                f"--set {name}: {value!r} is not valid JSON ({err.msg})",
                f"""strings need JSON quotes: --set '{name}="text"'""",
            ) from None
    return patch


async def cmd_fork(cli: Cli) -> int:
    cli.require_db()
    patch = _patch(cli.args.set or [])
    async with cli.store() as store:
        target = await _resolve(cli, store, cli.args.run_id)
        rt = _runtime(store, target)
        run = await rt.fork(cli.args.run_id, at=cli.args.at, patch=patch or None)
        cli.progress(f"forked run {run.id} from {cli.args.run_id} at seq {cli.args.at}")
        if cli.args.no_run:
            if cli.json:
                cli.data(result_data(run.result(), run.graph.name))
            else:
                cli.out(f"run {run.id} forked from {cli.args.run_id} at seq {cli.args.at}")
                cli.out(f"  continue it: graphorch resume {run.id}")
            return EXIT_OK
        return await _drive_and_report(cli, rt, run)


async def cmd_approve(cli: Cli) -> int:
    cli.require_db()
    async with cli.store() as store:
        target = None if cli.args.no_resume else await _resolve(cli, store, cli.args.run_id)
        rt = _runtime(store, target)
        if cli.args.reject:
            record = await rt.reject(cli.args.run_id, by=cli.args.by, comment=cli.args.comment)
        else:
            record = await rt.approve(cli.args.run_id, by=cli.args.by, comment=cli.args.comment)
        cli.progress(f"{record.status.value}: {record.approval_id} by {cli.args.by}")
        if cli.args.no_resume:
            if cli.json:
                cli.data(approval_data(record))
            else:
                cli.out(f"{record.approval_id} {record.status.value} by {cli.args.by}")
                cli.out(f"  continue the run: graphorch resume {cli.args.run_id}")
            return EXIT_OK
        run = await rt.resume(cli.args.run_id)
        return await _drive_and_report(cli, rt, run)


async def cmd_render(cli: Cli) -> int:
    target = load_target(cli.args.target)
    overlay = None
    if cli.args.run is not None:
        cli.require_db()
        async with cli.store() as store:
            overlay = await go.overlay_for(store, cli.args.run, at=cli.args.at)
    output = str(cli.args.output)
    path: Path = go.render(
        target.graph, Path(output), run=overlay, expand_delegates=cli.args.expand
    )
    if cli.json:
        cli.data({"path": str(path), "graph": target.graph.name, "run": cli.args.run})
    else:
        cli.out(f"wrote {path}")
    return EXIT_OK


async def cmd_audit(cli: Cli) -> int:
    cli.require_db()
    run_id = RunId(cli.args.run_id)
    async with cli.store() as store:
        await store.get_run(run_id)
        rows = await store.audit_rows(run_id)
        report = await store.verify_events(run_id) if cli.args.verify else None
    code = EXIT_OK if report is None or report.ok else EXIT_FAILED
    if cli.json:
        verified = None
        if report is not None:
            verified = {"ok": report.ok, "checked": report.checked, "problems": report.problems}
        cli.data({"run_id": run_id, "rows": [audit_row_data(r) for r in rows], "verify": verified})
        return code
    out = [
        [
            str(r.position),
            str(r.event.get("kind", "?")),
            str(r.event.get("step", "")),
            event_summary(r.event),
            r.hash[:12],
        ]
        for r in rows
    ]
    cli.out(table(["POS", "EVENT", "STEP", "DETAIL", "HASH"], out))
    if report is not None:
        if report.ok:
            cli.out(f"verified: {report.checked} rows, hash chain intact")
        else:
            cli.out(f"TAMPERED: {len(report.problems)} problem(s) in {report.checked} rows")
            for problem in report.problems:
                cli.out(f"  {problem}")
    return code


async def cmd_prune(cli: Cli) -> int:
    cli.require_db()
    args = cli.args
    if args.older_than is None and args.keep_last is None and not args.compact:
        raise CliError(
            "prune needs --older-than DAYS, --keep-last N RUN_ID, or --compact",
            "e.g. graphorch prune --older-than 30 --compact",
        )
    if args.keep_last is not None and args.run_id is None:
        raise CliError("--keep-last N needs the RUN_ID whose checkpoints to prune", None)
    if args.run_id is not None and args.keep_last is None:
        raise CliError("a RUN_ID is only used with --keep-last N", None)
    if args.keep_last is not None and args.keep_last < 1:
        raise CliError("--keep-last must be at least 1 (the head is always kept)", None)
    if args.older_than is not None and args.older_than < 0:
        raise CliError("--older-than takes a number of days >= 0", None)
    done: dict[str, Any] = {"runs_deleted": 0, "checkpoints_deleted": 0, "compacted": False}
    async with cli.store() as store:
        if args.older_than is not None:
            before = datetime.now(UTC) - timedelta(days=args.older_than)
            done["runs_deleted"] = await store.prune_runs(created_before=before)
        if args.keep_last is not None:
            done["checkpoints_deleted"] = await store.prune_checkpoints(
                RunId(str(args.run_id)), keep_last=args.keep_last
            )
        if args.compact:
            await store.compact()
            done["compacted"] = True
    if cli.json:
        cli.data(done)
    else:
        cli.out(
            f"deleted {done['runs_deleted']} runs and {done['checkpoints_deleted']} checkpoints"
            + ("; compacted" if done["compacted"] else "")
        )
    return EXIT_OK


# -- the parser -----------------------------------------------------------------------------


def _common(json_flag: bool = True) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="database file (default: $GRAPHORCH_DB or graphorch.db)",
    )
    if json_flag:
        common.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
        )
    common.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress on stderr",
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``graphorch`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="graphorch",
        description="Reliable AI agent orchestration: run, inspect, resume, fork, approve "
        "and audit graph workflows stored in SQLite.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"graphorch {go.__version__}")
    parser.add_argument("--db", default=None, metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", "-q", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common()

    def add(
        name: str, handler: Callable[[Cli], Awaitable[int]], text: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            parents=[common],
            help=text,
            description=text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(handler=handler)
        return p

    p = add("demo", cmd_demo, "run a seed example offline (all three if none is named)")
    p.add_argument("example", nargs="?", choices=["support", "research", "devops"])

    p = add("run", cmd_run, "start a run of MODULE:GRAPH and drive it until it stops")
    p.add_argument("target", metavar="MODULE:GRAPH")
    p.add_argument(
        "--input",
        metavar="JSON",
        help="the input state as JSON, or @file.json (default: the module's example_input())",
    )

    p = add("runs", cmd_runs, "list runs, newest first")
    p.add_argument("--status", choices=[s.value for s in go.RunStatus])
    p.add_argument("--graph", dest="graph_name", metavar="NAME", help="only runs of this graph")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    p = add("show", cmd_show, "a run's status, current node, state and pending approval")
    p.add_argument("run_id", metavar="RUN_ID")

    p = add("history", cmd_history, "a run's checkpoints")
    p.add_argument("run_id", metavar="RUN_ID")

    graph_help = "the run's graph as MODULE:GRAPH (default: the recorded one)"
    p = add("resume", cmd_resume, "continue a run from its last checkpoint")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--graph", metavar="MODULE:GRAPH", help=graph_help)

    p = add("fork", cmd_fork, "branch a new run off a checkpoint, optionally editing state")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument(
        "--at", required=True, type=int, metavar="SEQ", help="the checkpoint's seq (see history)"
    )
    p.add_argument(
        "--set", action="append", metavar="FIELD=JSON", help="edit a state field (repeatable)"
    )
    p.add_argument("--graph", metavar="MODULE:GRAPH", help=graph_help)
    p.add_argument("--no-run", action="store_true", help="create the fork without running it")

    p = add("approve", cmd_approve, "decide a run's pending approval, then resume the run")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument(
        "--by", required=True, metavar="NAME", help="who decides (must be an allowed approver)"
    )
    p.add_argument("--reject", action="store_true", help="reject instead of approving")
    p.add_argument("--comment", metavar="TEXT")
    p.add_argument("--graph", metavar="MODULE:GRAPH", help=graph_help)
    p.add_argument("--no-resume", action="store_true", help="only record the decision")

    p = add("render", cmd_render, "draw a graph (.svg, .png, .dot, .mmd by extension)")
    p.add_argument("target", metavar="MODULE:GRAPH")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--run", metavar="RUN_ID", help="colour this run's path onto the graph")
    p.add_argument(
        "--at", type=int, metavar="SEQ", help="show the run as it was at this checkpoint"
    )
    p.add_argument("--expand", action="store_true", help="draw delegated graphs inline")

    p = add("audit", cmd_audit, "a run's audit log (its events, hash-chained)")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument(
        "--verify", action="store_true", help="check the hash chain (exit 1 if tampered)"
    )

    p = add("prune", cmd_prune, "delete old runs or old checkpoints; reclaim space")
    p.add_argument("run_id", metavar="RUN_ID", nargs="?", help="with --keep-last")
    p.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="delete finished runs created more than DAYS ago",
    )
    p.add_argument(
        "--keep-last", type=int, metavar="N", help="keep only RUN_ID's last N checkpoints"
    )
    p.add_argument("--compact", action="store_true", help="reclaim the freed space (VACUUM)")
    return parser


# -- errors -----------------------------------------------------------------------------


def _hint(err: BaseException) -> tuple[int, str | None]:
    """The exit code and hint for an error raised while running a command."""
    if isinstance(err, CliError):
        return err.code, err.hint
    if isinstance(err, go.RunNotFoundError):
        return EXIT_USAGE, None  # its message already says how to list runs
    if isinstance(err, go.CheckpointNotFoundError):
        return EXIT_USAGE, "list the checkpoints with `graphorch history RUN_ID`"
    if isinstance(err, go.DatabaseError):
        return EXIT_USAGE, "point --db at a graphorch database"
    if isinstance(err, go.IncompatibleGraphError):
        return EXIT_USAGE, "pass --graph MODULE:GRAPH with the graph the run was started with"
    if isinstance(err, go.NotAuthorizedError):
        return EXIT_USAGE, "see who may decide with `graphorch show RUN_ID`"
    if isinstance(err, go.ApprovalNotFoundError | go.AlreadyDecidedError):
        return EXIT_USAGE, "see the run's status with `graphorch show RUN_ID`"
    if isinstance(err, go.GraphDefinitionError):
        return EXIT_USAGE, "fix the graph's definition"
    if isinstance(err, go.InputValidationError):
        return EXIT_USAGE, "the input must fit the graph's state schema"
    if isinstance(err, go.RunLockedError):
        return (
            EXIT_USAGE,
            "another process is advancing this run; wait for it or its lease to expire",
        )
    if isinstance(err, go.RenderError):
        return EXIT_USAGE, None  # its message has the install hint
    if isinstance(err, go.RunNotActiveError):
        return EXIT_USAGE, "see the run's status with `graphorch show RUN_ID`"
    if isinstance(err, go.GraphorchError):
        return EXIT_FAILED, "rerun with --debug for the traceback"
    return EXIT_FAILED, "this looks like a bug in graphorch; rerun with --debug for the traceback"


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, go.GraphorchError):
        text = f"{type(err).__name__}: {text}"
    return text


def _unwrap(err: Exception) -> Exception:
    """The one exception inside (nested) exception groups of one exception."""
    current: Exception = err
    while True:
        inner = cast("tuple[Exception, ...]", getattr(current, "exceptions", ()))
        if len(inner) != 1 or not isinstance(current, ExceptionGroup):
            return current
        current = inner[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``graphorch`` command; returns its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    cli = Cli(args)
    handler: Callable[[Cli], Awaitable[int]] = args.handler
    try:
        return anyio.run(handler, cli)
    except KeyboardInterrupt:
        print(
            "interrupted; the run stays at its last checkpoint (graphorch resume RUN_ID)",
            file=sys.stderr,
        )
        return 130
    except Exception as err:
        if args.debug:
            raise
        err = _unwrap(err)
        code, hint = _hint(err)
        print(f"error: {_one_line(err)}", file=sys.stderr)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
