"""The default durable store: one SQLite file, shared safely by many runs and processes."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from graphorch.events import Event, event_from_data
from graphorch.exceptions import (
    CheckpointNotFoundError,
    LeaseLostError,
    RunLockedError,
    RunNotFoundError,
    StoreError,
)
from graphorch.store import _sqlite_approvals as approvals_sql
from graphorch.store import _sqlite_journal as journal_sql
from graphorch.store._audit import event_json
from graphorch.store._sqlite_events import compact_many, expand, expander
from graphorch.store._sqlite_retention import collect_garbage, delete_runs, prune_checkpoints
from graphorch.store._sqlite_rows import (
    CP_COLS,
    CP_FROM,
    RK,
    RUN_COLS,
    RUN_SELECT,
    TERMINAL,
    info_from_row,
    run_from_row,
    runs_query,
    split_id,
)
from graphorch.store._sqlite_schema import check_file, open_connection
from graphorch.store._sqlite_values import (
    decode_fields,
    encode_time,
    materialize,
)
from graphorch.store._sqlite_worker import Job, Worker
from graphorch.store._sqlite_writes import RowWriter
from graphorch.store.approvals import (
    ApprovalRecord,
    ApprovalStatus,
    check_approvals,
    check_decision,
)
from graphorch.store.base import (
    AuditReport,
    AuditRow,
    CheckpointInfo,
    CheckpointWrite,
    Lease,
    RunRecord,
    RunUpdate,
    StoredCheckpoint,
)
from graphorch.store.journal import ToolCallRecord, check_calls
from graphorch.types import CheckpointId, RunId, RunStatus

__all__ = ["SQLiteStore"]


def _payload(run_id: str, events: Sequence[Event]) -> list[tuple[str, str]]:
    """Each event's JSON as hashed and its compact stored form, made by the caller so
    the writer thread only inserts."""
    texts = [event_json(event) for event in events]
    return list(zip(texts, compact_many(texts, run_id), strict=True))


@dataclass
class _Fence:
    """A run row's lease and status as the writer last saw them."""

    epoch: int
    owner: str | None
    expires: float | None
    status: str
    reason: str | None
    error_node: str | None
    output: bytes | None
    rk: int  # the run's integer key in every other table

    @property
    def row_state(self) -> tuple[str, str | None, str | None, bytes | None]:
        return (self.status, self.reason, self.error_node, self.output)


class _StepCommit:
    """One step's writes, run in the writer thread (see :meth:`SQLiteStore.submit_step`).

    An object rather than a closure: a closure over these values is a function and
    nine cells for the garbage collector to track, and with many runs stepping at
    once every queued commit outlives a young-generation collection.
    """

    __slots__ = (
        "approvals",
        "calls",
        "checkpoint",
        "lease",
        "payload",
        "run_id",
        "store",
        "wanted",
    )

    def __init__(
        self,
        store: SQLiteStore,
        lease: Lease | None,
        run_id: RunId,
        checkpoint: CheckpointWrite | None,
        wanted: tuple[str, str | None, str | None, bytes | None],
        payload: list[tuple[str, str]],
        calls: Sequence[ToolCallRecord],
        approvals: Sequence[ApprovalRecord],
    ) -> None:
        self.store = store
        self.lease = lease
        self.run_id = run_id
        self.checkpoint = checkpoint
        self.wanted = wanted
        self.payload = payload
        self.calls = calls
        self.approvals = approvals

    def __call__(self, conn: sqlite3.Connection) -> None:
        store, run_id, checkpoint, wanted = self.store, self.run_id, self.checkpoint, self.wanted
        # Fenced in the same transaction as the writes: a stale epoch raises here,
        # before anything is written.
        fence = store._fenced(conn, self.lease, run_id)  # pyright: ignore[reportPrivateUsage]
        if checkpoint is None or wanted != fence.row_state:
            when = checkpoint.created_at if checkpoint else datetime.now().astimezone()
            us, off = encode_time(when)
            conn.execute(
                "UPDATE runs SET status = ?, reason = ?, error_node = ?, output = ?,"
                " updated_us = ?, updated_off = ? WHERE run_id = ?",
                (*wanted, us, off, run_id),
            )
            fence.status, fence.reason, fence.error_node, fence.output = wanted
        rows = store._rows  # pyright: ignore[reportPrivateUsage]
        if checkpoint is not None:
            rows.insert_checkpoint(conn, fence.rk, checkpoint)
        rows.insert_events(conn, fence.rk, run_id, self.payload)
        if self.calls:
            journal_sql.put_calls(conn, fence.rk, run_id, self.calls)
        if self.approvals:
            approvals_sql.insert(conn, run_id, self.approvals)


