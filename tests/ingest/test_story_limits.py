"""Issue 17.3: publish time grew with the square of a story's tag count (each tag feed and
page lists the story with all its tags: 1,000 tags took 21 s, 3,000 tags 188 s). Every
per-story size that publishing multiplies is bounded at ingest, with a ParseError at the
line of the part that is too big."""

from __future__ import annotations

import json

import pytest

from digest.errors import ParseError
from digest.ingest import parse_story
from digest.ingest.limits import MAX_ITEMS, MAX_TAGS, MAX_TITLE_CHARS
from tests.support.send import AS_OF


def _json(**fields: object) -> str:
    d = {"id": "limits0000000001", "languages": ["en"], "title": {"en": "Limits"},
         "tldr": {"en": ["one"]}, **fields}
    return json.dumps(d, indent=1)


def _line(text: str, key: str) -> int:
    return text[:text.index(f'"{key}"')].count("\n") + 1


def test_json_tags_over_the_cap_are_a_parse_error_at_the_tags_line() -> None:
    ok = parse_story(_json(tags=[f"tag {i}" for i in range(MAX_TAGS)]), "x.json", AS_OF)
    assert len(ok.tags) == MAX_TAGS
    text = _json(tags=[f"tag {i}" for i in range(MAX_TAGS + 1)])
    with pytest.raises(ParseError) as e:
        parse_story(text, "x.json", AS_OF)
    assert e.value.line == _line(text, "tags")
    assert e.value.reason == f"{MAX_TAGS + 1} tags, more than {MAX_TAGS}" and e.value.hint


def test_json_array_names_the_line_of_the_bad_object() -> None:
    good = json.loads(_json())
    bad = json.loads(_json(id="limits0000000002", tags=[str(i) for i in range(1000)]))
    text = json.dumps([good, bad], indent=1)
    with pytest.raises(ParseError) as e:
        parse_story(text, "x.json", AS_OF)
    tags_at = text.index('"tags"', text.index("limits0000000002"))
    assert e.value.line == text[:tags_at].count("\n") + 1


@pytest.mark.parametrize(("fields", "key", "reason"), [
    ({"title": {"en": "T" * (MAX_TITLE_CHARS + 1)}}, "title", f"en title is {MAX_TITLE_CHARS + 1} characters"),
    ({"tldr": {"en": ["b"] * (MAX_ITEMS["tldr"][0] + 1)}}, "tldr", "21 TL;DR bullets in en"),
    ({"faq": {"en": [{"q": "q", "a": "a"}] * (MAX_ITEMS["faq"][0] + 1)}}, "faq",
     "51 FAQ entries in en"),
    ({"insights": {"en": ["i"] * 101}}, "insights", "101 insights in en"),
    ({"key_data": {"en": [["c"] * 21]}}, "key_data", "has 21 cells"),
    ({"tags": ["x" * 65]}, "tags", "is 65 characters"),
])
def test_other_per_story_sizes_are_bounded(fields: dict, key: str, reason: str) -> None:
    text = _json(**fields)
    with pytest.raises(ParseError) as e:
        parse_story(text, "x.json", AS_OF)
    assert e.value.line == _line(text, key) and reason in e.value.reason and e.value.hint


CARD = """AI News AI资讯 2h ago

A card with many tags 很多标签的卡片
TL;DR
{bullets}
Disclaimer: this is a test
{tags}
"""


def test_card_tags_over_the_cap_are_a_parse_error_at_the_tag_line() -> None:
    tags = " ".join(f"t{i} t{i}" for i in range(MAX_TAGS + 1))
    with pytest.raises(ParseError) as e:
        parse_story(CARD.format(bullets="• one point here", tags=tags), "c.txt", AS_OF)
    assert e.value.line == 7 and "tags, more than" in e.value.reason
    tags = " ".join(f"t{i} t{i}" for i in range(MAX_TAGS))
    assert len(parse_story(CARD.format(bullets="• one", tags=tags), "c.txt", AS_OF).tags) == 50


def test_card_bullets_over_the_cap_are_a_parse_error_at_the_heading() -> None:
    bullets = "\n".join(f"• point {i}" for i in range(21))
    with pytest.raises(ParseError) as e:
        parse_story(CARD.format(bullets=bullets, tags="a a"), "c.txt", AS_OF)
    assert e.value.line == 4 and "21 TL;DR bullets" in e.value.reason
