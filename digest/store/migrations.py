"""Schema versions: which store formats this digest reads, and the upgrade run on open."""

from __future__ import annotations

from collections.abc import Callable

from digest.errors import StoreError
from digest.store.base import StoreBackend

# Version 1 is the first format any digest wrote (meta.schema_version since the first store).
SCHEMA_VERSION = 1
# UPGRADES[v] takes a store from version v to v + 1, inside the opening transaction. None
# yet; a format change bumps SCHEMA_VERSION and adds its step here.
UPGRADES: dict[int, Callable[[StoreBackend], None]] = {}


def upgrade(store: StoreBackend, found: int, where: str) -> None:
    """Bring `store`, at schema `found`, to SCHEMA_VERSION; the caller holds a transaction.

    Refuses a newer schema and one without a version (no digest wrote such a store)."""
    if found == SCHEMA_VERSION:
        return  # another process upgraded it while we waited for the lock
    if found > SCHEMA_VERSION:
        raise StoreError(f"{where}: schema version {found} is newer than this digest "
                         f"understands ({SCHEMA_VERSION})",
                         "upgrade digest, or point [store] path at another directory")
    if any(v not in UPGRADES for v in range(found, SCHEMA_VERSION)):
        what = "has no schema_version" if found == 0 else f"has schema version {found}"
        raise StoreError(f"{where}: {what}, which this digest cannot upgrade",
                         "point [store] path at a directory made by `digest init` or digest "
                         "itself, or restore the store from a backup")
    for v in range(found, SCHEMA_VERSION):
        UPGRADES[v](store)
    store.meta_set("schema_version", SCHEMA_VERSION)
