"""The SQLite store: the conformance suite, plus what only a file can do."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from store_conformance import (
    T0,
    StoreConformance,
    approval,
    ask,
    audit_scene,
    call,
    cid,
    decided,
    decided_event,
    new_run,
    settle,
    snapshot,
    step,
    tool_event,
)
from store_v3_fixture import describe

from graphorch.exceptions import DatabaseError, LeaseLostError, RunLockedError
from graphorch.store import _sqlite_approvals  # pyright: ignore[reportPrivateUsage]
from graphorch.store._sqlite_schema import APPLICATION_ID, SCHEMA_VERSION
from graphorch.store.approvals import ApprovalStatus
from graphorch.store.base import AppendField, RunUpdate, SetField
from graphorch.store.journal import CallStatus
from graphorch.store.sqlite import SQLiteStore
from graphorch.types import RunId, RunStatus

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
R1 = "rk = (SELECT rk FROM runs WHERE run_id = 'r1')"  # run r1's rows (by its integer key)


class TestSQLiteConformance(StoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:  # type: ignore[override]
        s = SQLiteStore(tmp_path / "conformance.db")
        yield s
        await s.close()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def file_bytes(path: Path) -> dict[str, bytes]:
    """The database file and any -wal/-shm beside it."""
    found: dict[str, bytes] = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(path) + suffix)
        if p.exists():
            found[suffix] = p.read_bytes()
    return found


def disk_size(path: Path) -> int:
    return sum(
        Path(str(path) + s).stat().st_size for s in ("", "-wal") if Path(str(path) + s).exists()
    )


async def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SQLiteStore(path)
    await new_run(store, "r1")
    lease = await store.acquire_lease(RunId("r1"), "alpha", 60)
    for seq in range(1, 40):
        await step(store, "r1", seq, {"items": AppendField(f"[{seq}]".encode())}, lease=lease)
    before = await snapshot(store, "r1")
    await store.close()

    again = SQLiteStore(path)
    assert await snapshot(again, "r1") == before
    # A cold process continues the chains and the event hash chain where they stopped.
    lease = await again.acquire_lease(RunId("r1"), "alpha", 60)
    assert lease.epoch == 2
    await step(again, "r1", 40, {"items": AppendField(b"[40]")}, lease=lease)
    items = (await again.get_checkpoint(RunId("r1"))).state["items"]
    assert items == ("[" + ",".join(str(i) for i in range(1, 41)) + "]").encode()
    report = await again.verify_events(RunId("r1"))
    assert report.ok and report.checked == 1 + 2 * 40
    await again.close()


async def test_schema_version_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    store = SQLiteStore(path, durability="full")
    await new_run(store, "r1")
    sync = await store._writer.call(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])  # pyright: ignore[reportPrivateUsage]
    assert sync == 2  # FULL
    await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    normal = SQLiteStore(path)
    assert await normal._writer.call(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1  # pyright: ignore[reportPrivateUsage]
    await normal.close()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="durability"):
        SQLiteStore("x.db", durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MemoryStore"):
        SQLiteStore(":memory:")


async def test_default_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRAPHORCH_DB", raising=False)
    store = SQLiteStore()
    assert store.path == "graphorch.db"
    await new_run(store, "r1")
    await store.close()
    assert (tmp_path / "graphorch.db").exists()
    monkeypatch.setenv("GRAPHORCH_DB", str(tmp_path / "env.db"))
    store = SQLiteStore()
    await new_run(store, "r1")
    await store.close()
    assert (tmp_path / "env.db").exists()


async def refused(path: Path, match: str) -> None:
    """Opening ``path`` fails with DatabaseError(match) and leaves its bytes alone."""
    before = file_bytes(path)
    store = SQLiteStore(path)
    with pytest.raises(DatabaseError, match=match):
        await store.get_run(RunId("r1"))
    with pytest.raises(DatabaseError, match=match):
        await new_run(store, "r1")
    await store.close()
    assert file_bytes(path) == before


async def test_refuses_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 10)
    await refused(path, "not a graphorch database")


async def test_refuses_foreign_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO runs (name) VALUES ('mine')")
    conn.commit()
    conn.close()
    await refused(path, "not a graphorch one")


async def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = SQLiteStore(path)
    await new_run(store, "r1")
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    await refused(path, "upgrade graphorch")


async def test_refuses_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    store = SQLiteStore(path)
    await new_run(store, "r1", state={"n": b"0", "doc": b'"' + b"d" * 20000 + b'"'})
    await store.compact()
    await store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2 : page * 2 + 64] = b"\xee" * 64  # smash a B-tree page header
    path.write_bytes(bytes(data))
    await refused(path, "corrupt")
    truncated = tmp_path / "short.db"
    truncated.write_bytes(b"SQLite format 3\x00" + b"\x00" * 20)
    await refused(truncated, "corrupt")


def tamper(path: Path, *sql: str) -> None:
    """Change the file behind the store's back, as anyone with the sqlite3 shell could."""
    conn = sqlite3.connect(path)
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (  # (a) an event's content edited
            [f"UPDATE events SET data = replace(data, '\"a\"', '\"b\"') WHERE {R1} AND n = 3"],
            ["run 'r1', position 3: edited"],
        ),
        (  # (a') edited, and its hash recomputed by someone who knows the formula
            [
                "UPDATE events SET data = replace(data, '\"a\"', '\"b\"'), hash = zeroblob(32)"
                f" WHERE {R1} AND n = 3"
            ],
            ["run 'r1', position 3: edited", "run 'r1', position 4: edited"],
        ),
        (  # (b) a row deleted from the middle
            [f"DELETE FROM events WHERE {R1} AND n = 4"],
            ["run 'r1', position 4: deleted"],
        ),
        (  # (c) the last row deleted
            [f"DELETE FROM events WHERE {R1} AND n = 8"],
            ["run 'r1', position 8: deleted"],
        ),
        (  # (c') the last rows deleted
            [f"DELETE FROM events WHERE {R1} AND n >= 6"],
            ["run 'r1', positions 6-8: deleted"],
        ),
        (  # (d) a forged row appended
            [
                "INSERT INTO events (rk, n, data, hash) SELECT rk, 9,"
                " replace(data, 'step_started', 'forged'), hash FROM events"
                f" WHERE {R1} AND n = 7"
            ],
            ["run 'r1', position 9: inserted"],
        ),
        (  # (d') a forged row slipped in: the tail renumbered to make room
            [
                f"UPDATE events SET n = -n WHERE {R1} AND n >= 5",
                f"UPDATE events SET n = 1 - n WHERE {R1} AND n <= -5",
                "INSERT INTO events (rk, n, data, hash) VALUES"
                " ((SELECT rk FROM runs WHERE run_id = 'r1'), 5, '{}', zeroblob(32))",
            ],
            [
                "run 'r1', position 5: edited",
                "run 'r1', position 6: edited",
                "run 'r1', position 9: inserted",
            ],
        ),
        (  # the chain head itself removed
            [f"DELETE FROM event_chains WHERE {R1}"],
            ["run 'r1': chain head missing"],
        ),
    ],
    ids=[
        "edit",
        "edit+rehash",
        "delete-middle",
        "delete-last",
        "delete-tail",
        "append",
        "insert",
        "head",
    ],
)
async def test_tampering_is_detected(tmp_path: Path, sql: list[str], expected: list[str]) -> None:
    path = tmp_path / "audit.db"
    store = SQLiteStore(path)
    await audit_scene(store)
    assert (await store.verify_events()).ok
    tamper(path, *sql)
    for report in (await store.verify_events(RunId("r1")), await store.verify_events()):
        assert not report.ok
        assert len(report.problems) == len(expected), report.problems
        for problem, start in zip(report.problems, expected, strict=True):
            assert problem.startswith(start), report.problems
    clean = await store.verify_events(RunId("clean"))
    assert clean.ok and clean.checked == 3
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    assert (await store.verify_events()).checked == rows
    # The store goes on writing; the damage stays visible, the new rows verify.
    await step(store, "clean", 2, {"n": SetField(b"2")})
    assert (await store.verify_events(RunId("clean"))).ok
    await store.close()
    again = SQLiteStore(path)  # a cold process sees the same
    assert [p.split(":")[0] for p in (await again.verify_events()).problems] == [
        e.split(":")[0] for e in expected
    ]
    await again.close()


