"""A durable long-term memory: chunk stores (SQLite, PostgreSQL) and the Memory that adds text and answers questions."""
from .store import SCHEMA_VERSION, MemoryStore, SQLiteStore


def __getattr__(name):  # Memory pulls in retrieval and models: import it only when asked for
    if name in ("Memory", "open_store"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)


__all__ = ["SCHEMA_VERSION", "MemoryStore", "SQLiteStore", "Memory", "open_store"]
