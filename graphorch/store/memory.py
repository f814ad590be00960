"""An in-memory store: fast, for tests, notebooks and runs that need no durability."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.lowlevel

from graphorch._record import replace
from graphorch.events import CustomEvent, Event
from graphorch.exceptions import (
    CheckpointNotFoundError,
    LeaseLostError,
    RunLockedError,
    RunNotFoundError,
    StoreError,
)
from graphorch.store._audit import audit_row, check_chain, event_json, genesis, link
from graphorch.store.approvals import (
    ApprovalRecord,
    ApprovalStatus,
    check_approvals,
    check_decision,
    decision_refused,
)
from graphorch.store.base import (
    AppendField,
    AuditReport,
    AuditRow,
    CheckpointInfo,
    CheckpointWrite,
    Lease,
    RunRecord,
    RunUpdate,
    StoredCheckpoint,
    join_lists,
)
from graphorch.store.journal import ToolCallRecord, check_calls
from graphorch.types import CheckpointId, RunId, RunStatus

__all__ = ["MemoryStore"]

_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def _time_key(dt: datetime) -> timedelta:
    """Orders aware and naive datetimes together (naive counted as UTC, as SQLite does)."""
    return dt - (_EPOCH if dt.utcoffset() is None else _EPOCH_UTC)


class _Appended:
    """A list field's value at a checkpoint: its value before, plus the appended items.

    Kept as a link to the previous value rather than as the whole JSON: a list that
    grows by one item a step would otherwise cost a copy of itself per checkpoint, in
    time and in memory (quadratic over a run). The JSON is put together when read.
    """

    __slots__ = ("base", "items")

    def __init__(self, base: bytes | _Appended, items: bytes) -> None:
        self.base = base
        self.items = items

    def json(self) -> bytes:
        segments: list[bytes] = []
        node: bytes | _Appended = self
        while isinstance(node, _Appended):
            segments.append(node.items)
            node = node.base
        segments.reverse()
        return join_lists(node, segments)


def _value(value: bytes | _Appended) -> bytes:
    return value if isinstance(value, bytes) else value.json()


class _Checkpoint:
    """A stored checkpoint; its :class:`CheckpointInfo` is built when first read."""

    __slots__ = ("_info", "meta", "state", "write")

    def __init__(self, write: CheckpointWrite, state: dict[str, bytes | _Appended]) -> None:
        self.write = write
        self.state = state
        self.meta = write.meta
        self._info: CheckpointInfo | None = None

    @property
    def info(self) -> CheckpointInfo:
        info = self._info
        if info is None:
            w = self.write
            info = self._info = CheckpointInfo(
                checkpoint_id=w.checkpoint_id,
                run_id=w.run_id,
                seq=w.seq,
                parent=w.parent,
                nodes=w.nodes,
                next_nodes=w.next_nodes,
                status=w.status,
                created_at=w.created_at,
                changed=tuple(w.writes),
            )
        return info


@dataclass
class _AuditEntry:
    """An event as the audit log holds it: position, stored JSON, chained hash."""

    n: int
    data: str
    hash: bytes


@dataclass
class _Run:
    _record: RunRecord
    _head: tuple[int, bytes]  # the audit chain's head: event count, last hash
    checkpoints: list[_Checkpoint] = field(default_factory=lambda: [])
    events: list[Event] = field(default_factory=lambda: [])
    _audit: list[_AuditEntry] = field(default_factory=lambda: [])
    _unchained: list[Event] = field(default_factory=lambda: [])
    calls: dict[str, ToolCallRecord] = field(default_factory=lambda: {})
    lease: Lease | None = None
    epoch: int = 0
    _changes: dict[str, Any] = field(default_factory=lambda: {})

    # A step changes the run record's head and status; rebuilding the record at every
    # step cost more than the rest of an in-memory commit, so changes wait for a read.
    @property
    def record(self) -> RunRecord:
        """The run's record, with every change made so far."""
        if self._changes:
            self._record = replace(self._record, **self._changes)
            self._changes = {}
        return self._record

    @record.setter
    def record(self, value: RunRecord) -> None:
        self._record = value
        self._changes = {}

    def update(self, **changes: Any) -> None:
        """Change record fields (applied on the next read of :attr:`record`)."""
        self._changes.update(changes)

    # Hashing every event as it is written costs more than the rest of an in-memory
    # step; the chain is built when someone reads it (verify, export), same result.
    @property
    def audit(self) -> list[_AuditEntry]:
        """The hash-chained audit entries (chained on first read)."""
        self._flush()
        return self._audit

    @property
    def head(self) -> tuple[int, bytes]:
        """The chain's head: event count and last hash."""
        self._flush()
        return self._head

    def _flush(self) -> None:
        if self._unchained:
            pending, self._unchained = self._unchained, []
            self.append_chained(self.chain(pending))

    def chain(self, events: Sequence[Event]) -> list[_AuditEntry]:
        """The audit entries ``events`` will be (raises before anything changes)."""
        n, prev = self._head
        entries: list[_AuditEntry] = []
        for event in events:
            data = event_json(event)
            prev = link(prev, data)
            entries.append(_AuditEntry(n, data, prev))
            n += 1
        return entries

    def append_chained(self, entries: list[_AuditEntry]) -> None:
        if entries:
            self._audit.extend(entries)
            self._head = (entries[-1].n + 1, entries[-1].hash)

    def append(self, events: Sequence[Event]) -> None:
        """Add events; their audit entries are chained when first read."""
        for event in events:
            if isinstance(event, CustomEvent):
                event_json(event)  # user data: refuse what JSON cannot hold, now
        self.events.extend(events)
        self._unchained.extend(events)


