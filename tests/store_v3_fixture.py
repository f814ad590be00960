"""A schema version 3 file, written by graphorch before version 4, for migration tests.

``tests/data/store_v3.db`` and ``tests/data/store_v3.json`` were made by running this
module with the graphorch of commit af5f0d1 (schema version 3) first on the path::

    git worktree add /tmp/v3 af5f0d1
    PYTHONPATH=/tmp/v3:tests python tests/store_v3_fixture.py tests/data

The JSON holds what that graphorch read back from the file (:func:`describe`); a newer
graphorch must read the same from the migrated file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
from store_conformance import (
    T0,
    approval,
    ask,
    audit_scene,
    call,
    cid,
    new_run,
    settle,
    step,
    tool_event,
)

from graphorch.store.base import AppendField, SetField
from graphorch.store.journal import CallStatus
from graphorch.store.sqlite import SQLiteStore
from graphorch.types import RunId

RUNS = ("r1", "clean", "quiet", "long", "fork")


async def describe(store: SQLiteStore) -> dict[str, Any]:
    """Everything readable about the fixture's runs, as JSON-able text."""
    out: dict[str, Any] = {}
    for name in RUNS:
        rid = RunId(name)
        infos = await store.list_checkpoints(rid)
        out[name] = {
            "run": repr(await store.get_run(rid)),
            "checkpoints": [repr(i) for i in infos],
            "states": [repr(await store.get_checkpoint(rid, i.checkpoint_id)) for i in infos],
            "audit": [repr(r) for r in await store.audit_rows(rid)],
            "calls": [repr(c) for c in await store.list_calls(rid)],
            "approvals": [repr(a) for a in await store.list_approvals(run_id=rid)],
        }
    report = await store.verify_events()
    out["verify"] = [report.ok, report.checked, report.problems]
    return out


async def build(path: Path) -> dict[str, Any]:
    """Write the fixture's runs to ``path``; returns :func:`describe` of it."""
    store = SQLiteStore(path)
    await audit_scene(store)  # r1 (9 events) and clean (a journaled call)
    await new_run(store, "quiet", events=[])
    await new_run(store, "long", state={"log": b"[]", "n": b"0"})
    lease = await store.acquire_lease(RunId("long"), "alpha", 3600)
    for seq in range(1, 41):  # past one merge of append segments
        item = b'["' + b"i" * 40 + str(seq).encode() + b'"]'
        started = call("long", seq - 1)
        await store.journal(
            lease, [started], [tool_event(started, "started")], run_id=RunId("long")
        )
        done = settle(started, CallStatus.SUCCEEDED, result=item)
        await step(
            store,
            "long",
            seq,
            {"log": AppendField(item), "n": SetField(str(seq).encode())},
            lease=lease,
            calls=[done],
            events=[tool_event(done, "succeeded")],
        )
    asked = approval("long", 40)
    await ask(store, "long", asked, lease=lease)
    await new_run(
        store,
        "fork",
        created_at=T0,
        fork_of=cid("long", 20),
        patch={"n": SetField(b"-1")},
    )
    await step(store, "fork", 1, {"log": AppendField(b'["forked"]')})
    await store.close()
    store = SQLiteStore(path)
    described = await describe(store)
    await store.close()
    return described


def main(directory: str) -> None:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    db = root / "store_v3.db"
    db.unlink(missing_ok=True)
    described = anyio.run(build, db)
    (root / "store_v3.json").write_text(json.dumps(described, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1])
