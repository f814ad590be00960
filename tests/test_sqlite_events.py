"""The compact form events are stored in expands back to their exact JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

import graphorch as go
from graphorch.events import CustomEvent, Event, Retrying, RunStarted, StepFinished, StepStarted
from graphorch.store._audit import event_json
from graphorch.store._sqlite_events import compact, compact_many, expand, expander

RUN = "r-0123abcd"


def _events() -> list[Event]:
    out: list[Event] = [RunStarted(run_id=RUN, step=0, graph="g")]
    for i in range(6):
        out.append(
            StepFinished(
                run_id=RUN,
                step=i + 1,
                node=f"b{i}",
                changed=("total",),
                next_nodes=("join",),
                checkpoint=f"{RUN}:{i + 1}",
            )
        )
    out.append(StepStarted(run_id=RUN, step=7, node='odd "name",\n'))
    # every kind with a code, "retrying" included: its code is chr(10), a newline
    out += [
        Retrying(run_id=RUN, step=7, node="n", attempt=a, delay=0.0, error="E: x")
        for a in (1, 2, 3)
    ]
    # user data that looks like the text the codes stand for, and the run id in values
    out.append(
        CustomEvent(
            run_id=RUN,
            step=7,
            node="n",
            name="x",
            data={
                "nested": {"kind": "step_finished", "step": 3, "at": 1.5},
                "text": f'{RUN}: ,"node": \\n',
                "ref": f"{RUN}:4",
            },
        )
    )
    return out


def test_compacting_many_events_at_once_expands_to_the_exact_json() -> None:
    texts = [event_json(e) for e in _events()]
    table = expander(RUN)
    stored = compact_many(texts, RUN)
    assert len(stored) == len(texts)
    assert [expand(s, table) for s in stored] == texts
    # the same round trip one by one, and the batch is as compact
    singles = [compact(t, RUN, checked=True) for t in texts]
    assert [expand(s, table) for s in singles] == texts
    assert sum(map(len, stored)) <= sum(map(len, singles))
    assert sum(map(len, stored)) < sum(map(len, texts)) * 0.7


def test_few_events_take_the_one_by_one_path_with_the_same_result() -> None:
    texts = [event_json(e) for e in _events()[:3]]
    stored = compact_many(texts, RUN)
    assert stored == [compact(t, RUN, checked=True) for t in texts]


async def test_a_step_retried_three_times_commits_with_its_retry_events(tmp_path: Path) -> None:
    class Count(BaseModel):
        n: int = 0

    attempts: list[int] = []
    g = go.Graph("flaky", state=Count)

    @g.plan(retry=go.Retry(attempts=4, backoff=0))
    async def flaky(state: Count) -> dict[str, Any]:  # pyright: ignore[reportUnusedFunction]
        attempts.append(1)
        if len(attempts) < 4:
            raise RuntimeError("not yet")
        return {"n": 1}

    g.end("done")
    g.edge(go.START, "flaky").edge("flaky", "done")
    async with go.SQLiteStore(tmp_path / "s.db") as store:
        rt = go.Runtime(store)
        result = await (await rt.start(g, Count())).wait()
        assert result.status is go.RunStatus.SUCCEEDED and result.state.n == 1
        kinds = [e.kind for e in await store.list_events(result.run_id)]
        assert kinds.count("retrying") == 3
        assert (await store.verify_events(result.run_id)).ok