class SQLiteStore:
    """Runs, checkpoints and events in one SQLite file (WAL mode).

    Every call runs off the event loop: writes in one writer thread that commits
    everything queued at that moment in one transaction (group commit; a call that
    fails fails alone; each caller answered only after COMMIT), reads in a reader
    thread. Works under asyncio and trio.

    Several processes may share the file: writes take ``BEGIN IMMEDIATE`` and wait
    (busy timeout, then retries) instead of failing with "database is locked".

    Args:
        path: the database file; default ``$GRAPHORCH_DB``, else ``graphorch.db`` in
            the working directory. Created, with its schema, if missing.
        durability: ``"normal"`` (default): ``synchronous=NORMAL`` in WAL mode; a
            committed step survives a crash of the process, but the last few commits
            may be lost if the machine loses power. ``"full"``: ``synchronous=FULL``;
            every commit is fsynced and survives power loss, at some cost in commits/s.
        busy_timeout: seconds a write waits for another process's write lock before
            retrying.

    Raises:
        DatabaseError: (from the first call) the file is not a graphorch database, is
            corrupt, or was written by a newer graphorch. The file is left untouched.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        durability: Literal["normal", "full"] = "normal",
        busy_timeout: float = 5.0,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        resolved = os.fspath(path) if path is not None else os.environ.get("GRAPHORCH_DB")
        resolved = resolved or "graphorch.db"
        if resolved == ":memory:" or resolved.startswith("file:"):
            raise ValueError("SQLiteStore needs a file path; use MemoryStore() for memory")
        self.path: str = resolved
        self.durability: Literal["normal", "full"] = durability
        self._busy_timeout = busy_timeout
        # Writer-thread caches; valid only while no other connection committed.
        self._rows = RowWriter()
        self._fence: dict[str, _Fence] = {}
        self._data_version: int | None = None
        self._writer = Worker(
            "graphorch-sqlite-writer",
            self._open_writer,
            resolved,
            transactional=True,
            on_begin=self._on_begin,
            on_rollback=self._clear_caches,
            defer=self._rows.defer,
            flush=self._rows.flush,
        )
        self._reader = Worker(
            "graphorch-sqlite-reader", self._open_reader, resolved, transactional=False
        )

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, durability={self.durability!r})"

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connections and caches (threads) -----------------------------------------

    def _open_writer(self) -> sqlite3.Connection:
        check_file(self.path)
        return open_connection(
            self.path, durability=self.durability, busy_timeout=self._busy_timeout, writer=True
        )

    def _open_reader(self) -> sqlite3.Connection:
        self._writer.opened.wait()
        error = self._writer.open_error
        if error is not None:
            raise error
        return open_connection(
            self.path, durability=self.durability, busy_timeout=self._busy_timeout, writer=False
        )

    def _clear_caches(self) -> None:
        self._rows.clear()
        self._fence.clear()

    def _on_begin(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if version != self._data_version:
            self._clear_caches()  # another connection committed: rows may be gone
            self._data_version = version

    def _get_fence(self, conn: sqlite3.Connection, run_id: str) -> _Fence:
        fence = self._fence.get(run_id)
        if fence is None:
            row = conn.execute(
                "SELECT lease_epoch, lease_owner, lease_expires, status, reason, error_node,"
                " output, rk FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise RunNotFoundError(run_id)
            fence = _Fence(*row)
            self._remember_fence(run_id, fence)
        return fence

    def _remember_fence(self, run_id: str, fence: _Fence) -> None:
        if len(self._fence) > 10_000:
            self._fence.clear()
        self._fence[run_id] = fence

    # -- writes -------------------------------------------------------------------

    async def create_run(
        self, run: RunRecord, checkpoint: CheckpointWrite, events: Sequence[Event]
    ) -> None:
        """Store a new run with its first checkpoint and events, in one transaction."""
        await self._writer.call(self._create_job(run, checkpoint, events), deferrable=True)

    async def create_run_leased(
        self,
        run: RunRecord,
        checkpoint: CheckpointWrite,
        events: Sequence[Event],
        *,
        owner: str,
        ttl: float,
    ) -> Lease:
        """:meth:`create_run` and :meth:`acquire_lease` in one transaction: the run's
        row is written once, holding the lease."""
        lease = await self._writer.call(
            self._create_job(run, checkpoint, events, (owner, ttl)), deferrable=True
        )
        assert lease is not None  # a create job given an owner returns its lease
        return lease

    def _create_job(
        self,
        run: RunRecord,
        checkpoint: CheckpointWrite,
        events: Sequence[Event],
        lease_for: tuple[str, float] | None = None,
    ) -> Callable[[sqlite3.Connection], Lease | None]:
        """The job storing a new run; with ``lease_for`` (owner, ttl), leased to it."""
        payload = _payload(run.run_id, events)
        cus, coff = encode_time(run.created_at)
        uus, uoff = encode_time(run.updated_at)

        def job(conn: sqlite3.Connection) -> Lease | None:
            lease: Lease | None = None
            if lease_for is not None:
                lease = Lease(run.run_id, lease_for[0], 1, time.time() + lease_for[1])
            owner, epoch, expires = (
                (None, 0, None) if lease is None else (lease.owner, lease.epoch, lease.expires_at)
            )
            try:
                cur = conn.execute(
                    f"INSERT INTO runs ({RUN_COLS}, lease_owner, lease_epoch, lease_expires)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.run_id,
                        run.graph,
                        run.graph_fingerprint,
                        run.status.value,
                        run.reason,
                        run.error_node,
                        cus,
                        coff,
                        uus,
                        uoff,
                        run.parent_run,
                        run.forked_from,
                        run.output,
                        owner,
                        epoch,
                        expires,
                    ),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"a run with id {run.run_id!r} already exists") from None
            rk = int(cur.lastrowid or 0)
            # The writer knows the row it just wrote: the run's first commit and lease
            # checks need not read it back.
            self._remember_fence(
                run.run_id,
                _Fence(
                    epoch,
                    owner,
                    expires,
                    run.status.value,
                    run.reason,
                    run.error_node,
                    run.output,
                    rk,
                ),
            )
            if checkpoint.run_id == run.run_id:
                self._rows.insert_checkpoint(conn, rk, checkpoint)
            else:
                self._rows.insert_checkpoint(
                    conn, self._get_fence(conn, checkpoint.run_id).rk, checkpoint
                )
            self._rows.start_chain(conn, rk, run.run_id, payload)
            return lease

        return job

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
        """Commit one step in one transaction, fenced by ``lease``'s epoch."""
        pending = self.submit_step(
            lease, checkpoint, update, events, run_id=run_id, calls=calls, approvals=approvals
        )
        await pending.wait()

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
    ) -> Job[None]:
        """Queue :meth:`commit_step`'s transaction and return at once (jobs run in order)."""
        check_calls(run_id, calls)
        if approvals:
            check_approvals(run_id, approvals)
        job = _StepCommit(
            self,
            lease,
            run_id,
            checkpoint,
            (update.status.value, update.reason, update.error_node, update.output),
            _payload(run_id, events),
            calls,
            approvals,
        )
        return self._writer.submit(job, deferrable=True)

    def _fenced(self, conn: sqlite3.Connection, lease: Lease | None, run_id: str) -> _Fence:
        """The run's fence, once ``lease`` (if any) is checked to still hold it."""
        fence = self._get_fence(conn, run_id)
        if lease is not None and (fence.owner is None or fence.epoch != lease.epoch):
            raise LeaseLostError(
                "another owner took over this run; this process wrote nothing more",
                run_id=run_id,
            )
        return fence

    async def journal(
        self,
        lease: Lease | None,
        calls: Sequence[ToolCallRecord],
        events: Sequence[Event],
        *,
        run_id: RunId,
    ) -> None:
        """Upsert call records and append events in one transaction, fenced by
        ``lease`` (None: an operator's write, not fenced)."""
        check_calls(run_id, calls)
        payload = _payload(run_id, events)

        def job(conn: sqlite3.Connection) -> None:
            fence = self._fenced(conn, lease, run_id)
            self._rows.insert_events(conn, fence.rk, run_id, payload)
            if calls:
                journal_sql.put_calls(conn, fence.rk, run_id, calls)

        await self._writer.call(job)

    async def decide_approval(self, record: ApprovalRecord, events: Sequence[Event]) -> None:
        """Record a decision if the approval is still pending (compare-and-set), with
        its events, in one transaction; else AlreadyDecidedError and nothing written."""
        check_decision(record)
        payload = _payload(record.run_id, events)

        def job(conn: sqlite3.Connection) -> None:
            approvals_sql.decide(conn, record)
            rk = self._get_fence(conn, record.run_id).rk
            self._rows.insert_events(conn, rk, record.run_id, payload)

        await self._writer.call(job)

    async def acquire_lease(
        self, run_id: RunId, owner: str, ttl: float, *, steal_from: str | None = None
    ) -> Lease:
        """Take ownership of a run for ``ttl`` seconds, with a new, higher epoch (also
        from ``steal_from``, a holder known to be gone, before its lease expires)."""
        return await self._writer.call(self._lease_job(run_id, owner, ttl, steal_from))

    def _lease_job(
        self, run_id: RunId, owner: str, ttl: float, steal_from: str | None
    ) -> Callable[[sqlite3.Connection], Lease]:
        def job(conn: sqlite3.Connection) -> Lease:
            fence = self._get_fence(conn, run_id)
            holder, epoch, expires = fence.owner, fence.epoch, fence.expires or 0.0
            now = time.time()
            if holder is not None and holder not in (owner, steal_from) and expires > now:
                raise RunLockedError(
                    f"run {run_id} is being advanced by {holder} (lease expires in "
                    f"{expires - now:.1f}s); wait for it, or resume once that process is gone",
                    owner=holder,
                    expires_at=expires,
                )
            lease = Lease(run_id, owner, int(epoch) + 1, now + ttl)
            conn.execute(
                "UPDATE runs SET lease_owner = ?, lease_epoch = ?, lease_expires = ? "
                "WHERE run_id = ?",
                (owner, lease.epoch, lease.expires_at, run_id),
            )
            fence.owner, fence.epoch, fence.expires = owner, lease.epoch, lease.expires_at
            return lease

        return job

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend a lease. Raises LeaseLostError if another owner took the run."""

        def job(conn: sqlite3.Connection) -> Lease:
            fence = self._get_fence(conn, lease.run_id)
            if fence.owner is None or fence.epoch != lease.epoch:
                raise LeaseLostError("another owner took over this run", run_id=lease.run_id)
            renewed = Lease(lease.run_id, lease.owner, lease.epoch, time.time() + ttl)
            conn.execute(
                "UPDATE runs SET lease_expires = ? WHERE run_id = ?",
                (renewed.expires_at, lease.run_id),
            )
            fence.expires = renewed.expires_at
            return renewed

        return await self._writer.call(job)

    async def release_lease(self, lease: Lease) -> None:
        """Give a lease up (no error if it was already lost)."""
        await self.submit_release(lease).wait()

    def submit_release(self, lease: Lease, status: RunStatus | None = None) -> Job[None]:
        """Queue :meth:`release_lease` and return at once (after queued commits); with
        ``status``, only if the run's stored status is that one."""
        sql = (
            "UPDATE runs SET lease_owner = NULL, lease_expires = NULL "
            "WHERE run_id = ? AND lease_epoch = ?"
        )
        args: tuple[Any, ...] = (lease.run_id, lease.epoch)
        if status is not None:
            sql += " AND status = ?"
            args += (status.value,)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(sql, args)
            self._fence.pop(lease.run_id, None)

        # it touches the run's lease columns only: rows deferred before it may wait
        return self._writer.submit(job, deferrable=True)

    def _collect_garbage(self, conn: sqlite3.Connection) -> None:
        collect_garbage(conn)
        self._clear_caches()

    async def delete_run(self, run_id: RunId) -> None:
        """Delete a run with its checkpoints, events and the values only it used.

        Runs forked from it keep their state (values are shared, not copied); their
        ``forked_from`` then names a checkpoint that no longer exists.
        """

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise RunNotFoundError(run_id)
            self._clear_caches()
            delete_runs(conn, [run_id])
            self._collect_garbage(conn)

        await self._writer.call(job)

    async def prune_runs(self, *, created_before: datetime, terminal_only: bool = True) -> int:
        """Delete runs created before ``created_before``; returns how many.

        Args:
            created_before: runs created strictly before this are deleted.
            terminal_only: keep runs that could still advance (running, waiting,
                needs_attention).
        """
        us, _ = encode_time(created_before)
        sql = "SELECT run_id FROM runs WHERE created_us < ?"
        args: list[Any] = [us]
        if terminal_only:
            sql += f" AND status IN ({','.join('?' * len(TERMINAL))})"
            args += TERMINAL

        def job(conn: sqlite3.Connection) -> int:
            ids = [str(r[0]) for r in conn.execute(sql, args)]
            if ids:
                self._clear_caches()
                delete_runs(conn, ids)
                self._collect_garbage(conn)
            return len(ids)

        return await self._writer.call(job)

    async def prune_checkpoints(self, run_id: RunId, *, keep_last: int) -> int:
        """Delete a run's checkpoints except the last ``keep_last``; returns how many.

        The head is always kept, and so is every checkpoint another run was forked
        from. The oldest kept checkpoint's ``parent`` then names a pruned one.

        Raises:
            ValueError: ``keep_last`` is below 1.
            RunNotFoundError: no such run.
        """
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1: the head is always kept")

        def job(conn: sqlite3.Connection) -> int:
            pruned = prune_checkpoints(conn, run_id, keep_last)
            if pruned:
                self._collect_garbage(conn)
            return pruned

        return await self._writer.call(job)

    async def compact(self) -> None:
        """Drop unreferenced values, fold the WAL into the file and VACUUM it."""
        await self._writer.call(self._collect_garbage)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

        await self._writer.call(job, solo=True)

    # -- reads ----------------------------------------------------------------------

    async def get_run(self, run_id: RunId) -> RunRecord:
        """The run's record. Raises RunNotFoundError."""

        def job(conn: sqlite3.Connection) -> RunRecord:
            row = conn.execute(f"{RUN_SELECT} WHERE r.run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFoundError(run_id)
            return run_from_row(row)

        return await self._reader.call(job)

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
        """Runs matching every filter given, newest first (served by an index)."""
        sql, args = self.list_runs_query(
            status=status,
            graph=graph,
            parent_run=parent_run,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
        )

        def job(conn: sqlite3.Connection) -> list[RunRecord]:
            return [run_from_row(r) for r in conn.execute(sql, args)]

        return await self._reader.call(job)

    list_runs_query = staticmethod(runs_query)
    """The SQL and parameters :meth:`list_runs` runs (for EXPLAIN QUERY PLAN)."""

    async def list_checkpoints(self, run_id: RunId) -> list[CheckpointInfo]:
        """The run's checkpoints in sequence order. Raises RunNotFoundError."""

        def job(conn: sqlite3.Connection) -> list[CheckpointInfo]:
            rows = conn.execute(
                f"SELECT {CP_COLS} FROM {CP_FROM} WHERE c.rk = {RK} ORDER BY c.seq",
                (run_id, run_id),
            ).fetchall()
            if (
                not rows
                and not conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            ):
                raise RunNotFoundError(run_id)
            return [info_from_row(r) for r in rows]

        return await self._reader.call(job)

    async def get_checkpoint(
        self, run_id: RunId, at: CheckpointId | int | None = None
    ) -> StoredCheckpoint:
        """A checkpoint with the whole state: by id, by sequence number, or the head."""

        def job(conn: sqlite3.Connection) -> StoredCheckpoint:
            found = conn.execute("SELECT rk FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if found is None:
                raise RunNotFoundError(run_id)
            rk = int(found[0])
            if at is None:
                head = conn.execute(
                    "SELECT max(seq) FROM checkpoints WHERE rk = ?", (rk,)
                ).fetchone()
                target: CheckpointId | int = int(head[0])
            else:
                target = at
            select = f"SELECT {CP_COLS}, c.fields, c.meta FROM {CP_FROM} WHERE c.rk = ?"
            row = None
            if isinstance(target, int):
                row = conn.execute(f"{select} AND c.seq = ?", (run_id, rk, target)).fetchone()
                missing = f"run {run_id} has no checkpoint with seq {target}"
            else:
                parts = split_id(target)
                if parts is not None and parts[0] == run_id:
                    row = conn.execute(
                        f"{select} AND c.seq = ? AND c.cpid IS NULL", (run_id, rk, parts[1])
                    ).fetchone()
                if row is None:
                    row = conn.execute(f"{select} AND c.cpid = ?", (run_id, rk, target)).fetchone()
                missing = f"run {run_id} has no checkpoint {target!r}"
            if row is None:
                raise CheckpointNotFoundError(missing + "; list them with list_checkpoints()")
            fields = decode_fields(row[10])
            state = {name: materialize(conn, ref) for name, ref in fields.items()}
            return StoredCheckpoint(info_from_row(row), state, bytes(row[11]))

        return await self._reader.call(job)

    async def list_events(self, run_id: RunId) -> list[Event]:
        """The run's events in the order they were committed. Raises RunNotFoundError."""

        def job(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"SELECT data FROM events WHERE rk = {RK} ORDER BY n", (run_id,)
            ).fetchall()
            if (
                not rows
                and not conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            ):
                raise RunNotFoundError(run_id)
            return [str(r[0]) for r in rows]

        events: list[Event] = []
        table = expander(run_id)
        for text in await self._reader.call(job):
            data = json.loads(expand(text, table))
            data["run_id"] = run_id
            events.append(event_from_data(data))
        return events

    async def list_calls(self, run_id: RunId, *, seq: int | None = None) -> list[ToolCallRecord]:
        """The run's journaled calls (of step ``seq`` only, when given), in the order
        they were first journaled. Raises RunNotFoundError."""
        return await self._reader.call(lambda conn: journal_sql.list_calls(conn, run_id, seq))

    async def verify_events(self, run_id: RunId | None = None) -> AuditReport:
        """Check the event hash chains of one run, or of every run when None: every
        edited, inserted or deleted row is named by run and position."""
        return await self._reader.call(lambda conn: journal_sql.verify(conn, run_id))

    async def audit_rows(self, run_id: RunId) -> list[AuditRow]:
        """The run's audit log with its hashes, in position order (for an export)."""
        return await self._reader.call(lambda conn: journal_sql.audit_rows(conn, run_id))

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        """An approval as stored, or None."""
        return await self._reader.call(lambda conn: approvals_sql.get(conn, approval_id))

    async def list_approvals(
        self, *, run_id: RunId | None = None, status: ApprovalStatus | None = None
    ) -> list[ApprovalRecord]:
        """Matching approvals, oldest first (served by an index)."""
        return await self._reader.call(
            lambda conn: approvals_sql.list_approvals(conn, run_id, status)
        )

    async def close(self) -> None:
        """Finish pending writes and close the file; the store is unusable after."""
        await self._writer.close()
        await self._reader.close()
