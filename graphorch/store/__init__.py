"""Durable storage behind one Protocol: :class:`MemoryStore` and :class:`SQLiteStore`."""

from graphorch.store.base import Store
from graphorch.store.memory import MemoryStore
from graphorch.store.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "Store"]
