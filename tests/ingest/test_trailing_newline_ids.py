"""Issue 17.8: a pattern ending in `$` also matches before a trailing newline, so
"goodstory1\\n" passed as an id. Every pattern that validates input uses fullmatch / `\\Z`."""

from __future__ import annotations

import json

import pytest

from digest.errors import DigestError, ParseError
from digest.ingest import parse_story
from digest.ingest.text import source_id
from digest.publish.site import story_path
from digest.subscribers import normalize_email
from tests.support.send import AS_OF


def test_a_json_id_with_a_trailing_newline_is_refused() -> None:
    text = json.dumps({"id": "goodstory1\n", "languages": ["en"], "title": {"en": "T"}})
    with pytest.raises(ParseError) as e:
        parse_story(text, "x.json", AS_OF)
    assert e.value.reason.startswith("id: ") and "not a valid id" in e.value.reason
    assert parse_story(text.replace("\\n", ""), "x.json", AS_OF).id == "goodstory1"


def test_other_validating_patterns_refuse_a_trailing_newline() -> None:
    assert source_id("001_3521ac04ccd50003\n") is None
    assert story_path("goodstory1\n") != "stories/goodstory1\n.html"
    assert story_path("goodstory1") == "stories/goodstory1.html"
    with pytest.raises(DigestError):
        normalize_email("a@example.com\n")  # refused before the pattern, and by it
