"""The store Protocol: what the runtime needs from durable storage, and nothing more.

The runtime talks to storage only through :class:`Store`. Every backend (the in-memory
store, SQLite, later PostgreSQL) passes the same conformance suite in
``tests/store_conformance.py``.

State travels as JSON bytes per field. A checkpoint write carries only what the step
changed: a :class:`SetField` with the field's whole new value, or an
:class:`AppendField` with just the items appended to a list field. Reading a checkpoint
gives every field's whole value, so a backend may store deltas however it likes as long
as reads are exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from graphorch._record import Record, field
from graphorch.events import Event
from graphorch.store.approvals import ApprovalRecord, ApprovalStatus
from graphorch.store.journal import ToolCallRecord
from graphorch.types import CheckpointId, RunId, RunStatus

__all__ = [
    "AppendField",
    "AuditReport",
    "AuditRow",
    "CheckpointInfo",
    "CheckpointWrite",
    "FieldWrite",
    "Lease",
    "PendingCommit",
    "PipelinedStore",
    "RunRecord",
    "RunUpdate",
    "SetField",
    "Store",
    "StoredCheckpoint",
    "apply_append",
    "join_lists",
    "pipelined",
]


class SetField(Record):
    """The field's whole new value, as JSON."""

    json: bytes


class AppendField(Record):
    """Items appended to a list field: ``items`` is a JSON array of just the new items."""

    items: bytes


FieldWrite = SetField | AppendField


def apply_append(current: bytes, items: bytes) -> bytes:
    """The JSON of list ``current`` with the JSON array ``items`` appended."""
    if items == b"[]":
        return current
    if current == b"[]":
        return items
    return current[:-1] + b"," + items[1:]


def join_lists(first: bytes, segments: list[bytes]) -> bytes:
    """``first`` with every JSON array in ``segments`` appended, byte for byte as
    repeated :func:`apply_append` would give, in one copy."""
    parts: list[bytes] = []
    empty = first == b"[]"
    parts.append(b"[" if empty else first[:-1])
    for seg in segments:
        if seg == b"[]":
            continue
        if empty:
            empty = False
        else:
            parts.append(b",")
        parts.append(seg[1:-1])
    if empty:
        return b"[]"
    parts.append(b"]")
    return b"".join(parts)


class RunRecord(Record):
    """One run as stored.

    Attributes:
        run_id: the run's id.
        graph: the graph's name.
        graph_fingerprint: a hash of the graph's structure, to refuse resuming a run
            with a graph that changed shape.
        status: where it stands.
        reason: why it stopped (None while running).
        error_node: the node to blame for a failure, if any.
        created_at: when it started.
        updated_at: when it last changed.
        head: its latest checkpoint.
        seq: the latest checkpoint's sequence number.
        next_nodes: the nodes it will run next.
        parent_run: the run that delegated to it, if any.
        forked_from: the checkpoint it was forked from, if any.
        output: the output of its end node, as JSON, once it succeeded.
    """

    run_id: RunId
    graph: str
    graph_fingerprint: str
    status: RunStatus
    reason: str | None
    error_node: str | None
    created_at: datetime
    updated_at: datetime
    head: CheckpointId
    seq: int
    next_nodes: tuple[str, ...]
    parent_run: RunId | None = None
    forked_from: CheckpointId | None = None
    output: bytes | None = None


class RunUpdate(Record):
    """How a run's row changes with a commit (its head follows the checkpoint)."""

    status: RunStatus
    reason: str | None = None
    error_node: str | None = None
    output: bytes | None = None


class CheckpointWrite(Record):
    """A checkpoint to commit.

    Attributes:
        checkpoint_id: ``"<run_id>:<seq>"``.
        run_id: its run.
        seq: 0 for a run's first checkpoint, then +1 per committed step.
        parent: the checkpoint it follows (for a fork's first checkpoint, the source
            checkpoint in the other run), None for a new run's first.
        nodes: the node(s) whose step produced it (empty for a first checkpoint).
        next_nodes: the nodes to run next (empty when the run ended).
        status: the run's status as of this checkpoint.
        writes: what the step changed, per field. A first checkpoint sets every field.
        meta: the runtime's bookkeeping (step count, visits, ...) as JSON.
        created_at: when it was made.
    """

    checkpoint_id: CheckpointId
    run_id: RunId
    seq: int
    parent: CheckpointId | None
    nodes: tuple[str, ...]
    next_nodes: tuple[str, ...]
    status: RunStatus
    writes: Mapping[str, FieldWrite]
    meta: bytes
    created_at: datetime


class CheckpointInfo(Record):
    """A checkpoint in a run's history, without its state."""

    checkpoint_id: CheckpointId
    run_id: RunId
    seq: int
    parent: CheckpointId | None
    nodes: tuple[str, ...]
    next_nodes: tuple[str, ...]
    status: RunStatus
    created_at: datetime
    changed: tuple[str, ...] = ()


class StoredCheckpoint(Record):
    """A checkpoint with the whole state: ``state`` maps every field to its JSON."""

    info: CheckpointInfo
    state: Mapping[str, bytes]
    meta: bytes


