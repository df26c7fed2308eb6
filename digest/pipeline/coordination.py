"""Coordination between nodes sharing one store: leader-only jobs (scheduled ingest and
publish) run on one node at a time; sends need none (they share work through the journal)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from digest.config import Config
from digest.store import open_store


@contextlib.contextmanager
def leader(config: Config, job: str) -> Iterator[bool]:
    """True while this process leads `job`: always on the embedded store; on PostgreSQL for
    the one holder of the job's advisory lock, which is released when the block ends (or
    with the connection, if the process dies). The store stays open for the whole block."""
    store = open_store(config.store)
    try:
        with store.leader(job) as lead:
            yield lead
    finally:
        store.close()
