"""Publish-stage fixtures. Story builders (`story`, `seed_stories`, `HOSTILE`) and the JSON
Feed validator live in tests.support.publish."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from digest.config import Config


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """A minimal config in tmp_path: store at tmp_path/store, output at tmp_path/public."""
    from tests.support.publish import make_config

    return make_config(tmp_path)
