"""The runtime: starts, resumes and forks runs against a store.

``Runtime(store)`` is the entry point for running graphs::

    rt = go.Runtime(go.SQLiteStore("graphorch.db"), graphs=[support])
    run = await rt.start(support, Ticket(text="refund me"))
    result = await run.wait()
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel
from pydantic_core import to_json

from graphorch._record import replace

from .approvals import ApprovalDesk, Authorizer
from .context import BacktrackInfo, ErrorInfo
from .delegation import run_delegate
from .events import CallResolved, Event, RunResumed, RunStarted
from .exceptions import (
    DefinitionError,
    IncompatibleGraphError,
    InputValidationError,
    RunError,
    RunLockedError,
    RunNotActiveError,
)
from .graph import (
    START,
    FrozenGraph,
    Graph,
    check_structure,
    fire,
    freeze_unchecked,
    legacy_fingerprint,
    trust_structure,
)
from .models.base import ChatModel
from .nodes import DelegateNode, Node, ToolNode
from .policies import Guardrails
from .runs import Run, RunResult
from .store.approvals import ApprovalRecord
from .store.base import (
    AuditReport,
    CheckpointInfo,
    CheckpointWrite,
    Lease,
    PipelinedStore,
    RunRecord,
    RunUpdate,
    Store,
    StoredCheckpoint,
    pipelined,
)
from .store.journal import CallStatus, ToolCallRecord
from .store.memory import MemoryStore
from .toolbox import CallEngine, CallLedger, run_tool_node
from .tools import ToolRegistry
from .types import CheckpointId, RunId, RunStatus, checkpoint_id, new_run_id

__all__ = ["Runtime", "run"]

StateT = TypeVar("StateT", bound=BaseModel)

GraphLike = Graph[Any, Any] | FrozenGraph[Any, Any]


def _frozen(graph: GraphLike) -> FrozenGraph[Any, Any]:
    if isinstance(graph, FrozenGraph):
        return graph
    if isinstance(graph, Graph):  # pyright: ignore[reportUnnecessaryIsInstance]
        # the structural checks wait for a run: start checks, resume may trust
        return freeze_unchecked(graph)
    raise DefinitionError(f"expected a graphorch Graph, got {type(graph).__name__}")


class Runtime:
    """Runs graphs against a store; many runs at once, each independent.

    Args:
        store: where runs are checkpointed (default: an in-memory store).
        graphs: graphs this runtime can resume by name (started graphs are added).
        deps: the default dependencies injected into every run's ``ctx.deps``.
        tools: the tools runs may call (through tool nodes and ``ctx.tools``).
        guardrails: the checks applied to every tool call.
        roles_of: who is who: the roles a person holds (for approve nodes' ``roles=``).
        authorize: your own identity check ``(person, approval) -> bool``; replaces
            the approvers/roles check.
        lease_ttl: seconds a run's ownership lasts without renewal; a process that
            died releases its runs after this long.
        max_concurrency: the most parallel branches, parallel tool calls and fan-out
            children running at once across all runs of this runtime (None: no limit).
        model: the model plan nodes and ``ctx.model`` use, or several by name (the
            first is the default).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        graphs: Iterable[GraphLike] = (),
        deps: Any = None,
        tools: ToolRegistry | None = None,
        guardrails: Guardrails | None = None,
        roles_of: Callable[[str], Iterable[str]] | None = None,
        authorize: Authorizer | None = None,
        lease_ttl: float = 30.0,
        max_concurrency: int | None = None,
        model: ChatModel | Mapping[str, ChatModel] | None = None,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)  # pyright: ignore[reportUnnecessaryIsInstance]
            or max_concurrency < 1
        ):
            raise DefinitionError("Runtime(max_concurrency=...) must be an int >= 1")
        self.limiter = None if max_concurrency is None else anyio.CapacityLimiter(max_concurrency)
        self.tools = tools if tools is not None else ToolRegistry()
        self.guardrails = guardrails if guardrails is not None else Guardrails()
        self.engine = CallEngine(self.tools, self.guardrails)
        self.desk = ApprovalDesk(self, roles_of=roles_of, authorize=authorize)
        if model is None:
            self.models: dict[str, ChatModel] = {}
        elif isinstance(model, Mapping):
            self.models = dict(model)
        else:
            self.models = {model.name: model}
        for name, m in self.models.items():
            if not isinstance(m, ChatModel):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise DefinitionError(
                    f"model {name!r} is not a ChatModel (it needs `name` and `complete()`)"
                )
        self.deps = deps
        self.lease_ttl = lease_ttl
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{os.urandom(4).hex()}"
        self._graphs: dict[str, FrozenGraph[Any, Any]] = {}
        self._pipelined_for: object = None
        self._pipelined: PipelinedStore | None = None
        for g in graphs:
            self.register(g)

    def _pipelined_store(self) -> PipelinedStore | None:
        """The store as a :class:`PipelinedStore`, or None if it is not one.

        Asked once per store object: the protocol check inspects every member and
        cost tens of microseconds, twice per run started.
        """
        store = self.store
        if store is not self._pipelined_for:
            self._pipelined = pipelined(store)
            self._pipelined_for = store
        return self._pipelined

    def register(self, graph: GraphLike) -> FrozenGraph[Any, Any]:
        """Make a graph known by name, so its runs can be resumed without passing it.

        Checks its definition; the checks over its whole structure (reachability,
        stopping rules, approvals) run when a run of it starts, or when a run resumes
        with a graph whose fingerprint differs from the one the run started with.

        Raises:
            GraphDefinitionError: listing every problem.
        """
        frozen = _frozen(graph)
        self._graphs[frozen.name] = frozen
        return frozen

    async def _create(self, record: RunRecord, write: CheckpointWrite, event: Event) -> Lease:
        """Store a new run and take its lease (in one transaction where the store can)."""
        store = self.store
        fast = self._pipelined_store()
        if fast is not None:
            return await fast.create_run_leased(
                record, write, [event], owner=self.owner, ttl=self.lease_ttl
            )
        await store.create_run(record, write, [event])
        return await store.acquire_lease(record.run_id, self.owner, self.lease_ttl)

    async def _take_over(self, run_id: RunId) -> Lease:
        """Acquire a run's lease; a holder that died on this host gives it up at once."""
        try:
            return await self.store.acquire_lease(run_id, self.owner, self.lease_ttl)
        except RunLockedError as err:
            if err.owner is None or not owner_is_dead(err.owner):
                raise
            return await self.store.acquire_lease(
                run_id, self.owner, self.lease_ttl, steal_from=err.owner
            )

    def graph_named(self, name: str) -> FrozenGraph[Any, Any]:
        """A registered graph by name."""
        found = self._graphs.get(name)
        if found is None:
            raise IncompatibleGraphError(
                f"this runtime does not know graph {name!r}; pass it in "
                f"Runtime(store, graphs=[...]) or start a run of it first"
            )
        return found

    def _graph_for(self, record: RunRecord, graph: GraphLike | None) -> FrozenGraph[Any, Any]:
        if graph is None:
            found = self._graphs.get(record.graph)
            if found is None:
                raise IncompatibleGraphError(
                    f"run {record.run_id} belongs to graph {record.graph!r}, which this "
                    f"runtime does not know; pass graph= or Runtime(store, graphs=[...])"
                )
            return found
        frozen = self.register(graph)
        if frozen.name != record.graph:
            raise IncompatibleGraphError(
                f"run {record.run_id} was started with graph {record.graph!r}, "
                f"not {frozen.name!r}; resume it with the graph it was started with"
            )
        return frozen

    # -- starting ----------------------------------------------------------------

    async def start(
        self,
        graph: Graph[StateT, Any] | FrozenGraph[StateT, Any],
        input: StateT | Mapping[str, Any],
        *,
        run_id: str | None = None,
        deps: Any = None,
        max_steps: int | None = None,
        timeout: float | None = None,
        parent_run: RunId | None = None,
    ) -> Run[StateT]:
        """Validate ``input``, store the run's first checkpoint and return its handle.

        Nothing runs until ``await run.step()`` or ``await run.wait()``.

        Raises:
            GraphDefinitionError: the graph is invalid.
            InputValidationError: ``input`` does not fit the state schema.
        """
        frozen = self.register(graph)
        check_structure(frozen)
        schema = frozen.schema
        state = schema.validate_input(input)
        writes = schema.dump_all(state)
        rid = RunId(run_id) if run_id is not None else new_run_id()
        next_nodes = _first_nodes(frozen, state, rid)
        now = datetime.now(UTC)
        cp = checkpoint_id(rid, 0)
        record = RunRecord(
            run_id=rid,
            graph=frozen.name,
            graph_fingerprint=frozen.fingerprint,
            status=RunStatus.RUNNING,
            reason=None,
            error_node=None,
            created_at=now,
            updated_at=now,
            head=cp,
            seq=0,
            next_nodes=next_nodes,
            parent_run=parent_run,
        )
        write = CheckpointWrite(
            checkpoint_id=cp,
            run_id=rid,
            seq=0,
            parent=None,
            nodes=(),
            next_nodes=next_nodes,
            status=RunStatus.RUNNING,
            writes=writes,
            meta=b'{"steps":0}',
            created_at=now,
        )
        event = RunStarted(run_id=rid, step=0, graph=frozen.name)
        lease = await self._create(record, write, event)
        return Run(
            self,
            frozen,
            run_id=rid,
            state=state,
            seq=0,
            steps=0,
            visits={},
            next_nodes=next_nodes,
            status=RunStatus.RUNNING,
            reason=None,
            error_node=None,
            output=None,
            deps=deps if deps is not None else self.deps,
            lease=lease,
            started=time.time(),
            max_steps=max_steps,
            timeout=timeout,
            backtracked=None,
            stored_events=[event],
        )

    async def resume(
        self,
        run_id: str,
        graph: Graph[Any, Any] | FrozenGraph[Any, Any] | None = None,
        *,
        deps: Any = None,
        allow_graph_change: bool = False,
        as_child: bool = False,
    ) -> Run[Any]:
        """Take over a run from its last committed checkpoint (e.g. after a crash).

        No committed step runs again. A run that already stopped comes back as it is.
        Resuming a child run whose parent waits for it resumes the parent instead (which
        resumes the child), so deciding a child's approval lets both go on.

        Raises:
            RunNotFoundError: no such run.
            RunLockedError: another live process is advancing it.
            IncompatibleGraphError: the graph is not the one the run was started with,
                or the stored state no longer fits its schema.
        """
        record = await self.store.get_run(RunId(run_id))
        if not as_child and record.parent_run is not None:
            parent = await self.store.get_run(record.parent_run)
            if parent.status is RunStatus.WAITING and parent.graph in self._graphs:
                return await self.resume(parent.run_id, deps=deps)
        frozen = self._graph_for(record, graph)
        if record.graph_fingerprint == frozen.fingerprint:
            # the run's start checked this very structure: no need to again
            trust_structure(frozen)
        elif allow_graph_change or record.graph_fingerprint == legacy_fingerprint(frozen):
            # a changed graph (or one only an older graphorch fingerprinted) is checked
            check_structure(frozen)
        else:
            raise IncompatibleGraphError(
                f"graph {frozen.name!r} changed shape since run {record.run_id} started "
                f"(nodes or edges differ); resume with the original graph, or pass "
                f"allow_graph_change=True if its next nodes still exist"
            )
        missing = [n for n in record.next_nodes if n not in frozen.nodes]
        if missing:
            raise IncompatibleGraphError(
                f"run {record.run_id} continues at {missing}, which graph "
                f"{frozen.name!r} no longer has"
            )
        stored = await self.store.get_checkpoint(record.run_id, record.head)
        state = self._load_state(frozen, stored, record.run_id)
        lease = None
        ledger = CallLedger()
        if record.status is RunStatus.WAITING and not await self.desk.pending(record.run_id):
            # the person decided (or the request expired): the run may go on
            lease = await self._take_over(record.run_id)
            await self.store.commit_step(
                lease, None, RunUpdate(status=RunStatus.RUNNING), [], run_id=record.run_id
            )
            record = await self.store.get_run(record.run_id)
            ledger.replay = {
                c.key: c for c in await self.store.list_calls(record.run_id, seq=record.seq)
            }
        elif record.status in (RunStatus.RUNNING, RunStatus.NEEDS_ATTENTION):
            lease = await self._take_over(record.run_id)
            calls = await self.store.list_calls(record.run_id, seq=record.seq)
            ledger.replay = {c.key: c for c in calls}
            unsettled = [
                c
                for c in calls
                if c.status is CallStatus.STARTED
                and not (self.tools.get(c.tool) and self.tools.get(c.tool).idempotent)  # type: ignore[union-attr]
            ]
            if record.status is RunStatus.NEEDS_ATTENTION and not unsettled:
                # an operator settled the call: the run may go on
                await self.store.commit_step(
                    lease,
                    None,
                    RunUpdate(status=RunStatus.RUNNING),
                    [],
                    run_id=record.run_id,
                )
                record = await self.store.get_run(record.run_id)
        return self._handle(frozen, record, stored.meta, state, deps, lease, ledger=ledger)

    async def fork(
        self,
        run_id: str,
        *,
        at: CheckpointId | str | int,
        patch: Mapping[str, Any] | None = None,
        graph: Graph[Any, Any] | FrozenGraph[Any, Any] | None = None,
        deps: Any = None,
    ) -> Run[Any]:
        """Start a new branch from an earlier checkpoint, optionally with edited state.

        The original run and its history are never changed.

        Raises:
            InputValidationError: ``patch`` does not fit the state schema.
            CheckpointNotFoundError: no such checkpoint in the run.
        """
        source = await self.store.get_run(RunId(run_id))
        frozen = self._graph_for(source, graph)
        if source.graph_fingerprint == frozen.fingerprint:
            trust_structure(frozen)  # the source run's start checked this structure
        else:
            check_structure(frozen)
        stored = await self.store.get_checkpoint(source.run_id, _checkpoint_ref(at))
        if not stored.info.next_nodes:
            raise RunNotActiveError(
                f"checkpoint {stored.info.seq} is where the run stopped; nothing follows "
                f"it. Fork from an earlier checkpoint",
                run_id=source.run_id,
            )
        state = self._load_state(frozen, stored, source.run_id)
        if patch:
            unknown = [k for k in patch if k not in frozen.schema.fields]
            if unknown:
                raise InputValidationError(
                    f"patch names unknown field(s) {unknown}; {frozen.state.__name__} has "
                    f"{', '.join(frozen.schema.fields)}"
                )
            state = frozen.schema.validate_input({**state.__dict__, **patch}, what="patch")
        rid = new_run_id()
        now = datetime.now(UTC)
        cp = checkpoint_id(rid, 0)
        next_nodes = stored.info.next_nodes
        record = RunRecord(
            run_id=rid,
            graph=frozen.name,
            graph_fingerprint=frozen.fingerprint,
            status=RunStatus.RUNNING,
            reason=None,
            error_node=None,
            created_at=now,
            updated_at=now,
            head=cp,
            seq=0,
            next_nodes=next_nodes,
            parent_run=source.parent_run,
            forked_from=stored.info.checkpoint_id,
        )
        write = CheckpointWrite(
            checkpoint_id=cp,
            run_id=rid,
            seq=0,
            parent=stored.info.checkpoint_id,
            nodes=(),
            next_nodes=next_nodes,
            status=RunStatus.RUNNING,
            writes=frozen.schema.dump_all(state),
            meta=stored.meta,
            created_at=now,
        )
        event = RunStarted(
            run_id=rid, step=0, graph=frozen.name, forked_from=stored.info.checkpoint_id
        )
        lease = await self._create(record, write, event)
        return self._handle(frozen, record, stored.meta, state, deps, lease, [event])

    def _load_state(
        self, frozen: FrozenGraph[Any, Any], stored: StoredCheckpoint, run_id: RunId
    ) -> Any:
        try:
            return frozen.schema.load(stored.state, what=f"the state of run {run_id}")
        except InputValidationError as err:
            raise IncompatibleGraphError(str(err)) from None

    def _handle(
        self,
        frozen: FrozenGraph[Any, Any],
        record: RunRecord,
        raw_meta: bytes,
        state: Any,
        deps: Any,
        lease: Lease | None,
        stored: list[Event] | None = None,
        *,
        ledger: CallLedger | None = None,
    ) -> Run[Any]:
        meta: dict[str, Any] = json.loads(raw_meta) if raw_meta else {}
        ledger = ledger if ledger is not None else CallLedger()
        ledger.calls = int(meta.get("calls", 0))
        ledger.cost = float(meta.get("cost", 0.0))
        back: dict[str, str] | None = meta.get("backtracked")
        err: dict[str, str] | None = meta.get("error")
        steps = int(meta.get("steps", 0))
        visits: dict[str, int] = dict(meta.get("visits", {}))
        events: list[Event] = []
        if stored is None and lease is not None:
            events.append(RunResumed(run_id=record.run_id, step=steps, checkpoint=record.head))
        output = json.loads(record.output) if record.output is not None else None
        return Run(
            self,
            frozen,
            run_id=record.run_id,
            state=state,
            seq=record.seq,
            steps=steps,
            visits=visits,
            next_nodes=record.next_nodes if record.status is RunStatus.RUNNING else (),
            status=record.status,
            reason=record.reason,
            error_node=record.error_node,
            output=output,
            deps=deps if deps is not None else self.deps,
            lease=lease,
            started=record.created_at.timestamp(),
            max_steps=None,
            timeout=None,
            backtracked=BacktrackInfo(back["source"], back["reason"]) if back else None,
            error=ErrorInfo(err["source"], err["type"], err["reason"]) if err else None,
            pending_events=events,
            stored_events=stored or [],
            ledger=ledger,
        )

    # -- reading -----------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord:
        """The stored record of a run (status, reason, head, ...)."""
        return await self.store.get_run(RunId(run_id))

    async def history(self, run_id: str) -> list[CheckpointInfo]:
        """The run's checkpoints in order (seq, nodes, time, status)."""
        return await self.store.list_checkpoints(RunId(run_id))

    async def verify_audit(self, run_id: str | None = None) -> AuditReport:
        """Check the hash-chained audit log of one run (or all): edited, inserted or
        deleted rows are named in the report's ``problems``."""
        return await self.store.verify_events(None if run_id is None else RunId(run_id))

    async def export_audit(self, run_id: str, path: str | os.PathLike[str]) -> int:
        """Write the run's audit log as JSON Lines (one event a line, with its hashes).

        Returns the number of rows written.
        """
        rows = await self.store.audit_rows(RunId(run_id))
        lines = [
            json.dumps(
                {
                    "run_id": r.run_id,
                    "position": r.position,
                    "prev_hash": r.prev_hash,
                    "hash": r.hash,
                    "event": r.event,
                },
                ensure_ascii=False,
            )
            for r in rows
        ]
        text = "".join(line + "\n" for line in lines)
        await anyio.Path(path).write_text(text, encoding="utf-8")
        return len(rows)

    async def state_at(
        self,
        run_id: str,
        at: CheckpointId | str | int | None = None,
        *,
        graph: Graph[Any, Any] | FrozenGraph[Any, Any] | None = None,
    ) -> Any:
        """The run's state at a checkpoint (by id or seq; default: the latest)."""
        record = await self.store.get_run(RunId(run_id))
        frozen = self._graph_for(record, graph)
        ref = None if at is None else _checkpoint_ref(at)
        stored = await self.store.get_checkpoint(record.run_id, ref)
        return self._load_state(frozen, stored, record.run_id)

    # -- approvals ---------------------------------------------------------------

    async def pending_approvals(self, run_id: str | None = None) -> list[ApprovalRecord]:
        """Pending approvals across all runs (or one run), oldest first."""
        return await self.desk.pending(None if run_id is None else RunId(run_id))

    async def approve(
        self,
        run_id: str,
        *,
        by: str,
        comment: str | None = None,
        edits: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> ApprovalRecord:
        """Approve the run's pending approval as ``by`` (optionally editing state fields).

        Then resume the run, in this process or any other: ``await rt.resume(run_id)``.

        Raises:
            NotAuthorizedError: ``by`` may not decide it (the attempt is audited).
            AlreadyDecidedError: someone decided first, or it expired.
            InputValidationError: ``edits`` do not fit the state schema.
        """
        return await self.desk.decide(
            run_id, by=by, approve=True, comment=comment, edits=edits, approval_id=approval_id
        )

    async def reject(
        self,
        run_id: str,
        *,
        by: str,
        comment: str | None = None,
        approval_id: str | None = None,
    ) -> ApprovalRecord:
        """Reject the run's pending approval as ``by``; see :meth:`approve`."""
        return await self.desk.decide(
            run_id, by=by, approve=False, comment=comment, approval_id=approval_id
        )

    async def calls(self, run_id: str) -> list[ToolCallRecord]:
        """The run's journaled tool calls, in the order they started."""
        return await self.store.list_calls(RunId(run_id))

    async def resolve_call(
        self,
        run_id: str,
        key: str,
        *,
        by: str,
        result: Any = None,
        failed: bool = False,
        error: str | None = None,
    ) -> ToolCallRecord:
        """Settle a call whose outcome a crash left unknown (run ``needs_attention``).

        Say it succeeded (with the ``result`` to replay) or ``failed``; the decision is
        audited with ``by``. Then :meth:`resume` the run.
        """
        record = await self.store.get_run(RunId(run_id))
        calls = {c.key: c for c in await self.store.list_calls(record.run_id)}
        call = calls.get(key)
        if call is None:
            raise InputValidationError(
                f"run {run_id} has no call {key!r}; its calls: {', '.join(calls) or 'none'}"
            )
        if call.status is not CallStatus.STARTED:
            raise InputValidationError(
                f"call {key!r} already {call.status.value}; nothing to settle"
            )
        now = datetime.now(UTC)
        if failed:
            settled = replace(
                call,
                status=CallStatus.FAILED,
                error=error or f"marked failed by {by}",
                error_type="ToolFailedError",
                finished_at=now,
                resolved_by=by,
            )
        else:
            settled = replace(
                call,
                status=CallStatus.SUCCEEDED,
                result=to_json(result),
                finished_at=now,
                resolved_by=by,
            )
        meta = json.loads((await self.store.get_checkpoint(record.run_id, record.head)).meta)
        event = CallResolved(
            run_id=record.run_id,
            step=int(meta.get("steps", 0)),
            key=key,
            tool=call.tool,
            outcome=settled.status.value,
            by=by,
        )
        await self.store.journal(None, [settled], [event], run_id=record.run_id)
        return settled

    # -- node kinds filled in by later layers -------------------------------------

    async def execute_node(self, run: Run[Any], node: Node, attempt: int) -> Any:
        """Run a tool, delegate or approve node (the kinds with runtime services)."""
        if isinstance(node, ToolNode):
            return await run_tool_node(run, node, attempt)
        if isinstance(node, DelegateNode):
            return await run_delegate(run, node)
        raise RunError(
            f"{node.kind.value} nodes cannot run yet in this version of graphorch",
            run_id=run.id,
            node=node.name,
        )


def owner_is_dead(owner: str) -> bool:
    """Whether a lease holder (``host:pid:token``) is a process on this host that is gone.

    A holder on another host, or whose pid is alive (even if reused), is never
    considered dead: its lease must expire.
    """
    try:
        host, pid_text, _ = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != os.uname().nodename or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child not yet reaped by its parent is a zombie: gone all the same
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _checkpoint_ref(at: CheckpointId | str | int) -> CheckpointId | int:
    if isinstance(at, int):
        return at
    if at.isdigit():
        return int(at)
    return CheckpointId(at)


def _first_nodes(graph: FrozenGraph[Any, Any], state: Any, run_id: RunId) -> tuple[str, ...]:
    targets = fire(graph.edges[START], state, START)
    if not targets:
        raise InputValidationError(
            f"no edge from START matched the input of graph {graph.name!r} and there is no "
            f"default edge"
        )
    return tuple(dict.fromkeys(targets))


def run(
    graph: Graph[StateT, Any] | FrozenGraph[StateT, Any],
    input: StateT | Mapping[str, Any],
    *,
    store: Store | None = None,
    deps: Any = None,
    check: bool = True,
    backend: str = "asyncio",
) -> RunResult[StateT]:
    """Run a graph to completion from synchronous code (a script, a REPL).

    Args:
        check: raise the run's error if it failed (else return the result as it is).
        backend: the anyio backend, ``"asyncio"`` or ``"trio"``.
    """

    async def main() -> RunResult[StateT]:
        handle = await Runtime(store).start(graph, input, deps=deps)
        result = await handle.wait()
        return result.raise_for_status() if check else result

    return anyio.run(main, backend=backend)
