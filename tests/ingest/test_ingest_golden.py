"""Golden files: each seed's Story.to_dict() at a fixed as_of, in tests/golden/ingest/
(refresh: `make golden`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.ingest import parse_story

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
SEED_FILES = sorted((REPO / "seeds").glob("*.txt"))


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.stem)
def test_seed_matches_golden(path: Path, golden) -> None:
    story = parse_story(path.read_text(encoding="utf-8"), path.name, AS_OF)
    got = json.dumps(story.to_dict(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    golden.check(f"ingest/{path.stem}.json", got)


def test_every_golden_file_has_a_seed(golden) -> None:
    stems = {p.stem for p in SEED_FILES}
    assert {g.stem for g in golden.path("ingest").glob("*.json")} <= stems