class Lease(Record):
    """Ownership of a run by one process.

    Every write made under a lease is fenced by ``epoch``: once another owner took the
    run (a higher epoch), writes under the old lease are refused with
    :class:`~graphorch.exceptions.LeaseLostError`.
    """

    run_id: RunId
    owner: str
    epoch: int
    expires_at: float


class AuditReport(Record):
    """What :meth:`Store.verify_events` found.

    Attributes:
        ok: no problem found.
        checked: how many event rows were checked.
        problems: one line per problem, naming the run and the event's position in it
            and saying what is wrong: ``edited`` (a hash does not match), ``inserted``
            (a row that does not belong in the chain) or ``deleted`` (positions missing
            from the chain, including from its end).
    """

    ok: bool
    checked: int
    problems: list[str] = field(default_factory=lambda: [])


class AuditRow(Record):
    """One event of the audit log as exported (one JSON Lines row).

    Attributes:
        run_id: its run.
        position: its place in the run's chain: 0, 1, 2, ...
        event: the event in its :meth:`~graphorch.events.Event.to_data` form.
        prev_hash: the previous row's hash (hex; for position 0, the run's chain start).
        hash: ``sha256(prev_hash + the event's stored JSON)``, hex.
    """

    run_id: RunId
    position: int
    event: dict[str, Any]
    prev_hash: str
    hash: str


class PendingCommit(Protocol):
    """A step commit that was queued and may still be running.

    It may also have ``durable() -> bool`` (True once known durable, never blocking):
    the runtime then lets go of commits that are done before the run next waits.
    """

    async def wait(self) -> None:
        """Return once the commit is durable; raise what :meth:`Store.commit_step` would."""
        ...


@runtime_checkable
class PipelinedStore(Protocol):
    """Optional: a store that can queue a commit and let the runtime go on meanwhile.

    The runtime overlaps the next step's work with the queued commit, and waits for
    it before any later write, tool call or answer to the user. A run may queue
    several commits before it waits; they must be applied in the order they were
    queued, and a commit whose parent checkpoint is missing (because the commit
    before it failed) must fail and write nothing.
    """

    def submit_step(
        self,
        lease: Lease | None,
        checkpoint: CheckpointWrite | None,
        update: RunUpdate,
        events: Sequence[Event],
        *,
        run_id: RunId,
        calls: Sequence[ToolCallRecord] = (),
        approvals: Sequence[ApprovalRecord] = (),
    ) -> PendingCommit:
        """Queue what :meth:`Store.commit_step` commits, and return at once."""
        ...

    def submit_release(self, lease: Lease, status: RunStatus) -> PendingCommit:
        """Queue :meth:`Store.release_lease` behind the queued commits; return at once.

        The lease is given up only if the run's stored status is ``status``: if a
        commit queued before it failed, the run keeps its owner.
        """
        ...

    async def create_run_leased(
        self,
        run: RunRecord,
        checkpoint: CheckpointWrite,
        events: Sequence[Event],
        *,
        owner: str,
        ttl: float,
    ) -> Lease:
        """:meth:`Store.create_run` then :meth:`Store.acquire_lease`, in one transaction."""
        ...


def pipelined(store: object) -> PipelinedStore | None:
    """``store`` as a :class:`PipelinedStore`, or None if it is not one.

    Asked of the class: a wrapper that forwards unknown attributes to a pipelined
    store must still see every commit go through its own ``commit_step``.
    """
    if hasattr(type(store), "submit_step") and isinstance(store, PipelinedStore):
        return store
    return None


