"""The in-memory store passes the store conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from store_conformance import StoreConformance, audit_scene

from graphorch._record import replace
from graphorch.store.memory import MemoryStore, _AuditEntry, _Run  # pyright: ignore[reportPrivateUsage]
from graphorch.types import RunId


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:  # type: ignore[override]
        s = MemoryStore()
        yield s
        await s.close()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _edit(run: _Run) -> None:
    run.audit[3].data = run.audit[3].data.replace('"a"', '"b"')


def _delete_middle(run: _Run) -> None:
    del run.audit[4]


def _delete_last(run: _Run) -> None:
    del run.audit[-1]


def _forge(run: _Run) -> None:
    run.audit.append(replace(run.audit[7], n=9, data=run.audit[7].data + " "))


def _duplicate(run: _Run) -> None:
    run.audit.insert(5, _AuditEntry(5, "{}", run.audit[4].hash))


@pytest.mark.parametrize(
    ("poke", "expected"),
    [
        (_edit, ["run 'r1', position 3: edited"]),
        (_delete_middle, ["run 'r1', position 4: deleted"]),
        (_delete_last, ["run 'r1', position 8: deleted"]),
        (_forge, ["run 'r1', position 9: inserted"]),
        (_duplicate, ["run 'r1', position 5: inserted (1 more row(s)"]),
    ],
    ids=["edit", "delete-middle", "delete-last", "insert", "duplicate"],
)
async def test_tampering_is_detected(poke: Callable[[_Run], None], expected: list[str]) -> None:
    store = MemoryStore()
    await audit_scene(store)
    poke(store._runs["r1"])  # pyright: ignore[reportPrivateUsage]
    for report in (await store.verify_events(RunId("r1")), await store.verify_events()):
        assert not report.ok
        assert len(report.problems) == len(expected), report.problems
        for problem, start in zip(report.problems, expected, strict=True):
            assert problem.startswith(start), report.problems
    assert (await store.verify_events(RunId("clean"))).ok
