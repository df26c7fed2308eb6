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


@pytest.fixture
def site(tmp_path: Path):
    """A config whose feeds hold 5 items (安全 aliased to security) and a store of 40 varied
    stories (`corpus`): the incremental publish tests' site."""
    from dataclasses import replace

    from digest.store import Store
    from tests.support.publish import corpus, make_config

    cfg = make_config(tmp_path, **{"安全": "security"})
    cfg = replace(cfg, feeds=replace(cfg.feeds, items=5))
    st = Store(cfg.store.path)
    st.upsert_stories(corpus(40))
    return cfg, st