async def test_a_deleted_tail_stays_a_gap_after_more_writes(tmp_path: Path) -> None:
    path = tmp_path / "gap.db"
    store = SQLiteStore(path)
    await audit_scene(store)
    tamper(path, f"DELETE FROM events WHERE {R1} AND n >= 7")
    await step(store, "r1", 5, {"n": SetField(b"5")})  # continues after the recorded head
    report = await store.verify_events()
    assert report.problems == [
        "run 'r1', positions 7-8: deleted (missing from the chain)",
    ]
    rows = await store.audit_rows(RunId("r1"))
    assert [r.position for r in rows] == [0, 1, 2, 3, 4, 5, 6, 9, 10]
    await store.close()


async def test_fencing_across_two_connections(tmp_path: Path) -> None:
    """A second store on the same file (as another process would) takes the run over."""
    path = tmp_path / "two.db"
    first = SQLiteStore(path)
    second = SQLiteStore(path)
    await new_run(first, "r1")
    old = await first.acquire_lease(RunId("r1"), "alpha", 0.05)
    await step(first, "r1", 1, {"n": SetField(b"1")}, lease=old)
    await anyio.sleep(0.1)
    new = await second.acquire_lease(RunId("r1"), "beta", 60)
    assert new.epoch == old.epoch + 1
    before = await snapshot(second, "r1")
    with pytest.raises(LeaseLostError):
        await step(first, "r1", 2, {"n": SetField(b"2")}, lease=old)
    assert await snapshot(second, "r1") == before
    await step(second, "r1", 2, {"n": SetField(b"2")}, lease=new)
    assert (await first.get_checkpoint(RunId("r1"))).state["n"] == b"2"
    # The first store's caches must notice the other connection's writes.
    await step(first, "r1", 3, {"items": AppendField(b"[1]")})
    assert (await second.get_checkpoint(RunId("r1"))).state == {"n": b"2", "items": b"[1]"}
    await first.close()
    await second.close()


