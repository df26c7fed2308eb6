"""Issue 17.4: a damaged or missing story body is reported with the hint "ingest the story
file again to rewrite it" (publish skips that story with the hint as a warning:
tests/publish/test_publish_damaged_body.py) — and ingesting it again must really rewrite it,
although the index hash still matches (it used to report "unchanged" and stay broken)."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.pipeline import ingest_paths, publish
from digest.store import Store
from tests.support.send import AS_OF

SEED = "seeds/001_3521ac04ccd50003.txt"
SID = "3521ac04ccd50003"


def _quiet(_line: str) -> None:
    pass


@pytest.mark.parametrize("damage", ["truncated", "missing", "not-a-story"])
def test_ingesting_the_file_again_repairs_a_damaged_body(config, tmp_path: Path,
                                                         damage: str) -> None:
    store = Store(config.store.path)
    body = store.body_path(SID)
    if damage == "truncated":
        body.write_bytes(body.read_bytes()[:100])
    elif damage == "missing":
        body.unlink()
    else:
        body.write_bytes(b'{"id": "3521ac04ccd50003"}')
    with pytest.raises(StoreError) as e:
        Store(config.store.path).get_story(SID)
    assert "ingest the story file again" in e.value.hint
    skipped = publish(config, now=AS_OF)  # the story is skipped, not the whole publish
    assert skipped.skipped == [SID] and "ingest the story file again" in skipped.warnings[0]
    report = ingest_paths(config, [tmp_path / SEED], as_of=AS_OF, echo=_quiet)
    assert report.updated == [SID] and not report.unchanged
    assert Store(config.store.path).get_story(SID) is not None
    assert not publish(config, now=AS_OF).skipped
    again = ingest_paths(config, [tmp_path / SEED], as_of=AS_OF, echo=_quiet)
    assert again.unchanged == [SID]  # a sound body is left alone


def test_an_edited_story_over_a_damaged_body_is_ingested(config, tmp_path: Path) -> None:
    """The same class at ingest: an edited card (derived times, so ingest reads the stored
    story to keep its `published`) over a damaged body failed the whole ingest."""
    Store(config.store.path).body_path(SID).write_bytes(b'{"id": "3521ac04ccd50003"}')
    seed = tmp_path / SEED
    seed.write_text(seed.read_text(encoding="utf-8").replace(
        "China may have accessed Mythos", "China may have accessed Mythos (edited)", 1),
        encoding="utf-8")
    report = ingest_paths(config, [seed], echo=_quiet)
    assert report.updated == [SID]
    assert "(edited)" in Store(config.store.path).get_story(SID).title["en"]
