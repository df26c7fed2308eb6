"""Shared pytest fixtures: repository paths and a fresh config in a temp directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

# The default run (CI, `make test`) replays the same hypothesis examples every time, so a
# red run is reproducible and never a coin toss; `HYPOTHESIS_PROFILE=fuzz` (used by
# `make test-all`) explores fresh random examples and keeps failures in .hypothesis/.
settings.register_profile("ci", derandomize=True)
settings.register_profile("fuzz", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
AS_OF = "2026-11-22T12:00:00Z"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A temp project dir holding a copy of the shipped config.toml and the seeds."""
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    shutil.copytree(SEEDS, tmp_path / "seeds")
    return tmp_path
