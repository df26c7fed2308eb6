"""Golden files: each seed's Story.to_dict() at a fixed as_of (refresh: DIGEST_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.ingest import parse_story

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ingest"
AS_OF = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
SEED_FILES = sorted((REPO / "seeds").glob("*.txt"))


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.stem)
def test_seed_matches_golden(path: Path) -> None:
    story = parse_story(path.read_text(encoding="utf-8"), path.name, AS_OF)
    got = json.dumps(story.to_dict(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / f"{path.stem}.json"
    if os.environ.get("DIGEST_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
    assert golden.exists(), f"{golden} missing: run DIGEST_UPDATE_GOLDEN=1 pytest {__file__}"
    assert got == golden.read_text(encoding="utf-8"), \
        f"{path.name} parses differently from {golden.name}; if intended, refresh with " \
        f"DIGEST_UPDATE_GOLDEN=1 pytest {Path(__file__).name}"


def test_every_golden_file_has_a_seed() -> None:
    stems = {p.stem for p in SEED_FILES}
    assert {g.stem for g in GOLDEN.glob("*.json")} <= stems
