"""Story text → Story: detect the layout (card, article, JSON) and call its pure parser."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from digest.errors import ParseError
from digest.ingest.article import parse_article
from digest.ingest.card import header_is_relative, looks_like_card, parse_card
from digest.ingest.structured import parse_structured
from digest.ingest.text import MAX_BYTES, clean_line, clean_text, decode_story_bytes
from digest.models import Story

__all__ = ["MAX_BYTES", "Parsed", "decode_story_bytes", "detect_layout", "parse_file",
           "parse_stories", "parse_story"]


@dataclass
class Parsed:
    """A story plus where its times came from: the file (exact) or `as_of` (derived)."""

    story: Story
    layout: str
    exact_times: bool


def detect_layout(text: str, source: str) -> str:
    """'json', 'card' or 'article' for cleaned text (an article may still be rejected)."""
    stripped = text.lstrip()
    if source.lower().endswith(".json") or stripped[:1] in ("{", "["):
        return "json"
    first = next((s for raw in text.split("\n", 50)[:50] if (s := clean_line(raw))), "")
    return "card" if looks_like_card(first, text) else "article"


def parse_stories(text: str, source: str, as_of: datetime) -> list[Story]:
    """Every story in one file's text (JSON arrays hold several); raises ParseError."""
    return [p.story for p in parse_file(text, source, as_of)]


def parse_file(text: str, source: str, as_of: datetime, *,
               not_after: datetime | None = None) -> list[Parsed]:
    """parse_stories with each story's layout and whether its times are exact. A stated
    time after `not_after` (default: a day after as_of) is a ParseError."""
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ParseError(source, line, "binary data (NUL) in a text file",
                         "story files are UTF-8 text; check this is not an image or archive")
    text = clean_text(text)
    if not text.strip():
        raise ParseError(source, 1, "file is empty", "write the story text, or delete the file")
    layout = detect_layout(text, source)
    if layout == "json":
        return [Parsed(s, layout, exact)
                for s, exact in parse_structured(text, source, as_of, not_after)]
    if layout == "card":
        header = next(s for raw in text.split("\n", 50) if (s := clean_line(raw)))
        return [Parsed(parse_card(text, source, as_of, not_after), layout,
                       not header_is_relative(header))]
    return [Parsed(parse_article(text, source, as_of), layout, False)]


def parse_story(text: str, source: str, as_of: datetime) -> Story:
    """Exactly one story from a file's text; raises ParseError naming source and line."""
    stories = parse_stories(text, source, as_of)
    if len(stories) != 1:
        raise ParseError(source, 1, f"holds {len(stories)} stories, expected one",
                         "use parse_stories for JSON arrays")
    return stories[0]
