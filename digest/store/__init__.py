"""Where all state lives: the `StoreBackend` interface, its backends, and `open_store`."""

from __future__ import annotations

from pathlib import Path

from digest.config import StoreConfig
from digest.errors import StoreError
from digest.store.base import JOURNAL_STATES, DamagedBody, Journal, StoreBackend, email_key
from digest.store.embedded import DEFAULT_SHARDS, LOCK_TIMEOUT, Store
from digest.store.journal import DeliveryJournal
from digest.store.migrations import SCHEMA_VERSION
from digest.store.storage import AtomicJSONStorage

PG_SCHEMES = ("postgresql://", "postgres://")


def open_store(where: StoreConfig | Path | str) -> StoreBackend:
    """The store for `[store]` settings, a store directory, or a postgresql:// url: the one
    place a backend is chosen. With `[store] url` set, nothing is written under `path`."""
    if isinstance(where, StoreConfig):
        if where.url:
            return _pg_store(where.url)
        return Store(where.path)
    if isinstance(where, str) and where.startswith(PG_SCHEMES):
        return _pg_store(where)
    return Store(Path(where))


def _pg_store(url: str) -> StoreBackend:
    # Imported here: psycopg loads only for a PostgreSQL store.
    from digest.store.postgres import PgStore

    return PgStore(url)


__all__ = [
    "DEFAULT_SHARDS", "JOURNAL_STATES", "LOCK_TIMEOUT", "SCHEMA_VERSION", "AtomicJSONStorage",
    "DamagedBody",
    "DeliveryJournal", "Journal", "PG_SCHEMES", "Store", "StoreBackend", "StoreError", "email_key",
    "open_store",
]
