"""Where all state lives: the `StoreBackend` interface, its backends, and `open_store`."""

from __future__ import annotations

from pathlib import Path

from digest.config import StoreConfig
from digest.errors import StoreError
from digest.store.base import JOURNAL_STATES, Journal, StoreBackend, email_key
from digest.store.embedded import DEFAULT_SHARDS, LOCK_TIMEOUT, Store
from digest.store.journal import DeliveryJournal
from digest.store.migrations import SCHEMA_VERSION
from digest.store.storage import AtomicJSONStorage


def open_store(where: StoreConfig | Path | str) -> StoreBackend:
    """The store for `[store]` settings or a store directory (the one place a second
    backend, chosen by config, will plug in)."""
    path = where.path if isinstance(where, StoreConfig) else Path(where)
    return Store(path)


__all__ = [
    "DEFAULT_SHARDS", "JOURNAL_STATES", "LOCK_TIMEOUT", "SCHEMA_VERSION", "AtomicJSONStorage",
    "DeliveryJournal", "Journal", "Store", "StoreBackend", "StoreError", "email_key",
    "open_store",
]
