"""Rank and publish: read the store, build feeds and pages (pure), write them atomically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.feeds import (
    Feed,
    FeedItem,
    FeedSpec,
    catalog,
    feed_files,
    join_url,
    story_urn,
    tag_slugs,
)
from digest.models import Story
from digest.output import write_tree
from digest.rank import Ranked, rank
from digest.site import Site, story_path, tag_page_path


@dataclass
class PublishReport:
    output: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)  # relpaths of every feed file
    stories: int = 0

    def summary(self) -> str:
        total = len(self.written) + len(self.unchanged)
        return (f"published {self.stories} stories, {len(self.feeds)} feed files, {total} files "
                f"in {self.output}: {len(self.written)} written, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed")


def _open_store(config: Config):  # -> digest.store.Store, imported late: an edge module
    from digest.store import Store

    return Store(config.store.path)


# --- ranking ------------------------------------------------------------------------------


def select(stories: Sequence[Story], lang: str | None = None, tag: str | None = None,
           aliases: dict[str, str] | None = None) -> list[Story]:
    """Stories readable in `lang` (`en`, `zh`, `zh-Hant`, `all`) and carrying `tag` (the tag
    itself or its slug)."""
    out = list(stories)
    if lang and lang != "all":
        out = [s for s in out if s.text_in(lang) or lang in s.languages]
    if tag:
        slugs = tag_slugs({t for s in out for t in s.tags}, aliases)
        out = [s for s in out if any(tag == t or tag == slugs.get(t) for t in s.tags)]
    return out


def rank_stories(config: Config, now: datetime, lang: str | None = None, tag: str | None = None,
                 limit: int | None = None) -> list[Ranked]:
    """Stored stories (index records, no bodies) in rank order at `now`."""
    stories = select(_open_store(config).list_stories(), lang, tag, config.tags)
    ranked = rank(stories, now, config.rank)
    return ranked[:limit] if limit is not None and limit >= 0 else ranked


def format_ranked(ranked: Sequence[Ranked]) -> list[str]:
    """Human lines for `digest rank`: position, score, its parts, id, languages, title."""
    lines = []
    for i, r in enumerate(ranked, 1):
        s = r.story
        sc = s.scores
        hqi = f"H{sc.get('hot')} Q{sc.get('quality')} I{sc.get('impact')}" if sc else "unscored"
        title = s.title.get(s.languages[0], "") if s.languages else ""
        lines.append(
            f"{i:>3}. {r.score:7.2f} = base {r.parts['base']:6.2f} × decay {r.parts['decay']:.4f} "
            f"(age {r.parts['age_hours']:.1f}h)  [{hqi}]  {s.id}  {','.join(s.languages)}  {title}"
        )
    if not lines:
        lines.append("no stories; run `digest ingest` first")
    return lines


# --- building (pure) ----------------------------------------------------------------------


def _spec_selection(spec: FeedSpec, ranked: Sequence[Ranked], limit: int) -> list[Story]:
    if spec.tag is not None:
        chosen = [r.story for r in ranked if spec.tag in r.story.tags]
    elif spec.key == "all":
        chosen = [r.story for r in ranked]
    else:
        chosen = [r.story for r in ranked if r.story.text_in(spec.key)]
    return chosen[:limit]


def build_files(config: Config, stories: Sequence[Story], now: datetime,
                env: Any = None) -> tuple[dict[str, bytes], list[str]]:
    """Every published file as relpath → bytes, and the feed relpaths. Pure: no I/O.
    `env` overrides the Jinja2 environment (tests pin templates owned by others)."""
    ranked = rank(list(stories), now, config.rank)
    slugs = tag_slugs({t for s in stories for t in s.tags}, config.tags)
    specs = catalog(config.site.title, config.site.description, slugs)
    site = Site(config.site, slugs, specs, env=env)
    base = site.base_url
    limit = max(0, config.feeds.items)
    files: dict[str, bytes] = {}
    feed_paths: list[str] = []
    content_cache: dict[tuple[str, tuple[str, ...]], str] = {}

    def item(story: Story, spec: FeedSpec) -> FeedItem:
        # `en`/`zh` feeds show the story in that language; mixed feeds in all its languages,
        # titled in its first one.
        code = (story.text_in(spec.language) if spec.language in ("en", "zh") else None) \
            or story.languages[0]
        codes = (code,) if spec.language in ("en", "zh") else tuple(story.languages)
        key = (story.id, codes)
        if key not in content_cache:
            content_cache[key] = site.story_html(story, codes)
        return FeedItem(
            id=story_urn(story.id),
            url=join_url(base, story_path(story.id)),
            title=story.title.get(code) or next(iter(story.title.values()), story.id),
            lang=code,
            published=story.published,
            updated=max(story.updated, story.published),
            tags=tuple(story.tags),
            summary_text=" ".join(story.tldr.get(code) or []),
            summary_html=site.tldr_html(story, code),
            content_html=content_cache[key],
        )

    for spec in specs:
        chosen = _spec_selection(spec, ranked, limit)
        feed = Feed(
            title=spec.title, description=spec.description, language=spec.language,
            feed_id=spec.feed_id, home_url=join_url(base, spec.home),
            urls={link["fmt"]: link["href"] for link in spec.links(base)},
            author=config.site.author, items=tuple(item(s, spec) for s in chosen),
        )
        ff = feed_files(spec, feed)
        files.update(ff)
        feed_paths.extend(ff)
        if spec.tag is not None and spec.slug is not None:
            files[tag_page_path(spec.slug)] = site.tag_page(spec, chosen)
    for story in stories:
        files[story_path(story.id)] = site.story_page(story)
    files["index.html"] = site.index_page([r.story for r in ranked[:limit]])
    files["feeds.opml"] = site.opml()
    return files, feed_paths


# --- publishing (I/O) ---------------------------------------------------------------------


def publish(config: Config, now: datetime | None = None) -> PublishReport:
    """Write feeds, story pages, tag pages, index.html and feeds.opml into `[feeds] output`;
    files whose bytes did not change are not touched, and files of vanished tags or stories
    are removed."""
    now = now or datetime.now(UTC)
    store = _open_store(config)
    index = store.list_stories()
    # Bodies are needed for every story page; the index records alone rank and select.
    stories = store.get_stories([s.id for s in index]) if index else []
    files, feed_paths = build_files(config, stories, now)
    out = Path(config.feeds.output)
    report = write_tree(out, files)
    return PublishReport(output=out, written=report.written, unchanged=report.unchanged,
                         removed=report.removed, feeds=feed_paths, stories=len(stories))


__all__ = ["PublishReport", "build_files", "format_ranked", "publish", "rank_stories", "select"]
