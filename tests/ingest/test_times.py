"""Story times: a published or updated time (or a card's header date) more than a day after
the ingest time is a parse error at its line, and ingest rejects and quarantines the file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.errors import ParseError
from digest.ingest import parse_story
from digest.pipeline import ingest_paths
from digest.store import Store
from tests.support.send import AS_OF


def _quiet(_line: str) -> None:
    pass


JSON_STORY = """{
  "id": "future0000000001",
  "languages": ["en"],
  "title": {"en": "From the future"},
  "tldr": {"en": ["It has not happened yet."]},
  "published": "%s"
}
"""


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59Z", "2026-11-23T06:00:01Z"])
def test_json_published_in_the_future_is_a_parse_error_at_its_line(when: str) -> None:
    with pytest.raises(ParseError) as e:
        parse_story(JSON_STORY % when, "x.json", AS_OF)
    assert e.value.line == 6 and "published" in e.value.reason and "future" in e.value.reason
    assert e.value.hint


def test_json_published_within_a_day_of_as_of_is_accepted() -> None:
    s = parse_story(JSON_STORY % "2026-11-23T05:59:59Z", "x.json", AS_OF)
    assert s.published == datetime(2026, 11, 23, 5, 59, 59, tzinfo=UTC)


def test_json_updated_in_the_future_is_refused_too() -> None:
    text = JSON_STORY % "2026-11-22T05:00:00Z"
    text = text.replace('"published"', '"updated": "9999-01-01T00:00:00Z",\n  "published"')
    with pytest.raises(ParseError) as e:
        parse_story(text, "x.json", AS_OF)
    assert e.value.line == 6 and e.value.reason.startswith("updated:")


CARD = """AI News AI资讯 {date}

Card from the future
TL;DR
• A bullet that says something.
"""


def test_card_header_date_in_the_future_is_a_parse_error_at_the_header() -> None:
    with pytest.raises(ParseError) as e:
        parse_story(CARD.format(date="9999-12-31"), "card.txt", AS_OF)
    assert e.value.line == 1 and "future" in e.value.reason
    ok = parse_story(CARD.format(date="2026-11-21"), "card.txt", AS_OF)
    assert ok.published == datetime(2026, 11, 21, tzinfo=UTC)


def test_ingest_rejects_and_quarantines_a_future_story(empty_config, tmp_path: Path) -> None:
    f = tmp_path / "inbox" / "future.json"
    f.parent.mkdir()
    f.write_text(JSON_STORY % "9999-12-31T23:59:59Z", encoding="utf-8")
    report = ingest_paths(empty_config, [f.parent], echo=_quiet)  # as_of: the file's mtime
    assert report.rejected == [f"{f}:6: published: '9999-12-31T23:59:59Z' is in the future "
                               f"(more than a day after {report.rejected[0].split('after ')[1]}"]
    assert Store(empty_config.store.path).story_count() == 0
