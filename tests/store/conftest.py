"""Store-stage fixtures. Realistic hand-built stories come from tests.support.store.make_story;
the kill harness and the store-writer subprocess live in tests/support/ too."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from digest.store import Store
    from tests.support.postgres import Cluster


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A new, empty store at tmp_path/store (reopen it with `Store(tmp_path / "store")`)."""
    from digest.store import Store

    return Store(tmp_path / "store")


# --- PostgreSQL: one throwaway cluster per session, a fresh database per test --------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A real PostgreSQL server (tests.support.postgres.Cluster: Debian's binaries, initdb in
    a temp dir as a non-root user) for the whole session; skipped (failed under CI) without
    the binaries."""
    from tests.support.postgres import Cluster
    from tests.support.tools import missing_tool

    try:
        cluster = Cluster()
    except RuntimeError as e:
        missing_tool(str(e))
    with cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The url of a new, empty database in the session's cluster."""
    return pg_cluster.create_db(f"t{next(_DB_NUMBERS)}")


_DB_NUMBERS = itertools.count(1)
