"""Shared pytest fixtures: repository paths and a fresh config in a temp directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
AS_OF = "2026-11-22T12:00:00Z"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A temp project dir holding a copy of the shipped config.toml and the seeds."""
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    shutil.copytree(SEEDS, tmp_path / "seeds")
    return tmp_path