async def test_two_hundred_concurrent_runs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "many.db")

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
        await store.commit_step(lease, None, RunUpdate(RunStatus.SUCCEEDED), [], run_id=RunId(name))
        await store.release_lease(lease)

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(drive, f"c{i:03d}")
    runs = await store.list_runs(limit=None, status=RunStatus.SUCCEEDED)
    assert len(runs) == 200 and all(r.seq == 10 for r in runs)
    for name in ("c000", "c199"):
        state = (await store.get_checkpoint(RunId(name))).state
        assert state["items"] == b"[1,2,3,4,5,6,7,8,9,10]"
        assert (await store.verify_events(RunId(name))).ok
    report = await store.verify_events()
    assert report.ok and report.checked == 200 * (1 + 2 * 10)
    # every release landed, though it rode a batch beside other runs' deferred rows
    for i in range(200):
        await store.acquire_lease(RunId(f"c{i:03d}"), "next owner", 60)
    await store.close()


_WORKER = textwrap.dedent(
    """
    import sys
    import anyio
    sys.path[:0] = [{root!r}, {tests!r}]
    from store_conformance import call, new_run, settle, step, tool_event
    from graphorch.store.journal import CallStatus
    from graphorch.store.base import AppendField, RunUpdate, SetField
    from graphorch.store.sqlite import SQLiteStore
    from graphorch.types import RunId

    async def main(path, me):
        store = SQLiteStore(path, busy_timeout=0.05)  # short: exercise the retry loop

        async def drive(name):
            await new_run(store, name)
            lease = await store.acquire_lease(RunId(name), me, 60)
            for seq in range(1, 21):
                started = call(name, seq)
                await store.journal(lease, [started], [], run_id=RunId(name))
                done = settle(started, CallStatus.SUCCEEDED)
                await step(store, name, seq, {{"n": SetField(str(seq).encode()),
                                              "items": AppendField(b"[0]")}}, lease=lease,
                           calls=[done])
                await store.list_runs(limit=5)
            await store.journal(lease, [], [tool_event(done, "succeeded")], run_id=RunId(name))

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(drive, f"{{me}}-{{i}}")
        await store.compact()
        await store.close()

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


@pytest.mark.slow
def test_four_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(root=str(ROOT), tests=str(ROOT / "tests")))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), f"p{k}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err.decode()
        assert b"locked" not in err

    async def check() -> None:
        store = SQLiteStore(path)
        runs = await store.list_runs(limit=None)
        assert len(runs) == 40 and all(r.seq == 20 for r in runs)
        state = (await store.get_checkpoint(RunId("p3-9"))).state
        assert state == {"n": b"20", "items": ("[" + ",".join(["0"] * 20) + "]").encode()}
        report = await store.verify_events()
        assert report.ok, report.problems[:5]
        assert report.checked == 40 * (1 + 2 * 20 + 1)
        assert [c.status for c in await store.list_calls(RunId("p2-5"))] == ["succeeded"] * 20
        await store.close()

    anyio.run(check)


async def test_size_big_state_small_changes(tmp_path: Path) -> None:
    """~1 MB of state stepped 100 times changing a counter: stored once, not 100 times."""
    path = tmp_path / "big.db"
    store = SQLiteStore(path)
    docs = "[" + ",".join('"' + f"{i:04d}" + "x" * 1018 + '"' for i in range(1000)) + "]"
    await new_run(store, "r1", state={"docs": docs.encode(), "counter": b"0"})
    for seq in range(1, 101):
        await step(store, "r1", seq, {"counter": SetField(str(seq).encode())})
    await store.compact()
    size = disk_size(path)
    assert size < 3_000_000, size
    head = await store.get_checkpoint(RunId("r1"))
    assert head.state["docs"] == docs.encode() and head.state["counter"] == b"100"
    await store.close()


async def test_size_appends_grow_linearly(tmp_path: Path) -> None:
    """1,000 steps each appending a 100-byte item: well under 1 MB, not quadratic."""
    path = tmp_path / "append.db"
    store = SQLiteStore(path)
    await new_run(store, "r1", state={"log": b"[]", "n": b"0"})
    item = b'["' + b"i" * 96 + b'"]'  # 100 bytes of JSON per item
    for seq in range(1, 1001):
        await step(store, "r1", seq, {"log": AppendField(item), "n": SetField(str(seq).encode())})
    await store.compact()
    size = disk_size(path)
    assert size < 1_000_000, size
    log = (await store.get_checkpoint(RunId("r1"))).state["log"]
    assert len(log) == 1 + 1000 * 99 and log.count(b'"') == 2000
    await store.close()


@pytest.mark.slow
async def test_listing_100k_runs_uses_indexes(tmp_path: Path) -> None:
    path = tmp_path / "100k.db"
    store = SQLiteStore(path)
    await new_run(store, "seed")
    await store.close()
    # Bulk-load 100,000 runs straight into the file: the store API is not the subject.
    conn = sqlite3.connect(path)
    base_us = 1_700_000_000_000_000
    conn.executemany(
        "INSERT INTO runs (run_id, graph, graph_fingerprint, status, created_us, created_off,"
        " updated_us, updated_off, parent_run) VALUES (?, ?, 'fp', ?, ?, 0, ?, 0, ?)",
        (
            (
                f"b{i:06d}",
                f"g{i % 10}",
                ("succeeded", "running", "failed")[i % 3],
                base_us + i,
                base_us + i,
                f"b{i // 100:06d}" if i % 7 == 0 else None,
            )
            for i in range(100_000)
        ),
    )
    conn.execute(
        "INSERT INTO shapes (nodes, next_nodes, status, changed)"
        " VALUES ('[]', '[\"a\"]', 'running', '[]')"
    )
    shape = conn.execute("SELECT max(id) FROM shapes").fetchone()[0]
    conn.execute(
        "INSERT INTO checkpoints (rk, seq, parent, shape, fields, meta, created_us, created_off)"
        " SELECT rk, 0, NULL, ?, '{}', x'', created_us, 0 FROM runs WHERE run_id LIKE 'b%'",
        (shape,),
    )
    conn.commit()
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "runs_by_time"),
        ({"status": RunStatus.RUNNING}, "runs_by_status"),
        ({"graph": "g3"}, "runs_by_graph"),
        ({"parent_run": RunId("b000005")}, "runs_by_parent"),
        ({"created_after": T0, "created_before": T0 + timedelta(days=1)}, "runs_by_time"),
    ]
    for filters, index in cases:
        sql, args = SQLiteStore.list_runs_query(**filters)  # type: ignore[arg-type]
        plan = " | ".join(str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert index in plan, (filters, plan)
        assert "TEMP B-TREE" not in plan, (filters, plan)  # no sort of the whole table
        assert "SCAN c" not in plan and "SCAN checkpoints" not in plan, plan
    conn.close()
    store = SQLiteStore(path)
    newest = await store.list_runs(status=RunStatus.RUNNING, graph="g1", limit=3)
    assert [r.run_id for r in newest] == ["b099991", "b099961", "b099931"]
    assert newest[0].seq == 0 and newest[0].next_nodes == ("a",)
    assert newest[0].head == cid("b099991", 0)
    await store.close()


def schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
    conn.close()
    return [(str(n), str(q)) for n, q in rows]


def old_file(tmp_path: Path, version: int) -> Path:
    """A copy of the version 3 file an older graphorch wrote (tests/data), taken back
    to ``version`` by dropping the tables later versions added."""
    path = tmp_path / f"v{version}.db"
    path.write_bytes((DATA / "store_v3.db").read_bytes())
    drops = {1: ["approvals", "tool_calls", "event_chains"], 2: ["approvals"], 3: []}[version]
    tamper(path, *(f"DROP TABLE {t}" for t in drops), f"PRAGMA user_version = {version}")
    return path


def expected_v3() -> dict[str, Any]:
    """What the graphorch that wrote tests/data/store_v3.db read back from it."""
    return json.loads((DATA / "store_v3.json").read_text())


async def test_version_3_file_is_upgraded_and_keeps_everything(tmp_path: Path) -> None:
    """A file written by graphorch before schema version 4 (compact rows) is migrated
    in place on open: everything reads back as the old graphorch read it, the audit
    chains verify, and the file then has exactly the schema a new file gets."""
    path = old_file(tmp_path, 3)
    fresh_path = tmp_path / "fresh.db"
    fresh = SQLiteStore(fresh_path)
    await new_run(fresh, "x")
    await fresh.close()
    store = SQLiteStore(path)
    assert await describe(store) == expected_v3()
    assert schema(path) == schema(fresh_path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'old_%'"
        ).fetchone() == (0,)
    conn.close()
    # It goes on: the chains continue, calls and approvals work, a fork still loads.
    lease = await store.acquire_lease(RunId("long"), "beta", 60, steal_from="alpha")
    started = call("long", 40)
    await store.journal(lease, [started], [tool_event(started, "started")], run_id=RunId("long"))
    done = settle(started, CallStatus.SUCCEEDED)
    await step(store, "long", 41, {"log": AppendField(b'["x"]')}, lease=lease, calls=[done])
    assert (await store.list_calls(RunId("long")))[-1] == done
    asked = (await store.list_approvals(status=ApprovalStatus.PENDING))[0]
    win = decided(asked)
    await store.decide_approval(win, [decided_event(win)])
    assert (await store.get_checkpoint(RunId("fork"))).state["n"] == b"-1"
    assert (await store.verify_events()).ok
    await store.close()
    tamper(path, f"DELETE FROM events WHERE {R1} AND n = 8")
    again = SQLiteStore(path)
    assert (await again.verify_events()).problems == [
        "run 'r1', position 8: deleted (the chain head records 9 events; the log ends "
        "at position 7)"
    ]
    await again.close()


async def test_version_1_file_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    """A file written before the journal existed: schema version 1, no tool_calls or
    chain heads. Opening it migrates it in place; its runs, events and chains stay."""
    path = old_file(tmp_path, 1)
    again = SQLiteStore(path)
    got = await describe(again)
    for name, want in expected_v3().items():
        if name != "verify":
            assert {k: v for k, v in got[name].items() if k not in ("calls", "approvals")} == {
                k: v for k, v in want.items() if k not in ("calls", "approvals")
            }
            assert got[name]["calls"] == got[name]["approvals"] == []
    report = await again.verify_events()
    assert report.ok and report.checked == expected_v3()["verify"][1]
    lease = await again.acquire_lease(RunId("r1"), "alpha", 60)
    started = call("r1", 5)
    await again.journal(lease, [started], [tool_event(started, "started")], run_id=RunId("r1"))
    await step(again, "r1", 5, {}, lease=lease, calls=[settle(started, CallStatus.SUCCEEDED)])
    assert [c.status for c in await again.list_calls(RunId("r1"))] == [CallStatus.SUCCEEDED]
    assert (await again.verify_events()).ok
    await again.close()
    tamper(path, f"DELETE FROM events WHERE {R1} AND n = (SELECT max(n) FROM events WHERE {R1})")
    last = SQLiteStore(path)
    [problem] = (await last.verify_events()).problems
    assert problem.startswith("run 'r1', position") and "the chain head records" in problem
    await last.close()


@pytest.mark.parametrize("table", ["event_chains", "approvals"])  # of versions 2 and 3
async def test_file_missing_a_table_of_a_later_version_is_refused(
    tmp_path: Path, table: str
) -> None:
    path = tmp_path / "broken.db"
    store = SQLiteStore(path)
    await new_run(store, "r1")
    await store.close()
    tamper(path, f"DROP TABLE {table}")
    before = file_bytes(path)
    broken = SQLiteStore(path)
    with pytest.raises(DatabaseError, match=table):
        await broken.get_run(RunId("r1"))
    await broken.close()
    assert file_bytes(path) == before


async def test_version_2_file_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    """A file written before approvals existed (schema version 2) is migrated in place
    on open: its runs, calls and chains stay, and approvals work."""
    path = old_file(tmp_path, 2)
    again = SQLiteStore(path)
    got = await describe(again)
    for name, want in expected_v3().items():
        if name != "verify":
            assert {k: v for k, v in got[name].items() if k != "approvals"} == {
                k: v for k, v in want.items() if k != "approvals"
            }
    asked = approval("r1", 4)
    await ask(again, "r1", asked)
    assert await again.list_approvals(status=ApprovalStatus.PENDING) == [asked]
    win = decided(asked)
    await again.decide_approval(win, [decided_event(win)])
    assert await again.get_approval(asked.approval_id) == win
    assert (await again.verify_events()).ok
    await again.close()


async def test_listing_approvals_reads_indexes_in_order(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "plan.db")
    await new_run(store, "r1")

    def plan(conn: sqlite3.Connection, run_id: str | None, status: ApprovalStatus | None) -> str:
        sql, args = _sqlite_approvals.list_query(run_id, status)
        return " | ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))

    for run_id, status, index in (
        (None, ApprovalStatus.PENDING, "approvals_by_status"),
        ("r1", None, "approvals_by_run"),
        ("r1", ApprovalStatus.PENDING, "approvals_by_"),
    ):
        text = await store._reader.call(partial(plan, run_id=run_id, status=status))  # pyright: ignore[reportPrivateUsage]
        assert index in text and "TEMP B-TREE" not in text, text
    await store.close()


async def test_steal_from_fences_the_old_owner_across_connections(tmp_path: Path) -> None:
    """Another process (here a second store on the file) takes the run from a holder it
    knows is dead; the holder's late writes are refused and write nothing."""
    path = tmp_path / "steal.db"
    dead, alive = SQLiteStore(path), SQLiteStore(path)
    await new_run(dead, "r1")
    old = await dead.acquire_lease(RunId("r1"), "host:1:dead", 60)
    await step(dead, "r1", 1, {"n": SetField(b"1")}, lease=old)
    with pytest.raises(RunLockedError) as locked:
        await alive.acquire_lease(RunId("r1"), "host:2:alive", 60)
    assert locked.value.owner == "host:1:dead"
    assert locked.value.expires_at == pytest.approx(old.expires_at)  # pyright: ignore[reportUnknownMemberType]
    new = await alive.acquire_lease(RunId("r1"), "host:2:alive", 60, steal_from=locked.value.owner)
    assert new.epoch == old.epoch + 1
    before = await snapshot(alive, "r1")
    with pytest.raises(LeaseLostError):
        await step(dead, "r1", 2, {"n": SetField(b"2")}, lease=old, calls=[call("r1", 1)])
    with pytest.raises(LeaseLostError):
        await ask(dead, "r1", approval("r1", 1), lease=old)
    with pytest.raises(LeaseLostError):
        await dead.journal(old, [call("r1", 1)], [], run_id=RunId("r1"))
    assert await snapshot(alive, "r1") == before
    assert await alive.list_calls(RunId("r1")) == [] and await alive.list_approvals() == []
    await step(alive, "r1", 2, {"n": SetField(b"2")}, lease=new)
    assert (await dead.get_checkpoint(RunId("r1"))).state["n"] == b"2"
    await dead.close()
    await alive.close()


_DECIDER = textwrap.dedent(
    """
    import random
    import sys
    import time
    from pathlib import Path
    import anyio
    sys.path[:0] = [{root!r}, {tests!r}]
    from store_conformance import approval, decided, decided_event
    from graphorch.exceptions import AlreadyDecidedError
    from graphorch.store.sqlite import SQLiteStore

    async def main(path, me, go, count):
        store = SQLiteStore(path, busy_timeout=0.05)
        await store.list_approvals()  # open the file before the start signal
        Path(f"{{go}}-{{me}}").touch()
        while not Path(go).exists():
            time.sleep(0.001)
        won = []

        async def decide(i):
            mine = decided(approval(f"r{{i}}", 0), me)
            try:
                await store.decide_approval(mine, [decided_event(mine)])
                won.append(i)
            except AlreadyDecidedError:
                pass

        # One at a time (a transaction each), each process in its own random order:
        # both try every approval, and both win some.
        order = list(range(count))
        random.Random(me).shuffle(order)
        for i in order:
            await decide(i)
        await store.close()
        print(" ".join(map(str, sorted(won))))

    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    """
)


@pytest.mark.slow
def test_two_processes_race_to_decide(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    go = tmp_path / "go"
    count = 200

    async def setup() -> None:
        store = SQLiteStore(path)
        for i in range(count):
            await new_run(store, f"r{i}")
            await ask(store, f"r{i}", approval(f"r{i}", 0))
        await store.close()

    anyio.run(setup)
    script = tmp_path / "decider.py"
    script.write_text(_DECIDER.format(root=str(ROOT), tests=str(ROOT / "tests")))
    procs = {
        me: subprocess.Popen(
            [sys.executable, str(script), str(path), me, str(go), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for me in ("alice", "bob")
    }
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}-{me}").exists() for me in procs):  # both ready
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values())
        time.sleep(0.005)
    go.touch()
    won: dict[str, set[int]] = {}
    for me, proc in procs.items():
        out, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err.decode()
        won[me] = {int(x) for x in out.split()}
    assert won["alice"].isdisjoint(won["bob"])
    assert won["alice"] | won["bob"] == set(range(count))

    async def check() -> None:
        store = SQLiteStore(path)
        for i in range(count):
            stored = await store.get_approval(f"r{i}:0:confirm")
            assert stored is not None and stored.status is ApprovalStatus.APPROVED
            assert stored.decided_by == ("alice" if i in won["alice"] else "bob")
            kinds = [e.kind for e in await store.list_events(RunId(f"r{i}"))]
            assert kinds.count("approval_decided") == 1
        assert (await store.verify_events()).ok
        await store.close()

    anyio.run(check)
