"""The in-memory store passes the store conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from store_conformance import StoreConformance

from graphorch.store.memory import MemoryStore


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:  # type: ignore[override]
        s = MemoryStore()
        yield s
        await s.close()
