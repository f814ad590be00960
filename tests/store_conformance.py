"""The store conformance suite: every backend of the Store Protocol must pass it.

Use it by subclassing :class:`StoreConformance` in a ``test_*.py`` file and providing
an async ``store`` fixture that yields a fresh, empty store::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        async def store(self, tmp_path):
            s = MyStore(...)
            yield s
            await s.close()

Every test runs on asyncio and on trio.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from graphorch._record import replace
from graphorch.events import (
    ApprovalDecided,
    ApprovalRequested,
    CallResolved,
    CustomEvent,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolCalled,
)
from graphorch.exceptions import (
    AlreadyDecidedError,
    ApprovalNotFoundError,
    CheckpointNotFoundError,
    LeaseLostError,
    RunLockedError,
    RunNotFoundError,
    StoreError,
)
from graphorch.store.approvals import ApprovalRecord, ApprovalStatus
from graphorch.store.base import (
    AppendField,
    CheckpointWrite,
    FieldWrite,
    Lease,
    RunRecord,
    RunUpdate,
    SetField,
    Store,
    apply_append,
)
from graphorch.store.journal import CallStatus, ToolCallRecord
from graphorch.types import CheckpointId, RunId, RunStatus

T0 = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def cid(run_id: str, seq: int) -> CheckpointId:
    return CheckpointId(f"{run_id}:{seq}")


async def new_run(
    store: Store,
    run_id: str,
    *,
    state: Mapping[str, bytes] | None = None,
    graph: str = "g",
    created_at: datetime = T0,
    status: RunStatus = RunStatus.RUNNING,
    parent_run: str | None = None,
    fork_of: CheckpointId | None = None,
    patch: Mapping[str, FieldWrite] | None = None,
    events: list[Event] | None = None,
) -> RunRecord:
    """Create a run (or a fork of ``fork_of`` changing only ``patch``)."""
    rid = RunId(run_id)
    if fork_of is None:
        writes: dict[str, FieldWrite] = {
            k: SetField(v) for k, v in (state or {"n": b"0", "items": b"[]"}).items()
        }
    else:
        writes = dict(patch or {})
    record = RunRecord(
        run_id=rid,
        graph=graph,
        graph_fingerprint="fp-" + graph,
        status=status,
        reason=None,
        error_node=None,
        created_at=created_at,
        updated_at=created_at,
        head=cid(run_id, 0),
        seq=0,
        next_nodes=("a",),
        parent_run=None if parent_run is None else RunId(parent_run),
        forked_from=fork_of,
    )
    checkpoint = CheckpointWrite(
        checkpoint_id=cid(run_id, 0),
        run_id=rid,
        seq=0,
        parent=fork_of,
        nodes=(),
        next_nodes=("a",),
        status=status,
        writes=writes,
        meta=b'{"steps":0}',
        created_at=created_at,
    )
    if events is None:
        events = [RunStarted(run_id=rid, step=0, graph=graph, forked_from=fork_of, at=1.5)]
    await store.create_run(record, checkpoint, events)
    return record


async def step(
    store: Store,
    run_id: str,
    seq: int,
    writes: Mapping[str, FieldWrite],
    *,
    lease: Lease | None = None,
    status: RunStatus = RunStatus.RUNNING,
    reason: str | None = None,
    output: bytes | None = None,
    next_nodes: tuple[str, ...] = ("a",),
    events: list[Event] | None = None,
    at: datetime | None = None,
    calls: Sequence[ToolCallRecord] = (),
) -> CheckpointWrite:
    """Commit checkpoint ``seq`` (parent ``seq - 1``) of ``run_id``."""
    rid = RunId(run_id)
    checkpoint = CheckpointWrite(
        checkpoint_id=cid(run_id, seq),
        run_id=rid,
        seq=seq,
        parent=cid(run_id, seq - 1),
        nodes=("a",),
        next_nodes=next_nodes,
        status=status,
        writes=writes,
        meta=json.dumps({"steps": seq}).encode(),
        created_at=at or T0 + timedelta(seconds=seq),
    )
    if events is None:
        events = [
            StepStarted(run_id=rid, step=seq, node="a", at=float(seq)),
            StepFinished(
                run_id=rid,
                step=seq,
                node="a",
                changed=tuple(writes),
                next_nodes=next_nodes,
                checkpoint=checkpoint.checkpoint_id,
                at=float(seq) + 0.5,
            ),
        ]
    await store.commit_step(
        lease,
        checkpoint,
        RunUpdate(status=status, reason=reason, output=output),
        events,
        run_id=rid,
        calls=calls,
    )
    return checkpoint


def call(
    run_id: str,
    seq: int,
    index: int = 0,
    *,
    status: CallStatus = CallStatus.STARTED,
    node: str = "a",
    tool: str = "create_ticket",
) -> ToolCallRecord:
    """A journal record of call ``index`` made by node ``node`` in step ``seq``."""
    started = T0 + timedelta(seconds=seq, microseconds=index)
    record = ToolCallRecord(
        key=f"{run_id}:{seq}:{node}:{index}",
        run_id=RunId(run_id),
        seq=seq,
        node=node,
        index=index,
        tool=tool,
        args=json.dumps({"title": "ünï ✓", "n": index}, ensure_ascii=False).encode(),
        status=CallStatus.STARTED,
        started_at=started,
    )
    return settle(record, status)


def settle(record: ToolCallRecord, status: CallStatus, **changes: Any) -> ToolCallRecord:
    """``record`` with outcome ``status`` (every optional field set)."""
    if status is CallStatus.STARTED:
        return replace(record, **changes)
    done = record.started_at + timedelta(milliseconds=250)
    if status is CallStatus.SUCCEEDED:
        fields: dict[str, Any] = {"result": b'{"id": 7, "text": "\\u00ff \xc3\xbc"}', "cost": 0.125}
    else:
        fields = {"error": "HTTP 503 - unavailable ✗", "error_type": "ToolFailedError"}
    return replace(record, status=status, **{"finished_at": done, **fields, **changes})


def tool_event(record: ToolCallRecord, outcome: str) -> ToolCalled:
    return ToolCalled(
        run_id=record.run_id,
        step=record.seq,
        role="support",
        node=record.node,
        tool=record.tool,
        key=record.key,
        args={"title": "ünï ✓"},
        outcome=outcome,
        decision="allow",
        duration=0.25,
        at=100.0 + record.index,
    )


def genesis_hex(run_id: str) -> str:
    return hashlib.sha256(b"graphorch-run:" + run_id.encode()).hexdigest()


async def audit_scene(store: Store) -> int:
    """Run ``r1`` (9 events: positions 0-8) and run ``clean`` (3 events), both with
    journaled calls; returns how many events there are in all."""
    await new_run(store, "r1")
    await new_run(store, "clean")
    for seq in range(1, 5):
        await step(store, "r1", seq, {"n": SetField(str(seq).encode())})
    first = call("clean", 1)
    await store.journal(None, [first], [tool_event(first, "started")], run_id=RunId("clean"))
    done = settle(first, CallStatus.SUCCEEDED)
    await step(store, "clean", 1, {}, events=[tool_event(done, "succeeded")], calls=[done])
    return 9 + 3


IST = timezone(timedelta(hours=5, minutes=30))


def approval(
    run_id: str,
    seq: int,
    node: str = "confirm",
    *,
    at: datetime | None = None,
    full: bool = True,
) -> ApprovalRecord:
    """A pending request of node ``node`` at step ``seq``; ``full`` sets every optional
    field (a paused tool call with an expiry), else only the required ones."""
    requested = at or (T0 + timedelta(seconds=seq)).astimezone(IST)
    record = ApprovalRecord(
        approval_id=f"{run_id}:{seq}:{node}",
        run_id=RunId(run_id),
        seq=seq,
        node=node,
        prompt="déployer « api » ? ✓",
        context=b'{"service":"api","raw":"\xff\x00"}' + bytes([0, 255, 128]),
        approvers=("lead", "zoë") if full else (),
        roles=("ops",) if full else (),
        requested_at=requested,
        status=ApprovalStatus.PENDING,
    )
    if not full:
        return record
    return replace(
        record,
        expires_at=requested + timedelta(hours=1, microseconds=7),
        tool="deploy",
        call_key=f"{run_id}:{seq}:{node}:0",
        args=b'{"replicas":3}\x00',
    )


def decided(
    record: ApprovalRecord,
    by: str = "lead",
    status: ApprovalStatus = ApprovalStatus.APPROVED,
) -> ApprovalRecord:
    """``record`` decided by ``by``, with a comment and (for an approval) edits."""
    return replace(
        record,
        status=status,
        decided_by=by,
        decided_at=datetime(2025, 1, 2, 9, 30, 0, 999999, tzinfo=timezone(timedelta(hours=-7))),
        comment=f"ok from {by} ✓",
        edits=b'{"replicas":4}' if status is ApprovalStatus.APPROVED else None,
    )


def requested_event(record: ApprovalRecord) -> ApprovalRequested:
    return ApprovalRequested(
        run_id=record.run_id,
        step=record.seq,
        node=record.node,
        approval_id=record.approval_id,
        prompt=record.prompt,
        approvers=record.approvers,
        roles=record.roles,
        tool=record.tool,
        at=50.0,
    )


def decided_event(record: ApprovalRecord) -> ApprovalDecided:
    return ApprovalDecided(
        run_id=record.run_id,
        step=record.seq,
        approval_id=record.approval_id,
        outcome=record.status.value,
        by=record.decided_by or "?",
        comment=record.comment,
        at=60.0,
    )


async def ask(
    store: Store,
    run_id: str,
    *records: ApprovalRecord,
    lease: Lease | None = None,
) -> None:
    """Commit the step that makes ``run_id`` wait for ``records`` (no new checkpoint)."""
    await store.commit_step(
        lease,
        None,
        RunUpdate(RunStatus.WAITING, reason="waiting for a person", error_node="confirm"),
        [requested_event(r) for r in records],
        run_id=RunId(run_id),
        approvals=records,
    )


async def snapshot(store: Store, run_id: str) -> tuple[Any, ...]:
    """Everything readable about a run, to show a refused write changed nothing."""
    rid = RunId(run_id)
    record = await store.get_run(rid)
    infos = await store.list_checkpoints(rid)
    states = [await store.get_checkpoint(rid, info.seq) for info in infos]
    return record, infos, states, await store.list_events(rid)


class StoreConformance:
    """Semantics every Store must have. Subclasses provide the ``store`` fixture."""

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("subclasses provide a fresh store")

    # -- runs -----------------------------------------------------------------------

    async def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    async def test_create_and_get_run(self, store: Store) -> None:
        record = await new_run(store, "r1", parent_run="p0")
        assert await store.get_run(RunId("r1")) == record
        got = await store.get_run(RunId("r1"))
        assert got.created_at == T0 and got.created_at.utcoffset() == timedelta(0)

    async def test_naive_and_offset_datetimes_round_trip(self, store: Store) -> None:
        naive = datetime(2024, 5, 6, 7, 8, 9, 101112)
        plus2 = datetime(2024, 5, 6, 7, 8, 9, 5, tzinfo=timezone(timedelta(hours=2)))
        await new_run(store, "naive", created_at=naive)
        await new_run(store, "plus2", created_at=plus2)
        a = await store.get_run(RunId("naive"))
        b = await store.get_run(RunId("plus2"))
        assert a.created_at == naive and a.created_at.tzinfo is None
        assert b.created_at == plus2 and b.created_at.utcoffset() == timedelta(hours=2)

    async def test_duplicate_run_is_refused(self, store: Store) -> None:
        await new_run(store, "r1")
        before = await snapshot(store, "r1")
        with pytest.raises(StoreError, match="already exists"):
            await new_run(store, "r1", state={"n": b"99"})
        assert await snapshot(store, "r1") == before

    async def test_unknown_run(self, store: Store) -> None:
        rid = RunId("nope")
        with pytest.raises(RunNotFoundError):
            await store.get_run(rid)
        with pytest.raises(RunNotFoundError):
            await store.list_checkpoints(rid)
        with pytest.raises(RunNotFoundError):
            await store.get_checkpoint(rid)
        with pytest.raises(RunNotFoundError):
            await store.list_events(rid)
        with pytest.raises(RunNotFoundError):
            await store.acquire_lease(rid, "me", 10)
        with pytest.raises(RunNotFoundError):
            await store.delete_run(rid)
        with pytest.raises(RunNotFoundError):
            await store.commit_step(None, None, RunUpdate(RunStatus.FAILED), [], run_id=rid)
        with pytest.raises(RunNotFoundError):
            await store.prune_checkpoints(rid, keep_last=1)
        with pytest.raises(RunNotFoundError) as info:
            await store.get_run(rid)
        assert "nope" in str(info.value)

    async def test_list_runs_filters_and_order(self, store: Store) -> None:
        for i in range(6):
            await new_run(
                store,
                f"r{i}",
                graph="even" if i % 2 == 0 else "odd",
                created_at=T0 + timedelta(minutes=i),
                parent_run="p" if i >= 4 else None,
            )
        await store.commit_step(
            None, None, RunUpdate(RunStatus.SUCCEEDED, reason="done"), [], run_id=RunId("r3")
        )

        def ids(records: list[RunRecord]) -> list[str]:
            return [r.run_id for r in records]

        assert ids(await store.list_runs()) == ["r5", "r4", "r3", "r2", "r1", "r0"]
        assert ids(await store.list_runs(limit=2)) == ["r5", "r4"]
        assert ids(await store.list_runs(limit=None)) == ["r5", "r4", "r3", "r2", "r1", "r0"]
        assert ids(await store.list_runs(graph="odd")) == ["r5", "r3", "r1"]
        assert ids(await store.list_runs(status=RunStatus.SUCCEEDED)) == ["r3"]
        assert ids(await store.list_runs(status=RunStatus.RUNNING, graph="odd")) == ["r5", "r1"]
        assert ids(await store.list_runs(parent_run=RunId("p"))) == ["r5", "r4"]
        after = T0 + timedelta(minutes=2)
        before = T0 + timedelta(minutes=4)
        assert ids(await store.list_runs(created_after=after)) == ["r5", "r4", "r3", "r2"]
        assert ids(await store.list_runs(created_before=before)) == ["r3", "r2", "r1", "r0"]
        assert ids(await store.list_runs(created_after=after, created_before=before)) == [
            "r3",
            "r2",
        ]
        assert await store.list_runs(graph="none") == []

    async def test_list_runs_equal_times_newest_created_first(self, store: Store) -> None:
        for name in ("x", "y", "z"):
            await new_run(store, name)
        assert [r.run_id for r in await store.list_runs()] == ["z", "y", "x"]

    # -- commits and checkpoints ------------------------------------------------------

    async def test_commit_moves_head(self, store: Store) -> None:
        await new_run(store, "r1")
        await step(store, "r1", 1, {"n": SetField(b"1")})
        cp = await step(
            store,
            "r1",
            2,
            {"n": SetField(b"2")},
            status=RunStatus.SUCCEEDED,
            reason="reached end",
            output=b'"out"',
            next_nodes=(),
        )
        run = await store.get_run(RunId("r1"))
        assert run.head == cid("r1", 2) and run.seq == 2
        assert run.next_nodes == ()
        assert run.status is RunStatus.SUCCEEDED
        assert run.reason == "reached end" and run.output == b'"out"'
        assert run.updated_at == cp.created_at
        assert run.created_at == T0
        head = await store.get_checkpoint(RunId("r1"))
        assert head.info.checkpoint_id == cid("r1", 2)
        assert head.state == {"n": b"2", "items": b"[]"}
        assert head.meta == b'{"steps": 2}'

    async def test_status_only_commit_keeps_head(self, store: Store) -> None:
        await new_run(store, "r1")
        await step(store, "r1", 1, {"n": SetField(b"1")})
        await store.commit_step(
            None,
            None,
            RunUpdate(RunStatus.FAILED, reason="boom", error_node="a"),
            [StepStarted(run_id=RunId("r1"), step=2, node="a", at=9.0)],
            run_id=RunId("r1"),
        )
        run = await store.get_run(RunId("r1"))
        assert (run.status, run.reason, run.error_node) == (RunStatus.FAILED, "boom", "a")
        assert run.head == cid("r1", 1) and run.seq == 1 and run.next_nodes == ("a",)
        assert len(await store.list_checkpoints(RunId("r1"))) == 2
        assert (await store.list_events(RunId("r1")))[-1].step == 2

    async def test_set_and_append_materialize_exactly(self, store: Store) -> None:
        await new_run(
            store, "r1", state={"n": b"0", "items": b"[]", "big": b'"' + b"x" * 500 + b'"'}
        )
        expected = {"n": b"0", "items": b"[]", "big": b'"' + b"x" * 500 + b'"'}
        history = [dict(expected)]
        # Enough appends to cross several merge boundaries of a log-structured backend.
        for seq in range(1, 1101):
            item = json.dumps([{"i": seq, "pad": "p" * (seq % 7)}]).encode()
            writes: dict[str, FieldWrite] = {"items": AppendField(item)}
            if seq % 10 == 0:
                writes["n"] = SetField(str(seq).encode())
            if seq == 600:
                writes["items"] = SetField(b"[0]")  # a whole new value mid-history
                item = b"[]"
            if seq % 97 == 0:
                writes["items"] = AppendField(b"[]")
            await step(store, "r1", seq, writes)
            for name, change in writes.items():
                if isinstance(change, AppendField):
                    expected[name] = apply_append(expected[name], change.items)
                else:
                    expected[name] = change.json
            history.append(dict(expected))
        rid = RunId("r1")
        for seq in (0, 1, 2, 31, 32, 33, 63, 64, 500, 599, 600, 601, 1023, 1024, 1025, 1100):
            got = await store.get_checkpoint(rid, seq)
            assert got.state == history[seq], seq
        assert json.loads(history[1100]["items"])[-1]["i"] == 1100

    async def test_append_edge_cases(self, store: Store) -> None:
        await new_run(store, "r1", state={"n": b"0"})
        await step(store, "r1", 1, {"new": AppendField(b"[1, 2]")})  # missing field
        await step(store, "r1", 2, {"new": AppendField(b'["a b"]'), "e": AppendField(b"[]")})
        await step(store, "r1", 3, {"s": SetField(b"[true]")})
        await step(store, "r1", 4, {"s": AppendField(b"[null]")})
        got = await store.get_checkpoint(RunId("r1"))
        assert got.state == {
            "n": b"0",
            "new": b'[1, 2,"a b"]',
            "e": b"[]",
            "s": b"[true,null]",
        }
        assert (await store.get_checkpoint(RunId("r1"), 1)).state == {"n": b"0", "new": b"[1, 2]"}

    async def test_values_with_any_bytes(self, store: Store) -> None:
        text = json.dumps("ünïcødé ✓ " * 50, ensure_ascii=False).encode()
        short = json.dumps("é", ensure_ascii=False).encode()
        await new_run(store, "r1", state={"t": text, "s": short, "z": b"null", "empty": b'""'})
        got = await store.get_checkpoint(RunId("r1"))
        assert got.state == {"t": text, "s": short, "z": b"null", "empty": b'""'}

    async def test_checkpoints_by_id_seq_and_head(self, store: Store) -> None:
        await new_run(store, "r1")
        await new_run(store, "other")
        for seq in (1, 2, 3):
            await step(store, "r1", seq, {"n": SetField(str(seq).encode())})
        rid = RunId("r1")
        by_seq = await store.get_checkpoint(rid, 2)
        by_id = await store.get_checkpoint(rid, cid("r1", 2))
        assert by_seq == by_id
        assert by_seq.state["n"] == b"2"
        assert (await store.get_checkpoint(rid)).info.seq == 3
        with pytest.raises(CheckpointNotFoundError):
            await store.get_checkpoint(rid, 7)
        with pytest.raises(CheckpointNotFoundError):
            await store.get_checkpoint(rid, cid("other", 0))
        with pytest.raises(CheckpointNotFoundError):
            await store.get_checkpoint(rid, CheckpointId("not-an-id"))

    async def test_list_checkpoints(self, store: Store) -> None:
        await new_run(store, "r1")
        await step(store, "r1", 1, {"n": SetField(b"1"), "items": AppendField(b"[1]")})
        await step(store, "r1", 2, {"n": SetField(b"2")}, status=RunStatus.WAITING, next_nodes=())
        infos = await store.list_checkpoints(RunId("r1"))
        assert [i.seq for i in infos] == [0, 1, 2]
        assert [i.checkpoint_id for i in infos] == [cid("r1", s) for s in (0, 1, 2)]
        assert [i.parent for i in infos] == [None, cid("r1", 0), cid("r1", 1)]
        assert infos[0].nodes == () and infos[1].nodes == ("a",)
        assert infos[1].changed == ("n", "items") and infos[2].changed == ("n",)
        assert set(infos[0].changed) == {"n", "items"}
        assert infos[2].status is RunStatus.WAITING and infos[2].next_nodes == ()
        assert infos[1].created_at == T0 + timedelta(seconds=1)
        assert all(i.run_id == "r1" for i in infos)

    async def test_fork_across_runs(self, store: Store) -> None:
        await new_run(
            store, "src", state={"n": b"0", "items": b"[]", "doc": b'"' + b"d" * 300 + b'"'}
        )
        for seq in range(1, 6):
            await step(
                store,
                "src",
                seq,
                {"n": SetField(str(seq).encode()), "items": AppendField(f"[{seq}]".encode())},
            )
        src_before = await snapshot(store, "src")
        fork_point = cid("src", 3)
        fork = await new_run(
            store,
            "fork",
            fork_of=fork_point,
            patch={"n": SetField(b"30"), "items": AppendField(b'["f"]')},
        )
        assert fork.forked_from == fork_point
        first = await store.get_checkpoint(RunId("fork"))
        assert first.info.parent == fork_point
        assert first.state == {"n": b"30", "items": b'[1,2,3,"f"]', "doc": b'"' + b"d" * 300 + b'"'}
        await step(store, "fork", 1, {"items": AppendField(b"[9]")})
        assert (await store.get_checkpoint(RunId("fork"))).state["items"] == b'[1,2,3,"f",9]'
        # The original is untouched and still advances.
        assert await snapshot(store, "src") == src_before
        await step(store, "src", 6, {"items": AppendField(b"[6]")})
        assert (await store.get_checkpoint(RunId("src"))).state["items"] == b"[1,2,3,4,5,6]"
        with pytest.raises(CheckpointNotFoundError):
            await new_run(store, "bad", fork_of=cid("src", 99))
        with pytest.raises(RunNotFoundError):
            await store.get_run(RunId("bad"))

    async def test_commit_with_missing_parent_writes_nothing(self, store: Store) -> None:
        await new_run(store, "r1")
        before = await snapshot(store, "r1")
        bad = CheckpointWrite(
            checkpoint_id=cid("r1", 1),
            run_id=RunId("r1"),
            seq=1,
            parent=cid("r1", 42),
            nodes=("a",),
            next_nodes=("a",),
            status=RunStatus.RUNNING,
            writes={"n": SetField(b"1")},
            meta=b"{}",
            created_at=T0,
        )
        with pytest.raises(CheckpointNotFoundError):
            await store.commit_step(
                None,
                bad,
                RunUpdate(RunStatus.FAILED),
                [StepStarted(run_id=RunId("r1"), step=1, node="a")],
                run_id=RunId("r1"),
            )
        assert await snapshot(store, "r1") == before

    async def test_duplicate_checkpoint_writes_nothing(self, store: Store) -> None:
        await new_run(store, "r1")
        await step(store, "r1", 1, {"n": SetField(b"1")})
        before = await snapshot(store, "r1")
        with pytest.raises(StoreError, match="already exists"):
            await step(store, "r1", 1, {"n": SetField(b"2")}, status=RunStatus.FAILED)
        assert await snapshot(store, "r1") == before

    # -- events -----------------------------------------------------------------------

    async def test_events_round_trip_in_order(self, store: Store) -> None:
        rid = RunId("r1")
        started = RunStarted(run_id=rid, step=0, graph="g", at=1.25)
        await new_run(store, "r1", events=[started])
        custom = CustomEvent(
            run_id=rid, step=1, node="a", name="note", data={"k": [1, 2], "s": "ü"}, at=2.0
        )
        step_events: list[Event] = [
            StepStarted(run_id=rid, step=1, node="a", at=1.5),
            custom,
            StepFinished(
                run_id=rid,
                step=1,
                node="a",
                changed=("n",),
                next_nodes=("b", "c"),
                checkpoint="r1:1",
                at=2.5,
            ),
        ]
        await step(store, "r1", 1, {"n": SetField(b"1")}, events=step_events)
        finished = RunFinished(run_id=rid, step=2, node="end", output={"x": 1}, at=3.0)
        await store.commit_step(None, None, RunUpdate(RunStatus.SUCCEEDED), [finished], run_id=rid)
        await step(store, "r1", 2, {}, events=[])
        got = await store.list_events(rid)
        assert got == [started, *step_events, finished]
        assert isinstance(got[3], StepFinished) and got[3].next_nodes == ("b", "c")
        await new_run(store, "r2")
        assert len(await store.list_events(RunId("r2"))) == 1
        assert await store.list_events(rid) == got

    # -- leases -----------------------------------------------------------------------

    async def test_lease_locks_out_other_owners(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        first = await store.acquire_lease(rid, "alpha", 30)
        assert (first.run_id, first.owner) == (rid, "alpha")
        with pytest.raises(RunLockedError, match="alpha") as locked:
            await store.acquire_lease(rid, "beta", 30)
        assert locked.value.owner == "alpha"
        assert locked.value.expires_at == pytest.approx(first.expires_at)  # pyright: ignore[reportUnknownMemberType]
        again = await store.acquire_lease(rid, "alpha", 30)
        assert again.epoch > first.epoch
        await step(store, "r1", 1, {"n": SetField(b"1")}, lease=again)
        with pytest.raises(LeaseLostError):
            await step(store, "r1", 2, {"n": SetField(b"2")}, lease=first)

    async def test_expired_lease_is_taken_with_higher_epoch(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        old = await store.acquire_lease(rid, "alpha", 0.05)
        await step(store, "r1", 1, {"n": SetField(b"1")}, lease=old)
        await anyio.sleep(0.1)
        new = await store.acquire_lease(rid, "beta", 30)
        assert new.epoch > old.epoch and new.owner == "beta"
        before = await snapshot(store, "r1")
        # The paused owner wakes up: every write it attempts is refused whole.
        with pytest.raises(LeaseLostError):
            await step(
                store,
                "r1",
                2,
                {"n": SetField(b"2"), "items": AppendField(b"[1]")},
                lease=old,
                status=RunStatus.SUCCEEDED,
            )
        with pytest.raises(LeaseLostError):
            await store.commit_step(
                old,
                None,
                RunUpdate(RunStatus.FAILED, reason="x"),
                [StepStarted(run_id=rid, step=2, node="a")],
                run_id=rid,
            )
        with pytest.raises(LeaseLostError):
            await store.renew_lease(old, 30)
        await store.release_lease(old)  # no error, and beta keeps the run
        assert await snapshot(store, "r1") == before
        with pytest.raises(RunLockedError):
            await store.acquire_lease(rid, "gamma", 30)
        await step(store, "r1", 2, {"n": SetField(b"2")}, lease=new)
        assert (await store.get_run(rid)).seq == 2

    async def test_renew_and_release(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        lease = await store.acquire_lease(rid, "alpha", 0.2)
        renewed = await store.renew_lease(lease, 60)
        assert renewed.epoch == lease.epoch and renewed.expires_at > lease.expires_at
        await anyio.sleep(0.3)
        with pytest.raises(RunLockedError):  # the renewal counts
            await store.acquire_lease(rid, "beta", 30)
        await store.release_lease(renewed)
        with pytest.raises(LeaseLostError):
            await step(store, "r1", 1, {"n": SetField(b"1")}, lease=renewed)
        with pytest.raises(LeaseLostError):
            await store.renew_lease(renewed, 30)
        beta = await store.acquire_lease(rid, "beta", 30)
        assert beta.epoch > renewed.epoch
        await step(store, "r1", 1, {"n": SetField(b"1")}, lease=beta)

    async def test_concurrent_commits_one_fenced_out(self, store: Store) -> None:
        """Commits racing from many runs at once: only the stale one fails."""
        n = 40
        leases: dict[str, Lease] = {}
        for i in range(n):
            await new_run(store, f"r{i}")
            leases[f"r{i}"] = await store.acquire_lease(RunId(f"r{i}"), "me", 60)
        stale = leases["r7"]
        leases["r7"] = await store.acquire_lease(RunId("r7"), "me", 60)
        failures: list[str] = []

        async def advance(name: str, lease: Lease) -> None:
            try:
                await step(
                    store, name, 1, {"n": SetField(b"1"), "items": AppendField(b"[1]")}, lease=lease
                )
            except LeaseLostError:
                failures.append(name)

        async with anyio.create_task_group() as tg:
            for name, lease in leases.items():
                tg.start_soon(advance, name, stale if name == "r7" else lease)
        assert failures == ["r7"]
        for i in range(n):
            run = await store.get_run(RunId(f"r{i}"))
            assert run.seq == (0 if i == 7 else 1)
            if i != 7:
                assert (await store.get_checkpoint(run.run_id)).state["items"] == b"[1]"

    async def test_many_runs_concurrently(self, store: Store) -> None:
        async def drive(name: str) -> None:
            await new_run(store, name)
            lease = await store.acquire_lease(RunId(name), "me", 60)
            for seq in range(1, 11):
                await step(
                    store,
                    name,
                    seq,
                    {"n": SetField(str(seq).encode()), "items": AppendField(f"[{seq}]".encode())},
                    lease=lease,
                )
            await store.release_lease(lease)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(drive, f"c{i}")
        runs = await store.list_runs(limit=None)
        assert len(runs) == 50 and all(r.seq == 10 for r in runs)
        head = await store.get_checkpoint(RunId("c13"))
        assert head.state == {"n": b"10", "items": b"[1,2,3,4,5,6,7,8,9,10]"}
        assert len(await store.list_events(RunId("c13"))) == 21

    # -- retention ----------------------------------------------------------------------

    async def test_delete_run(self, store: Store) -> None:
        await new_run(store, "r1", state={"n": b"0", "doc": b'"' + b"z" * 200 + b'"'})
        await step(store, "r1", 1, {"n": SetField(b"1")})
        await new_run(store, "r2")
        await new_run(store, "fork", fork_of=cid("r1", 1), patch={"n": SetField(b"5")})
        fork_before = await snapshot(store, "fork")
        await store.delete_run(RunId("r1"))
        with pytest.raises(RunNotFoundError):
            await store.get_run(RunId("r1"))
        with pytest.raises(RunNotFoundError):
            await store.list_events(RunId("r1"))
        assert [r.run_id for r in await store.list_runs()] == ["fork", "r2"]
        assert await snapshot(store, "fork") == fork_before
        await store.compact()
        assert await snapshot(store, "fork") == fork_before
        assert (await store.get_checkpoint(RunId("fork"))).state["doc"] == b'"' + b"z" * 200 + b'"'
        with pytest.raises(RunNotFoundError):
            await store.delete_run(RunId("r1"))

    async def test_prune_runs(self, store: Store) -> None:
        old = T0 - timedelta(days=30)
        await new_run(store, "old-done", created_at=old)
        await store.commit_step(
            None, None, RunUpdate(RunStatus.SUCCEEDED), [], run_id=RunId("old-done")
        )
        await new_run(store, "old-running", created_at=old + timedelta(seconds=1))
        await new_run(store, "new-done", created_at=T0)
        await store.commit_step(
            None, None, RunUpdate(RunStatus.FAILED, reason="x"), [], run_id=RunId("new-done")
        )
        assert await store.prune_runs(created_before=T0 - timedelta(days=1)) == 1
        assert {r.run_id for r in await store.list_runs()} == {"old-running", "new-done"}
        assert (
            await store.prune_runs(created_before=T0 - timedelta(days=1), terminal_only=False) == 1
        )
        assert [r.run_id for r in await store.list_runs()] == ["new-done"]
        assert await store.prune_runs(created_before=T0) == 0

    async def test_prune_checkpoints(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1", state={"n": b"0", "items": b"[]"})
        for seq in range(1, 11):
            await step(
                store,
                "r1",
                seq,
                {"n": SetField(str(seq).encode()), "items": AppendField(f"[{seq}]".encode())},
            )
        await new_run(store, "fork", fork_of=cid("r1", 2), patch={})
        states = {seq: await store.get_checkpoint(rid, seq) for seq in range(11)}
        fork_before = await snapshot(store, "fork")
        with pytest.raises(ValueError):
            await store.prune_checkpoints(rid, keep_last=0)
        assert await store.prune_checkpoints(rid, keep_last=3) == 7  # 0..7 but 2 (forked)
        infos = await store.list_checkpoints(rid)
        assert [i.seq for i in infos] == [2, 8, 9, 10]
        for seq in (2, 8, 9, 10):
            assert await store.get_checkpoint(rid, seq) == states[seq]
        with pytest.raises(CheckpointNotFoundError):
            await store.get_checkpoint(rid, 5)
        assert (await store.get_run(rid)).head == cid("r1", 10)
        await store.compact()
        assert await snapshot(store, "fork") == fork_before
        await step(store, "r1", 11, {"items": AppendField(b"[11]")})
        assert (await store.get_checkpoint(rid)).state["items"] == b"[1,2,3,4,5,6,7,8,9,10,11]"
        assert await store.prune_checkpoints(rid, keep_last=100) == 0

    async def test_compact_keeps_everything(self, store: Store) -> None:
        await new_run(store, "r1")
        for seq in range(1, 40):
            await step(store, "r1", seq, {"items": AppendField(f"[{seq}]".encode())})
        before = await snapshot(store, "r1")
        await store.compact()
        assert await snapshot(store, "r1") == before

    # -- the tool-call journal ------------------------------------------------------------

    async def test_journal_upsert_keeps_first_order(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        lease = await store.acquire_lease(rid, "alpha", 60)
        a, b = call("r1", 0, 0), call("r1", 0, 1)
        await store.journal(lease, [a], [tool_event(a, "started")], run_id=rid)
        await store.journal(lease, [b], [], run_id=rid)
        assert await store.list_calls(rid) == [a, b]
        done = settle(a, CallStatus.SUCCEEDED)
        await store.journal(lease, [done], [tool_event(done, "succeeded")], run_id=rid)
        assert await store.list_calls(rid) == [done, b]  # replaced in place
        failed = settle(b, CallStatus.FAILED)
        c = call("r1", 0, 2)
        await store.journal(lease, [c, failed], [], run_id=rid)
        got = await store.list_calls(rid)
        assert got == [done, failed, c]
        assert [e.kind for e in await store.list_events(rid)] == [
            "run_started",
            "tool_called",
            "tool_called",
        ]

    async def test_journal_round_trips_every_field(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        plus2 = timezone(timedelta(hours=2))
        odd = timezone(timedelta(hours=-3, minutes=-30))
        base = call("r1", 3, 4, tool="model:gpt")
        records = [
            settle(
                base,
                CallStatus.SUCCEEDED,
                args=bytes(range(256)),
                result=b"\x00\xff" * 300,
                cost=1e-9 + 0.1,
                started_at=datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=plus2),
                finished_at=datetime(2025, 3, 4, 5, 6, 8, 1, tzinfo=odd),
                resolved_by="ops@example.com",
            ),
            settle(
                call("r1", 3, 5),
                CallStatus.FAILED,
                started_at=datetime(2024, 1, 2, 3, 4, 5, 6),  # naive stays naive
                finished_at=datetime(2024, 1, 2, 3, 4, 6),
                args=b"",
            ),
            call("r1", 3, 6),
        ]
        await store.journal(None, records, [], run_id=rid)
        got = await store.list_calls(rid)
        assert got == records
        assert [type(c.status) for c in got] == [CallStatus] * 3
        assert got[0].started_at.utcoffset() == timedelta(hours=2)
        assert got[0].finished_at is not None
        assert got[0].finished_at.utcoffset() == timedelta(hours=-3, minutes=-30)
        assert got[1].started_at.tzinfo is None and got[2].finished_at is None
        assert got[2].result is None and got[2].error is None and got[2].cost == 0.0
        assert isinstance(got[0].args, bytes) and isinstance(got[0].result, bytes)

    async def test_list_calls_by_step(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        await new_run(store, "r2")
        one = [call("r1", 1, i) for i in range(3)]
        two = [call("r1", 2, i) for i in range(2)]
        await store.journal(None, [one[0], two[0]], [], run_id=rid)
        await store.journal(None, [one[1], one[2], two[1]], [], run_id=rid)
        await store.journal(None, [call("r2", 1)], [], run_id=RunId("r2"))
        assert await store.list_calls(rid, seq=1) == one
        assert await store.list_calls(rid, seq=2) == two
        assert await store.list_calls(rid, seq=3) == []
        assert await store.list_calls(rid) == [one[0], two[0], one[1], one[2], two[1]]
        assert await store.list_calls(RunId("r2")) == [call("r2", 1)]

    async def test_journal_is_fenced(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        old = await store.acquire_lease(rid, "alpha", 0.05)
        a = call("r1", 0)
        await store.journal(old, [a], [tool_event(a, "started")], run_id=rid)
        await anyio.sleep(0.1)
        new = await store.acquire_lease(rid, "beta", 60)
        before = (await snapshot(store, "r1"), await store.list_calls(rid))
        done, b = settle(a, CallStatus.SUCCEEDED), call("r1", 0, 1)
        with pytest.raises(LeaseLostError):
            await store.journal(old, [done, b], [tool_event(done, "succeeded")], run_id=rid)
        assert (await snapshot(store, "r1"), await store.list_calls(rid)) == before
        assert (await store.verify_events(rid)).ok
        await store.journal(new, [done], [], run_id=rid)
        assert await store.list_calls(rid) == [done]

    async def test_operator_settles_a_call_without_the_lease(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        lease = await store.acquire_lease(rid, "alpha", 60)
        a = call("r1", 0)
        await store.journal(lease, [a], [], run_id=rid)
        settled = settle(a, CallStatus.SUCCEEDED, resolved_by="ops")
        resolved = CallResolved(
            run_id=rid, step=0, key=a.key, tool=a.tool, outcome="succeeded", by="ops", at=5.0
        )
        await store.journal(None, [settled], [resolved], run_id=rid)  # lease still held
        assert await store.list_calls(rid, seq=0) == [settled]
        assert (await store.list_events(rid))[-1] == resolved
        await step(store, "r1", 1, {"n": SetField(b"1")}, lease=lease)  # owner unaffected

    async def test_journal_bad_input_writes_nothing(self, store: Store) -> None:
        nope = RunId("nope")
        with pytest.raises(RunNotFoundError):
            await store.journal(None, [call("nope", 0)], [], run_id=nope)
        with pytest.raises(RunNotFoundError):
            await store.journal(None, [], [StepStarted(run_id=nope, step=0, node="a")], run_id=nope)
        with pytest.raises(RunNotFoundError):
            await store.list_calls(nope)
        with pytest.raises(RunNotFoundError):
            await store.list_calls(nope, seq=0)
        rid = RunId("r1")
        await new_run(store, "r1")
        await new_run(store, "r2")
        before = await snapshot(store, "r1")
        stray = call("r2", 0)
        with pytest.raises(StoreError, match="r2"):
            await store.journal(None, [call("r1", 0), stray], [], run_id=rid)
        with pytest.raises(StoreError, match="r2"):
            await step(store, "r1", 1, {"n": SetField(b"1")}, calls=[stray])
        # A key already journaled for another run is not taken over.
        await store.journal(None, [stray], [], run_id=RunId("r2"))
        hijack = replace(stray, run_id=rid)
        with pytest.raises(StoreError, match="already journaled for another run"):
            await store.journal(
                None, [hijack], [StepStarted(run_id=rid, step=0, node="a")], run_id=rid
            )
        assert await snapshot(store, "r1") == before
        assert await store.list_calls(rid) == []
        assert await store.list_calls(RunId("r2")) == [stray]

    async def test_commit_step_writes_calls_with_the_checkpoint(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        lease = await store.acquire_lease(rid, "alpha", 60)
        a, b = call("r1", 0, 0), call("r1", 0, 1)
        await store.journal(lease, [a], [], run_id=rid)
        done_a, done_b = settle(a, CallStatus.SUCCEEDED), settle(b, CallStatus.FAILED)
        await step(store, "r1", 1, {"n": SetField(b"1")}, lease=lease, calls=[done_a, done_b])
        assert await store.list_calls(rid, seq=0) == [done_a, done_b]
        assert (await store.get_run(rid)).seq == 1
        # A commit that fails writes neither its checkpoint nor its calls.
        c = call("r1", 1)
        before = (await snapshot(store, "r1"), await store.list_calls(rid))
        with pytest.raises(StoreError, match="already exists"):
            await step(store, "r1", 1, {"n": SetField(b"9")}, lease=lease, calls=[c])
        assert (await snapshot(store, "r1"), await store.list_calls(rid)) == before
        # Nor does a fenced-out one.
        stale = lease
        await store.release_lease(lease)
        await store.acquire_lease(rid, "beta", 60)
        with pytest.raises(LeaseLostError):
            await step(store, "r1", 2, {"n": SetField(b"2")}, lease=stale, calls=[c])
        assert (await snapshot(store, "r1"), await store.list_calls(rid)) == before

    async def test_deleting_a_run_deletes_its_calls(self, store: Store) -> None:
        old = T0 - timedelta(days=9)
        await new_run(store, "r1")
        await new_run(store, "gone", created_at=old, status=RunStatus.SUCCEEDED)
        await new_run(store, "kept")
        await store.journal(None, [call("r1", 0), call("r1", 1)], [], run_id=RunId("r1"))
        await store.journal(None, [call("gone", 0)], [], run_id=RunId("gone"))
        await store.journal(None, [call("kept", 0)], [], run_id=RunId("kept"))
        await store.delete_run(RunId("r1"))
        assert await store.prune_runs(created_before=T0) == 1
        with pytest.raises(RunNotFoundError):
            await store.list_calls(RunId("r1"))
        await new_run(store, "r1")  # the same id again starts with an empty journal
        await new_run(store, "gone")
        assert await store.list_calls(RunId("r1")) == []
        assert await store.list_calls(RunId("gone")) == []
        await store.journal(None, [call("r1", 0)], [], run_id=RunId("r1"))
        assert await store.list_calls(RunId("r1")) == [call("r1", 0)]
        assert await store.list_calls(RunId("kept")) == [call("kept", 0)]
        assert (await store.verify_events()).ok

    # -- the audit log ---------------------------------------------------------------------

    async def test_verify_a_clean_log(self, store: Store) -> None:
        total = await audit_scene(store)
        report = await store.verify_events()
        assert report.ok and report.problems == [] and report.checked == total
        one = await store.verify_events(RunId("r1"))
        assert (one.ok, one.checked) == (True, 9)
        with pytest.raises(RunNotFoundError):
            await store.verify_events(RunId("nope"))
        await new_run(store, "quiet", events=[])  # a run with no events yet
        assert await store.verify_events(RunId("quiet")) == type(one)(True, 0, [])
        await store.commit_step(
            None, None, RunUpdate(RunStatus.FAILED, reason="x"), [], run_id=RunId("quiet")
        )
        await store.delete_run(RunId("clean"))
        await store.prune_checkpoints(RunId("r1"), keep_last=1)
        await store.compact()
        assert (await store.verify_events()).ok

    async def test_audit_rows(self, store: Store) -> None:
        await audit_scene(store)
        events = await store.list_events(RunId("r1"))
        rows = await store.audit_rows(RunId("r1"))
        assert [r.position for r in rows] == list(range(9))
        assert all(r.run_id == "r1" for r in rows)
        assert [r.event for r in rows] == [json.loads(json.dumps(e.to_data())) for e in events]
        assert list(rows[0].event)[:2] == ["kind", "run_id"]
        assert rows[0].prev_hash == genesis_hex("r1")
        for before, row in itertools.pairwise(rows):
            assert row.prev_hash == before.hash
        assert len({r.hash for r in rows}) == 9 and all(len(r.hash) == 64 for r in rows)
        clean = await store.audit_rows(RunId("clean"))
        assert [r.event["kind"] for r in clean] == ["run_started", "tool_called", "tool_called"]
        assert clean[1].event["args"] == {"title": "ünï ✓"}
        # The same events hash the same in every store: the chain is the export's proof.
        assert (
            clean[0].hash
            == hashlib.sha256(
                bytes.fromhex(genesis_hex("clean"))
                + b'{"kind":"run_started","step":0,"at":1.5,"graph":"g","forked_from":null}'
            ).hexdigest()
        )
        for row in rows + clean:
            assert json.loads(json.dumps(row.event)) == row.event  # JSON Lines ready
        with pytest.raises(RunNotFoundError):
            await store.audit_rows(RunId("nope"))
        await new_run(store, "quiet", events=[])
        assert await store.audit_rows(RunId("quiet")) == []

    async def test_chains_survive_concurrent_writers(self, store: Store) -> None:
        async def drive(name: str) -> None:
            rid = RunId(name)
            await new_run(store, name)
            lease = await store.acquire_lease(rid, "me", 60)
            for seq in range(1, 6):
                c = call(name, seq)
                await store.journal(lease, [c], [tool_event(c, "started")], run_id=rid)
                done = settle(c, CallStatus.SUCCEEDED)
                await step(store, name, seq, {"n": SetField(b"1")}, lease=lease, calls=[done])

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(drive, f"w{i}")
        report = await store.verify_events()
        assert report.ok, report.problems
        assert report.checked == 30 * (1 + 5 * 3)
        assert len(await store.list_calls(RunId("w17"))) == 5

    # -- approvals -------------------------------------------------------------------

    async def test_approvals_round_trip_every_field(self, store: Store) -> None:
        await new_run(store, "r1")
        full, bare = approval("r1", 0), approval("r1", 0, "check", full=False)
        await ask(store, "r1", full, bare)
        assert await store.get_approval(full.approval_id) == full
        assert await store.get_approval(bare.approval_id) == bare
        assert (await store.get_approval(full.approval_id)).requested_at.utcoffset() == (  # type: ignore[union-attr]
            timedelta(hours=5, minutes=30)
        )
        assert await store.get_approval("r1:0:nope") is None
        run = await store.get_run(RunId("r1"))
        assert (run.status, run.reason, run.error_node) == (
            RunStatus.WAITING,
            "waiting for a person",
            "confirm",
        )
        yes = decided(full)
        await store.decide_approval(yes, [decided_event(yes)])
        assert await store.get_approval(full.approval_id) == yes
        no = replace(
            bare,
            status=ApprovalStatus.REJECTED,
            decided_by="zoë",
            decided_at=T0,
            comment=None,
        )
        await store.decide_approval(no, [])
        assert await store.get_approval(bare.approval_id) == no
        kinds = [e.kind for e in await store.list_events(RunId("r1"))]
        assert kinds == [
            "run_started",
            "approval_requested",
            "approval_requested",
            "approval_decided",
        ]
        assert (await store.list_events(RunId("r1")))[-1] == decided_event(yes)
        assert (await store.verify_events()).ok

    async def test_list_approvals_oldest_first_with_filters(self, store: Store) -> None:
        for name in ("r1", "r2"):
            await new_run(store, name)
        utc_late = approval("r1", 0, "late", at=T0 + timedelta(minutes=5))
        # 12:01 at +02:00 is 10:01 UTC: the earliest of all, though stored later.
        early = approval(
            "r2", 0, "early", at=datetime(2025, 1, 1, 12, 1, tzinfo=timezone(timedelta(hours=2)))
        )
        tie_a = approval("r1", 0, "tie-a", at=T0)
        tie_b = approval("r2", 0, "tie-b", at=T0.astimezone(IST))  # the same instant
        await ask(store, "r1", utc_late, tie_a)
        await ask(store, "r2", early, tie_b)

        def ids(records: list[ApprovalRecord]) -> list[str]:
            return [r.node for r in records]

        assert ids(await store.list_approvals()) == ["early", "tie-a", "tie-b", "late"]
        assert ids(await store.list_approvals(run_id=RunId("r1"))) == ["tie-a", "late"]
        assert ids(await store.list_approvals(run_id=RunId("nope"))) == []
        pending = ApprovalStatus.PENDING
        await store.decide_approval(decided(tie_a), [])
        await store.decide_approval(decided(early, status=ApprovalStatus.EXPIRED), [])
        assert ids(await store.list_approvals(status=pending)) == ["tie-b", "late"]
        assert ids(await store.list_approvals(status=ApprovalStatus.APPROVED)) == ["tie-a"]
        assert ids(await store.list_approvals(status=ApprovalStatus.REJECTED)) == []
        assert ids(await store.list_approvals(run_id=RunId("r2"), status=pending)) == ["tie-b"]
        assert ids(
            await store.list_approvals(run_id=RunId("r2"), status=ApprovalStatus.EXPIRED)
        ) == ["early"]

    async def test_approvals_commit_with_the_step_and_are_fenced(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        await new_run(store, "other")
        old = await store.acquire_lease(rid, "alpha", 0.05)
        first = approval("r1", 1)
        # With a checkpoint, calls and events: all in the one transaction.
        c = settle(call("r1", 0), CallStatus.SUCCEEDED)
        await step(store, "r1", 1, {"n": SetField(b"1")}, lease=old, calls=[c])
        await anyio.sleep(0.1)
        new = await store.acquire_lease(rid, "beta", 60)
        before = await snapshot(store, "r1")
        with pytest.raises(LeaseLostError):
            await ask(store, "r1", first, lease=old)
        assert await store.get_approval(first.approval_id) is None
        assert await store.list_approvals() == []
        assert await snapshot(store, "r1") == before
        # Refused input writes nothing either: another run's request, an id twice.
        for bad in (
            [approval("other", 1)],
            [first, replace(first, node="again")],
        ):
            with pytest.raises(StoreError):
                await ask(store, "r1", *bad, lease=new)
            assert await store.list_approvals() == []
            assert await snapshot(store, "r1") == before
        with pytest.raises(RunNotFoundError):
            await ask(store, "ghost", approval("ghost", 0))
        await ask(store, "r1", first, lease=new)
        assert await store.list_approvals() == [first]
        after = await snapshot(store, "r1")
        with pytest.raises(StoreError, match="already exists"):  # a request is made once
            await ask(store, "r1", approval("r1", 1, "second"), first, lease=new)
        assert await store.list_approvals() == [first]
        assert await snapshot(store, "r1") == after
        assert (await store.verify_events()).ok

    async def test_decide_approval_is_compare_and_set(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        asked = approval("r1", 0)
        await ask(store, "r1", asked)
        lease = await store.acquire_lease(rid, "owner", 60)  # deciders need no lease
        with pytest.raises(ValueError, match="pending"):
            await store.decide_approval(asked, [])
        with pytest.raises(ApprovalNotFoundError) as missing:
            await store.decide_approval(decided(approval("r1", 0, "nope")), [])
        assert missing.value.approval_id == "r1:0:nope"
        win = decided(asked, "lead")
        await store.decide_approval(win, [decided_event(win)])
        before = await snapshot(store, "r1")
        for loser in (
            decided(asked, "zoë"),
            decided(asked, "zoë", ApprovalStatus.REJECTED),
            decided(asked, "expiry", ApprovalStatus.EXPIRED),
        ):
            with pytest.raises(AlreadyDecidedError, match="already approved by lead") as err:
                await store.decide_approval(loser, [decided_event(loser)])
            assert (err.value.approval_id, err.value.run_id, err.value.node) == (
                asked.approval_id,
                "r1",
                "confirm",
            )
        assert await store.get_approval(asked.approval_id) == win
        assert await snapshot(store, "r1") == before
        # The owner's lease was not disturbed.
        await step(store, "r1", 1, {"n": SetField(b"1")}, lease=lease)
        assert (await store.verify_events()).ok

    async def test_racing_deciders_exactly_one_wins(self, store: Store) -> None:
        names = [f"r{i}" for i in range(5)]
        for name in names:
            await new_run(store, name)
            await ask(store, name, approval(name, 0))
        wins: dict[str, list[str]] = {name: [] for name in names}
        losses: list[AlreadyDecidedError] = []

        async def decide(name: str, person: str) -> None:
            mine = decided(approval(name, 0), person)
            try:
                await store.decide_approval(mine, [decided_event(mine)])
                wins[name].append(person)
            except AlreadyDecidedError as err:
                losses.append(err)

        async with anyio.create_task_group() as tg:
            for k in range(12):
                for name in names:
                    tg.start_soon(decide, name, f"person{k}")
        assert len(losses) == 5 * 11
        for name in names:
            assert len(wins[name]) == 1, wins
            stored = await store.get_approval(f"{name}:0:confirm")
            assert stored is not None and stored.decided_by == wins[name][0]
            kinds = [e.kind for e in await store.list_events(RunId(name))]
            assert kinds.count("approval_decided") == 1
        assert (await store.verify_events()).ok

    async def test_deleting_a_run_deletes_its_approvals(self, store: Store) -> None:
        old = T0 - timedelta(days=9)
        await new_run(store, "r1")
        await new_run(store, "gone", created_at=old, status=RunStatus.SUCCEEDED)
        await new_run(store, "kept")
        for name in ("r1", "gone", "kept"):
            await ask(store, name, approval(name, 0))
        await store.delete_run(RunId("r1"))
        assert await store.prune_runs(created_before=T0) == 0  # waiting runs are kept
        assert await store.prune_runs(created_before=T0, terminal_only=False) == 1
        assert [a.run_id for a in await store.list_approvals()] == ["kept"]
        assert await store.get_approval("r1:0:confirm") is None
        assert await store.get_approval("gone:0:confirm") is None
        with pytest.raises(ApprovalNotFoundError):
            await store.decide_approval(decided(approval("r1", 0)), [])
        await new_run(store, "r1")  # the same id again asks afresh
        await ask(store, "r1", approval("r1", 0))
        assert await store.get_approval("r1:0:confirm") == approval("r1", 0)
        assert (await store.verify_events()).ok

    # -- taking over from a dead owner -------------------------------------------------

    async def test_steal_from_a_dead_owner_fences_it(self, store: Store) -> None:
        rid = RunId("r1")
        await new_run(store, "r1")
        dead = await store.acquire_lease(rid, "host:1:dead", 60)
        await step(store, "r1", 1, {"n": SetField(b"1")}, lease=dead)
        with pytest.raises(RunLockedError) as locked:  # steal_from names someone else
            await store.acquire_lease(rid, "me", 60, steal_from="host:2:other")
        assert (locked.value.owner, locked.value.expires_at) == ("host:1:dead", dead.expires_at)
        taken = await store.acquire_lease(rid, "me", 60, steal_from="host:1:dead")
        assert (taken.owner, taken.epoch) == ("me", dead.epoch + 1)
        before = await snapshot(store, "r1")
        with pytest.raises(LeaseLostError):
            await step(store, "r1", 2, {"n": SetField(b"2")}, lease=dead, calls=[call("r1", 1)])
        with pytest.raises(LeaseLostError):
            await ask(store, "r1", approval("r1", 1), lease=dead)
        with pytest.raises(LeaseLostError):
            await store.renew_lease(dead, 60)
        await store.release_lease(dead)  # no effect on the new owner
        assert await snapshot(store, "r1") == before
        assert await store.list_calls(rid) == [] and await store.list_approvals() == []
        # The old owner, back from the dead, is locked out like anyone else.
        with pytest.raises(RunLockedError) as locked:
            await store.acquire_lease(rid, "host:1:dead", 60, steal_from="host:1:dead")
        assert (locked.value.owner, locked.value.expires_at) == ("me", taken.expires_at)
        await step(store, "r1", 2, {"n": SetField(b"2")}, lease=taken)
        await store.release_lease(taken)
        # With nobody holding it (or the holder's lease expired), steal_from is moot.
        free = await store.acquire_lease(rid, "you", 0.05, steal_from="someone")
        assert free.epoch == taken.epoch + 1
        await anyio.sleep(0.1)
        late = await store.acquire_lease(rid, "me", 60, steal_from="someone")
        assert late.epoch == free.epoch + 1
