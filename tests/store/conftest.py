"""Store-stage fixtures. Realistic hand-built stories come from tests.support.store.make_story;
the kill harness and the store-writer subprocess live in tests/support/ too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from digest.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A new, empty store at tmp_path/store (reopen it with `Store(tmp_path / "store")`)."""
    from digest.store import Store

    return Store(tmp_path / "store")