class MemoryStore:
    """Keeps everything in this process's memory; gone when the process ends.

    Passes the same conformance suite as :class:`~graphorch.SQLiteStore`.
    """

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._by_checkpoint: dict[str, _Checkpoint] = {}
        self._call_runs: dict[str, str] = {}  # call key -> its run (keys are global)
        self._approvals: dict[str, ApprovalRecord] = {}  # in the order they were stored

    def _run(self, run_id: str) -> _Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFoundError(run_id) from None

    def _materialize(self, write: CheckpointWrite) -> _Checkpoint:
        if write.checkpoint_id in self._by_checkpoint:
            raise StoreError(
                f"checkpoint {write.checkpoint_id!r} (run {write.run_id}, seq {write.seq}) "
                "already exists; a checkpoint is written once"
            )
        if write.parent is None:
            state: dict[str, bytes | _Appended] = {}
        else:
            parent = self._by_checkpoint.get(write.parent)
            if parent is None:
                raise CheckpointNotFoundError(f"parent checkpoint {write.parent!r} does not exist")
            state = dict(parent.state)
        for name, change in write.writes.items():
            if isinstance(change, AppendField):
                before = state.get(name, b"[]")
                state[name] = before if change.items == b"[]" else _Appended(before, change.items)
            else:
                state[name] = change.json
        return _Checkpoint(write, state)

    async def create_run(
        self, run: RunRecord, checkpoint: CheckpointWrite, events: Sequence[Event]
    ) -> None:
        if run.run_id in self._runs:
            raise StoreError(f"a run with id {run.run_id!r} already exists")
        entry = _Run(run, (0, genesis(run.run_id)))
        cp = self._materialize(checkpoint)
        entry.checkpoints.append(cp)
        entry.append(events)
        self._runs[run.run_id] = entry
        self._by_checkpoint[checkpoint.checkpoint_id] = cp

    async def commit_step(
        self,
        lease: Lease | None,
        checkpoint: CheckpointWrite | None,
        update: RunUpdate,
        events: Sequence[Event],
        *,
        run_id: RunId,
        calls: Sequence[ToolCallRecord] = (),
        approvals: Sequence[ApprovalRecord] = (),
    ) -> None:
        entry = self._run(run_id)
        self._fence(entry, lease, run_id)
        self._check_calls(run_id, calls)
        if approvals:
            self._check_approvals(run_id, approvals)
        if checkpoint is not None:
            cp = self._materialize(checkpoint)
            entry.checkpoints.append(cp)
            self._by_checkpoint[checkpoint.checkpoint_id] = cp
            entry.update(
                head=checkpoint.checkpoint_id,
                seq=checkpoint.seq,
                next_nodes=checkpoint.next_nodes,
                status=update.status,
                reason=update.reason,
                error_node=update.error_node,
                output=update.output,
                updated_at=checkpoint.created_at,
            )
        else:
            entry.update(
                status=update.status,
                reason=update.reason,
                error_node=update.error_node,
                output=update.output,
                updated_at=datetime.now().astimezone(),
            )
        entry.append(events)
        self._put_calls(entry, calls)
        for approval in approvals:
            self._approvals[approval.approval_id] = approval

    def _check_approvals(self, run_id: RunId, approvals: Sequence[ApprovalRecord]) -> None:
        check_approvals(run_id, approvals)
        for approval in approvals:
            if approval.approval_id in self._approvals:
                raise StoreError(
                    f"approval {approval.approval_id!r} already exists; nothing was written"
                )

    # The approval methods yield to the event loop as a real store's calls do, so
    # concurrent deciders interleave here as they would against a database.

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        await anyio.lowlevel.checkpoint()
        return self._approvals.get(approval_id)

    async def list_approvals(
        self, *, run_id: RunId | None = None, status: ApprovalStatus | None = None
    ) -> list[ApprovalRecord]:
        await anyio.lowlevel.checkpoint()
        wanted = None if status is None else ApprovalStatus(status)
        found = [
            a
            for a in self._approvals.values()
            if (run_id is None or a.run_id == run_id) and (wanted is None or a.status is wanted)
        ]
        found.sort(key=lambda a: _time_key(a.requested_at))  # stable: ties keep their order
        return found

    async def decide_approval(self, record: ApprovalRecord, events: Sequence[Event]) -> None:
        check_decision(record)
        await anyio.lowlevel.checkpoint()  # then compare-and-set without yielding
        stored = self._approvals.get(record.approval_id)
        refused = decision_refused(record, stored)
        if refused is not None:
            raise refused
        assert stored is not None
        entry = self._run(stored.run_id)
        self._approvals[record.approval_id] = replace(
            stored,
            status=ApprovalStatus(record.status),
            decided_by=record.decided_by,
            decided_at=record.decided_at,
            comment=record.comment,
            edits=record.edits,
        )
        entry.append(events)

    @staticmethod
    def _fence(entry: _Run, lease: Lease | None, run_id: RunId) -> None:
        if lease is not None and (entry.lease is None or entry.lease.epoch != lease.epoch):
            raise LeaseLostError("another owner took over this run", run_id=run_id)

    def _check_calls(self, run_id: RunId, calls: Sequence[ToolCallRecord]) -> None:
        check_calls(run_id, calls)
        for call in calls:
            owner = self._call_runs.get(call.key, run_id)
            if owner != run_id:
                raise StoreError(
                    f"call key {call.key!r} is already journaled for another run ({owner}); "
                    "nothing was written"
                )

    def _put_calls(self, entry: _Run, calls: Sequence[ToolCallRecord]) -> None:
        for call in calls:
            entry.calls[call.key] = call  # a replaced key keeps its place
            self._call_runs[call.key] = call.run_id

    async def journal(
        self,
        lease: Lease | None,
        calls: Sequence[ToolCallRecord],
        events: Sequence[Event],
        *,
        run_id: RunId,
    ) -> None:
        entry = self._run(run_id)
        self._fence(entry, lease, run_id)
        self._check_calls(run_id, calls)
        entry.append(events)
        self._put_calls(entry, calls)

    async def list_calls(self, run_id: RunId, *, seq: int | None = None) -> list[ToolCallRecord]:
        calls = self._run(run_id).calls.values()
        return [c for c in calls if seq is None or c.seq == seq]

    async def verify_events(self, run_id: RunId | None = None) -> AuditReport:
        entries = list(self._runs.items()) if run_id is None else [(run_id, self._run(run_id))]
        checked = 0
        problems: list[str] = []
        for rid, entry in entries:
            rows = sorted(((a.n, a.data, a.hash) for a in entry.audit), key=lambda r: r[0])
            count, found = check_chain(rid, rows, entry.head)
            checked += count
            problems += found
        return AuditReport(ok=not problems, checked=checked, problems=problems)

    async def audit_rows(self, run_id: RunId) -> list[AuditRow]:
        prev = genesis(run_id)
        rows: list[AuditRow] = []
        for a in self._run(run_id).audit:
            rows.append(audit_row(run_id, a.n, a.data, prev, a.hash))
            prev = a.hash
        return rows

    async def get_run(self, run_id: RunId) -> RunRecord:
        return self._run(run_id).record

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        graph: str | None = None,
        parent_run: RunId | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = 100,
    ) -> list[RunRecord]:
        found = [
            e.record
            for e in self._runs.values()
            if (status is None or e.record.status == status)
            and (graph is None or e.record.graph == graph)
            and (parent_run is None or e.record.parent_run == parent_run)
            and (created_after is None or e.record.created_at >= created_after)
            and (created_before is None or e.record.created_at < created_before)
        ]
        order = {run_id: i for i, run_id in enumerate(self._runs)}
        found.sort(key=lambda r: (r.created_at, order[r.run_id]), reverse=True)
        return found if limit is None else found[:limit]

    async def list_checkpoints(self, run_id: RunId) -> list[CheckpointInfo]:
        return [cp.info for cp in self._run(run_id).checkpoints]

    async def get_checkpoint(
        self, run_id: RunId, at: CheckpointId | int | None = None
    ) -> StoredCheckpoint:
        entry = self._run(run_id)
        if at is None:
            cp = entry.checkpoints[-1]
        elif isinstance(at, int):
            matches = [c for c in entry.checkpoints if c.info.seq == at]
            if not matches:
                raise CheckpointNotFoundError(f"run {run_id} has no checkpoint with seq {at}")
            cp = matches[0]
        else:
            found = self._by_checkpoint.get(at)
            if found is None or found.info.run_id != run_id:
                raise CheckpointNotFoundError(f"run {run_id} has no checkpoint {at!r}")
            cp = found
        return StoredCheckpoint(cp.info, {k: _value(v) for k, v in cp.state.items()}, cp.meta)

    async def list_events(self, run_id: RunId) -> list[Event]:
        return list(self._run(run_id).events)

    async def acquire_lease(
        self, run_id: RunId, owner: str, ttl: float, *, steal_from: str | None = None
    ) -> Lease:
        entry = self._run(run_id)
        now = time.time()
        current = entry.lease
        if (
            current is not None
            and current.owner != owner
            and current.owner != steal_from
            and current.expires_at > now
        ):
            raise RunLockedError(
                f"run {run_id} is being advanced by {current.owner} "
                f"(lease expires in {current.expires_at - now:.1f}s)",
                owner=current.owner,
                expires_at=current.expires_at,
            )
        entry.epoch += 1
        entry.lease = Lease(run_id, owner, entry.epoch, now + ttl)
        return entry.lease

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        entry = self._run(lease.run_id)
        if entry.lease is None or entry.lease.epoch != lease.epoch:
            raise LeaseLostError("another owner took over this run", run_id=lease.run_id)
        entry.lease = replace(lease, expires_at=time.time() + ttl)
        return entry.lease

    async def release_lease(self, lease: Lease) -> None:
        entry = self._runs.get(lease.run_id)
        if entry is not None and entry.lease is not None and entry.lease.epoch == lease.epoch:
            entry.lease = None

    async def delete_run(self, run_id: RunId) -> None:
        entry = self._run(run_id)
        for cp in entry.checkpoints:
            self._by_checkpoint.pop(cp.info.checkpoint_id, None)
        for key in entry.calls:
            self._call_runs.pop(key, None)
        for approval_id in [a for a, r in self._approvals.items() if r.run_id == run_id]:
            del self._approvals[approval_id]
        del self._runs[run_id]

    async def prune_runs(self, *, created_before: datetime, terminal_only: bool = True) -> int:
        doomed = [
            run_id
            for run_id, e in self._runs.items()
            if e.record.created_at < created_before
            and (not terminal_only or e.record.status.is_terminal)
        ]
        for run_id in doomed:
            await self.delete_run(RunId(run_id))
        return len(doomed)

    async def prune_checkpoints(self, run_id: RunId, *, keep_last: int) -> int:
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1: the head is always kept")
        entry = self._run(run_id)
        forked = {
            cp.info.parent
            for other in self._runs.values()
            if other is not entry
            for cp in other.checkpoints
        }
        head = entry.record.head
        keep_ids = {cp.info.checkpoint_id for cp in entry.checkpoints[-keep_last:]}
        kept: list[_Checkpoint] = []
        gone = 0
        for cp in entry.checkpoints:
            cid = cp.info.checkpoint_id
            if cid in keep_ids or cid == head or cid in forked:
                kept.append(cp)
            else:
                self._by_checkpoint.pop(cid, None)
                gone += 1
        entry.checkpoints = kept
        return gone

    async def compact(self) -> None:
        return None

    async def close(self) -> None:
        return None