@runtime_checkable
class Store(Protocol):
    """Durable storage for runs, checkpoints and events.

    Every method is async and must not block the event loop. Every write is atomic:
    it happens whole or not at all.
    """

    async def create_run(
        self, run: RunRecord, checkpoint: CheckpointWrite, events: Sequence[Event]
    ) -> None:
        """Store a new run with its first checkpoint and events, in one transaction.

        Raises:
            StoreError: a run with this id already exists.
        """
        ...

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
        """Commit one step in ONE transaction: the checkpoint (if any), the run's new
        status (its head moves to the checkpoint), the events, the journal records
        of the step's tool calls (``calls``, upserted by key as in :meth:`journal`),
        and new approval requests (``approvals``, inserted).

        Raises:
            LeaseLostError: ``lease`` is no longer the run's current lease; nothing
                was written.
            RunNotFoundError: no such run.
            StoreError: a call record or an approval belongs to another run, or an
                approval with the same id already exists; nothing was written.
        """
        ...

    async def journal(
        self,
        lease: Lease | None,
        calls: Sequence[ToolCallRecord],
        events: Sequence[Event],
        *,
        run_id: RunId,
    ) -> None:
        """Upsert call records and append events, in ONE transaction.

        A record replaces any earlier record with the same ``key`` (a started call
        gets its outcome; an operator settles a call) and keeps that record's place in
        :meth:`list_calls`.

        Args:
            lease: the run's owner's lease, fencing the write as in
                :meth:`commit_step`; None for an operator's action (not fenced).

        Raises:
            LeaseLostError: ``lease`` is no longer the run's current lease; nothing
                was written.
            RunNotFoundError: no such run.
            StoreError: a call record belongs to another run; nothing was written.
        """
        ...

    async def list_calls(self, run_id: RunId, *, seq: int | None = None) -> list[ToolCallRecord]:
        """The run's journaled calls (only those of step ``seq`` when given), in the
        order they were first journaled. Raises RunNotFoundError."""
        ...

    async def get_run(self, run_id: RunId) -> RunRecord:
        """The run's record. Raises RunNotFoundError."""
        ...

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
        """Runs matching every filter given, newest first (by ``created_at``, then the
        most recently created first among equal times)."""
        ...

    async def list_checkpoints(self, run_id: RunId) -> list[CheckpointInfo]:
        """The run's checkpoints in sequence order. Raises RunNotFoundError."""
        ...

    async def get_checkpoint(
        self, run_id: RunId, at: CheckpointId | int | None = None
    ) -> StoredCheckpoint:
        """A checkpoint with the whole state: by id, by sequence number, or the head.

        Raises:
            RunNotFoundError: no such run.
            CheckpointNotFoundError: no such checkpoint in that run.
        """
        ...

    async def list_events(self, run_id: RunId) -> list[Event]:
        """The run's events in the order they were committed. Raises RunNotFoundError."""
        ...

    async def verify_events(self, run_id: RunId | None = None) -> AuditReport:
        """Check the audit log's hash chains: one run's, or every run's when None.

        Finds every edited, inserted or deleted event row (also rows deleted from the
        end of a run's log) and names its run and position.

        Raises:
            RunNotFoundError: ``run_id`` was given and there is no such run (nor any
                event row of it).
        """
        ...

    async def audit_rows(self, run_id: RunId) -> list[AuditRow]:
        """The run's audit log as stored, with hashes, in position order (what an
        export writes as JSON Lines). Raises RunNotFoundError."""
        ...

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        """An approval as stored, or None if there is no such approval."""
        ...

    async def list_approvals(
        self, *, run_id: RunId | None = None, status: ApprovalStatus | None = None
    ) -> list[ApprovalRecord]:
        """Approvals matching every filter given, oldest first (by ``requested_at``,
        then in the order they were stored)."""
        ...

    async def decide_approval(self, record: ApprovalRecord, events: Sequence[Event]) -> None:
        """Record a decision: compare-and-set, in ONE transaction.

        Writes ``record``'s decision (``status``, ``decided_by``, ``decided_at``,
        ``comment``, ``edits``) and appends ``events`` to its run's audit log only if
        the stored approval is still pending. Of many racing deciders exactly one wins.
        Not fenced by a lease: deciders are people, not the run's owner.

        Raises:
            AlreadyDecidedError: it is no longer pending; nothing was written.
            ApprovalNotFoundError: no approval with this id.
            ValueError: ``record`` is not a decision (its status is pending).
            StoreError: ``record`` names another run than the stored approval.
        """
        ...

    async def acquire_lease(
        self, run_id: RunId, owner: str, ttl: float, *, steal_from: str | None = None
    ) -> Lease:
        """Take ownership of a run for ``ttl`` seconds, with a new, higher epoch.

        Args:
            steal_from: an owner known to be gone (its process died): if it still
                holds the lease, the lease is taken even though it has not expired.
                The new epoch fences out any write the old owner still attempts.

        Raises:
            RunLockedError: another owner (not ``steal_from``) holds an unexpired
                lease; its ``owner`` and ``expires_at`` say who and until when.
            RunNotFoundError: no such run.
        """
        ...

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend a lease. Raises LeaseLostError if another owner took the run."""
        ...

    async def release_lease(self, lease: Lease) -> None:
        """Give a lease up (no error if it was already lost)."""
        ...

    async def delete_run(self, run_id: RunId) -> None:
        """Delete a run with its checkpoints, events, journaled calls and approvals. Raises
        RunNotFoundError.

        Runs forked from it, or delegated by it, are kept and stay readable.
        """
        ...

    async def prune_runs(self, *, created_before: datetime, terminal_only: bool = True) -> int:
        """Delete runs created before ``created_before`` (with their checkpoints,
        events, journaled calls and approvals); returns how many were deleted.

        Args:
            created_before: runs created strictly before this are deleted.
            terminal_only: only delete runs that can never advance again (succeeded,
                failed, cancelled); runs still running, waiting or needing attention
                are kept.
        """
        ...

    async def prune_checkpoints(self, run_id: RunId, *, keep_last: int) -> int:
        """Delete a run's checkpoints except its last ``keep_last``; returns how many.

        The head is always kept, and so is every checkpoint another run's checkpoint
        names as its parent (a fork point). Kept checkpoints read back exactly as
        before; the oldest kept one's ``parent`` may then name a pruned checkpoint.

        Raises:
            ValueError: ``keep_last`` is below 1.
            RunNotFoundError: no such run.
        """
        ...

    async def compact(self) -> None:
        """Reclaim space left by deleted runs and checkpoints."""
        ...

    async def close(self) -> None:
        """Release the store's resources."""
        ...
