"""Schema versions: which store formats this digest reads, and the upgrade run on open."""

from __future__ import annotations

from collections.abc import Callable

from digest.errors import StoreError
from digest.store.base import StoreBackend

# Version 1 is the first format any digest wrote (meta.schema_version since the first store).
# Version 2: subscribers in `subscribers/NN.json` shards instead of one subscribers.json.
# Version 3: the delivery journal in journal/ (checkpoint + dated segments + archive) instead
# of one deliveries.jsonl (digest/store/journal.py).
SCHEMA_VERSION = 3
# UPGRADES[v] takes a store from version v to v + 1, inside the opening transaction. A format
# change bumps SCHEMA_VERSION and registers its step below.
UPGRADES: dict[int, Callable[[StoreBackend], None]] = {}


def shard_subscribers(store: StoreBackend) -> None:
    """1 → 2: copy subscribers.json into the subscriber shards (embedded store). The old file
    is removed after the commit; an open that still finds it redoes the copy (crash-safe)."""
    store.shard_subscribers()  # type: ignore[attr-defined]  # the embedded Store's


UPGRADES[1] = shard_subscribers


def journal_segments(store: StoreBackend) -> None:
    """2 → 3: convert deliveries.jsonl into journal/ (embedded store). Crash-safe by itself:
    the legacy file moves only after the checkpoint is written; an open that still finds it
    converts it again from scratch."""
    convert = getattr(store.journal, "upgrade", None)
    if convert is not None:
        convert()


UPGRADES[2] = journal_segments


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
