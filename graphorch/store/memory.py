"""An in-memory store: fast, for tests, notebooks and runs that need no durability."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from graphorch.events import Event
from graphorch.exceptions import (
    CheckpointNotFoundError,
    LeaseLostError,
    RunLockedError,
    RunNotFoundError,
    StoreError,
)
from graphorch.store.base import (
    AppendField,
    CheckpointInfo,
    CheckpointWrite,
    Lease,
    RunRecord,
    RunUpdate,
    StoredCheckpoint,
    apply_append,
)
from graphorch.types import CheckpointId, RunId, RunStatus

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Checkpoint:
    info: CheckpointInfo
    state: dict[str, bytes]
    meta: bytes


@dataclass(slots=True)
class _Run:
    record: RunRecord
    checkpoints: list[_Checkpoint] = field(default_factory=lambda: [])
    events: list[Event] = field(default_factory=lambda: [])
    lease: Lease | None = None
    epoch: int = 0


class MemoryStore:
    """Keeps everything in this process's memory; gone when the process ends.

    Passes the same conformance suite as :class:`~graphorch.SQLiteStore`.
    """

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._by_checkpoint: dict[str, _Checkpoint] = {}

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
            state: dict[str, bytes] = {}
        else:
            parent = self._by_checkpoint.get(write.parent)
            if parent is None:
                raise CheckpointNotFoundError(f"parent checkpoint {write.parent!r} does not exist")
            state = dict(parent.state)
        for name, change in write.writes.items():
            if isinstance(change, AppendField):
                state[name] = apply_append(state.get(name, b"[]"), change.items)
            else:
                state[name] = change.json
        info = CheckpointInfo(
            checkpoint_id=write.checkpoint_id,
            run_id=write.run_id,
            seq=write.seq,
            parent=write.parent,
            nodes=write.nodes,
            next_nodes=write.next_nodes,
            status=write.status,
            created_at=write.created_at,
            changed=tuple(write.writes),
        )
        return _Checkpoint(info, state, write.meta)

    async def create_run(
        self, run: RunRecord, checkpoint: CheckpointWrite, events: Sequence[Event]
    ) -> None:
        if run.run_id in self._runs:
            raise StoreError(f"a run with id {run.run_id!r} already exists")
        cp = self._materialize(checkpoint)
        entry = _Run(run)
        entry.checkpoints.append(cp)
        entry.events.extend(events)
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
    ) -> None:
        entry = self._run(run_id)
        if lease is not None and (entry.lease is None or entry.lease.epoch != lease.epoch):
            raise LeaseLostError("another owner took over this run", run_id=run_id)
        record = entry.record
        if checkpoint is not None:
            cp = self._materialize(checkpoint)
            entry.checkpoints.append(cp)
            self._by_checkpoint[checkpoint.checkpoint_id] = cp
            record = replace(
                record,
                head=checkpoint.checkpoint_id,
                seq=checkpoint.seq,
                next_nodes=checkpoint.next_nodes,
            )
        entry.record = replace(
            record,
            status=update.status,
            reason=update.reason,
            error_node=update.error_node,
            output=update.output,
            updated_at=checkpoint.created_at if checkpoint else datetime.now().astimezone(),
        )
        entry.events.extend(events)

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
        return StoredCheckpoint(cp.info, dict(cp.state), cp.meta)

    async def list_events(self, run_id: RunId) -> list[Event]:
        return list(self._run(run_id).events)

    async def acquire_lease(self, run_id: RunId, owner: str, ttl: float) -> Lease:
        entry = self._run(run_id)
        now = time.time()
        current = entry.lease
        if current is not None and current.owner != owner and current.expires_at > now:
            raise RunLockedError(
                f"run {run_id} is being advanced by {current.owner} "
                f"(lease expires in {current.expires_at - now:.1f}s)"
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
