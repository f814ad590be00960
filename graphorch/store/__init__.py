"""Durable storage behind one Protocol: :class:`MemoryStore` and :class:`SQLiteStore`."""

from typing import TYPE_CHECKING, Any

from graphorch.store.base import Store
from graphorch.store.memory import MemoryStore

if TYPE_CHECKING:
    from graphorch.store.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "Store"]


def __getattr__(name: str) -> Any:
    # SQLite's threads and schema code load on first use: `import graphorch` stays fast
    if name == "SQLiteStore":
        from graphorch.store.sqlite import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module 'graphorch.store' has no attribute {name!r}")
