"""Property tests: any text either parses into a valid Story or raises ParseError, nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.errors import ParseError
from digest.ingest import decode_story_bytes, parse_stories
from digest.models import LANGUAGES, Story

SEEDS = sorted((Path(__file__).resolve().parents[2] / "seeds").glob("*.txt"))
SEED_LINES = [p.read_text(encoding="utf-8").split("\n") for p in SEEDS]
AS_OF = datetime(2026, 11, 22, 12, tzinfo=UTC)
_XML_BAD = {chr(c) for c in range(32) if chr(c) not in "\t\n\r"}


def check(text: str, source: str = "f.txt") -> None:
    try:
        stories = parse_stories(text, source, AS_OF)
    except ParseError as e:
        assert e.source == source and e.line >= 1 and e.hint
        return
    for s in stories:
        assert isinstance(s, Story) and s.languages and set(s.languages) <= set(LANGUAGES)
        assert all(s.title.get(lang) for lang in s.languages)
        assert s.updated >= s.published
        if s.scores is not None:
            assert all(0 <= v <= 100 for v in s.scores.values())
        blob = json.dumps(s.to_dict(), ensure_ascii=False)
        assert not _XML_BAD & set(json.loads(blob)["title"][s.languages[0]])
        # A stored story must survive its own JSON form.
        assert Story.from_dict(s.to_dict()).content_hash() == s.content_hash()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    check(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        text = decode_story_bytes(data, "b.txt")
    except ParseError as e:
        assert e.line >= 1
        return
    check(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(SEED_LINES) - 1), st.data())
def test_mutated_seeds(which: int, data: st.DataObject) -> None:
    """Seeds with lines dropped, duplicated, swapped or garbled still fail only cleanly."""
    lines = list(SEED_LINES[which])
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "swap", "garble", "blank"]))
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "garble":
            lines[i] = data.draw(st.text(max_size=40))
        else:
            lines[i] = ""
    check("\n".join(lines), SEEDS[which].name)


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=20))
def test_arbitrary_json(value) -> None:
    check(json.dumps(value), "j.json")


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-5, 200) | st.text(max_size=10),
                       lambda c: st.lists(c, max_size=3) | st.dictionaries(
                           st.sampled_from(["en", "zh-Hans", "zh-Hant", "hot", "quality", "impact",
                                            "q", "a", "kind", "text", "x"]), c, max_size=4),
                       max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(SEED_LINES) - 1), st.data())
def test_structured_with_wrong_field_values(which: int, data: st.DataObject) -> None:
    d = parse_stories("\n".join(SEED_LINES[which]), SEEDS[which].name, AS_OF)[0].to_dict()
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(d)))
        d[key] = data.draw(JSONISH)
    check(json.dumps(d, ensure_ascii=False), "s.json")
