"""Issue 17.9: a new tag must not take over an existing tag feed's address. Tags equal but
for case are one tag (one feed, one page); of two tags with one base slug, the older keeps
the address and the newcomer gets a suffix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.models import Story
from digest.publish.plan import assign_slugs, build_files, make_plan, select

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def _story(sid: str, tags: list[str], hours_ago: int) -> Story:
    when = NOW - timedelta(hours=hours_ago)
    return Story(id=sid, languages=["en"], title={"en": f"Story {sid}"}, published=when,
                 updated=when, tldr={"en": ["a point"]}, tags=tags)


def test_a_case_variant_joins_the_existing_tag_feed(config) -> None:
    old = [_story("old1", ["Security"], 10), _story("old2", ["Security"], 9)]
    before, _ = build_files(config, old, NOW)
    assert "feeds/tags/security/rss.xml" in before
    new = [*old, _story("new1", ["security"], 1)]
    after, _ = build_files(config, new, NOW)
    tag_files = sorted(p for p in after if p.startswith(("feeds/tags/", "tags/")))
    assert tag_files == sorted(p for p in before if p.startswith(("feeds/tags/", "tags/")))
    feed = after["feeds/tags/security/feed.json"].decode()
    assert all(f"urn:digest:story:{sid}" in feed for sid in ("old1", "old2", "new1"))
    plan = make_plan(config, new, NOW)
    assert [s.title for s in plan.specs if s.tag] == [f"{config.site.title} — #Security"]
    assert {s.id for s in select(new, tag="SECURITY")} == {"old1", "old2", "new1"}


def test_the_older_of_two_tags_sharing_a_base_slug_keeps_the_address() -> None:
    stories = [_story("a", ["AI Safety"], 10), _story("b", ["ai-safety"], 1)]
    slugs = assign_slugs(stories)
    assert slugs["AI Safety"] == "ai-safety"
    assert slugs["ai-safety"].startswith("ai-safety-") and len(slugs["ai-safety"]) == 16
    # An alias is the operator's word: it keeps its slug whatever came first.
    aliased = assign_slugs([_story("c", ["security"], 10), _story("d", ["安全"], 1)],
                           {"安全": "security"})
    assert aliased["安全"] == "security" and aliased["security"].startswith("security-")
