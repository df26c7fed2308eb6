"""Bounds on one story's parts, checked at ingest so nothing downstream does unbounded work.

Publishing does per-tag work for each of a story's tags (one tag feed and page each, and
each lists the story with all its tags): a story with 1,000 tags took 21 s to publish, 3,000
tags 188 s. Every other part a page, feed item or digest renders is bounded the same way.
A story over a bound is refused (`ParseError` at the part's line), never truncated.
"""

from __future__ import annotations

from collections.abc import Callable

from digest.errors import ParseError
from digest.models import Story

MAX_TAGS = 50
MAX_TAG_CHARS = 64  # the subscriber rules allow tags of this length too
MAX_TITLE_CHARS = 1_000  # hostile-story tests store 400-character titles
MAX_SUMMARY_CHARS = 5_000
# Per language: (part, most items, what an item is called).
MAX_ITEMS: dict[str, tuple[int, str]] = {
    "tldr": (20, "TL;DR bullets"),
    "faq": (50, "FAQ entries"),
    "analysis": (500, "analysis paragraphs"),
    "insights": (100, "insights"),
    "key_data": (200, "Key Data rows"),
    "body": (5_000, "article blocks"),
}
MAX_KEY_DATA_CELLS = 20


def check_limits(story: Story, source: str, line_of: Callable[[str], int]) -> None:
    """Raise ParseError if a part of `story` is over its bound; `line_of(part)` gives the
    line to name ("tags", "title", "summary", or a key of MAX_ITEMS)."""
    def fail(part: str, reason: str, hint: str) -> ParseError:
        return ParseError(source, line_of(part), reason, hint)

    if len(story.tags) > MAX_TAGS:
        raise fail("tags", f"{len(story.tags)} tags, more than {MAX_TAGS}",
                   f"keep the {MAX_TAGS} tags that say most about the story")
    for tag in story.tags:
        if len(tag) > MAX_TAG_CHARS:
            raise fail("tags", f"tag {tag[:40]!r}… is {len(tag)} characters, more than "
                       f"{MAX_TAG_CHARS}", "a tag is a word or two; shorten it")
    for code, title in story.title.items():
        if len(title) > MAX_TITLE_CHARS:
            raise fail("title", f"{code} title is {len(title)} characters, more than "
                       f"{MAX_TITLE_CHARS}", "shorten the title; the text goes below it")
    for code, summary in story.summary.items():
        if len(summary) > MAX_SUMMARY_CHARS:
            raise fail("summary", f"{code} summary is {len(summary)} characters, more than "
                       f"{MAX_SUMMARY_CHARS}", "shorten the summary; the text goes below it")
    for part, (most, what) in MAX_ITEMS.items():
        for code, items in getattr(story, part).items():
            if len(items) > most:
                raise fail(part, f"{len(items)} {what} in {code}, more than {most}",
                           "split the story, or keep the most important ones")
    for code, rows in story.key_data.items():
        wide = max((len(r) for r in rows), default=0)
        if wide > MAX_KEY_DATA_CELLS:
            raise fail("key_data", f"a Key Data row in {code} has {wide} cells, more than "
                       f"{MAX_KEY_DATA_CELLS}", "a Key Data table has a few columns")
