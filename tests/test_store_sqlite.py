"""The SQLite store: the conformance suite, plus what only a file can do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_conformance import StoreConformance

from graphorch.store.sqlite import SQLiteStore


class TestSQLiteConformance(StoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:  # type: ignore[override]
        s = SQLiteStore(tmp_path / "conformance.db")
        yield s
        await s.close()
