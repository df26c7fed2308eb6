"""The feed plan, pure: rank the stories, choose each feed's selection, build every file's bytes.

`make_plan` decides what goes where from index records alone; `Plan` renders feeds and pages
on demand (story bodies only through the `full` callback), so the incremental publisher in
digest.pipeline.publishing loads bodies just for what it rebuilds. `build_files` is the
whole site in memory, for tests and the golden files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from digest.config import Config
from digest.models import Story
from digest.publish.feeds import (
    FORMATS,
    Feed,
    FeedItem,
    FeedSpec,
    catalog,
    feed_files,
    join_url,
    story_urn,
    tag_slugs,
)
from digest.publish.rank import Ranked, rank
from digest.publish.site import Site, story_path, tag_page_path

# --- selecting and listing ----------------------------------------------------------------


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


# --- the plan: what goes where -------------------------------------------------------------


def choose(specs: Sequence[FeedSpec], ranked: Sequence[Ranked], limit: int) -> dict[str, list[Story]]:
    """spec.key → its top `limit` stories in rank order, in one pass over the ranking
    (instead of one scan per feed)."""
    out: dict[str, list[Story]] = {spec.key: [] for spec in specs}
    by_tag = {spec.tag: out[spec.key] for spec in specs if spec.tag is not None}
    langs = [(k, out[k]) for k in ("en", "zh") if k in out]
    every = out.get("all")
    if limit <= 0:
        return out
    open_lists = len(out)
    for r in ranked:
        s = r.story
        if every is not None and len(every) < limit:
            every.append(s)
            open_lists -= len(every) == limit
        for k, lst in langs:
            if len(lst) < limit and s.text_in(k):
                lst.append(s)
                open_lists -= len(lst) == limit
        for t in dict.fromkeys(s.tags):  # a tag listed twice still adds the story once
            lst = by_tag.get(t)
            if lst is not None and len(lst) < limit:
                lst.append(s)
                open_lists -= len(lst) == limit
        if open_lists <= 0:
            break
    return out


@dataclass
class Plan:
    """Everything but the story bodies: ranking, feeds, their selections, the site renderer."""

    config: Config
    stories: Sequence[Story]
    ranked: list[Ranked]
    slugs: dict[str, str]
    specs: list[FeedSpec]
    site: Site
    chosen: dict[str, list[Story]]
    limit: int
    _content: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.site.base_url

    @property
    def top(self) -> list[Story]:
        return self.chosen.get("all", [])

    def feed_paths(self) -> list[str]:
        return [spec.path(fmt) for spec in self.specs for fmt, _, _, _ in FORMATS]

    # --- rendering ----------------------------------------------------------------------

    def _item(self, story: Story, spec: FeedSpec, full: Callable[[Story], Story]) -> FeedItem:
        # `en`/`zh` feeds show the story in that language; mixed feeds in all its languages,
        # titled in its first one. Only the content needs the body (`full`); the rest is in
        # the index record.
        code = (story.text_in(spec.language) if spec.language in ("en", "zh") else None) \
            or story.languages[0]
        codes = (code,) if spec.language in ("en", "zh") else tuple(story.languages)
        key = (story.id, codes)
        content = self._content.get(key)
        if content is None:
            content = self._content[key] = self.site.story_html(full(story), codes)
        return FeedItem(
            id=story_urn(story.id),
            url=join_url(self.base, story_path(story.id)),
            title=story.title.get(code) or next(iter(story.title.values()), story.id),
            lang=code,
            published=story.published,
            updated=max(story.updated, story.published),
            tags=tuple(story.tags),
            summary_text=" ".join(story.tldr.get(code) or []),
            summary_html=self.site.tldr_html(story, code),
            content_html=content,
        )

    def feed(self, spec: FeedSpec, full: Callable[[Story], Story]) -> dict[str, bytes]:
        """The three files of one feed; `full` maps a (possibly index-only) story to the
        story with its body, called only for content not already known (`reuse_content`)."""
        feed = Feed(
            title=spec.title, description=spec.description, language=spec.language,
            feed_id=spec.feed_id, home_url=join_url(self.base, spec.home),
            urls={link["fmt"]: link["href"] for link in spec.links(self.base)},
            author=self.config.site.author,
            items=tuple(self._item(s, spec, full) for s in self.chosen[spec.key]),
        )
        return feed_files(spec, feed)

    def reuse_content(self, spec: FeedSpec, old_items: Sequence[dict], old_sigs: Sequence[str],
                      sigs: dict[str, str]) -> int:
        """Take item content from this feed's previous JSON Feed (`old_items`, built with the
        same templates and code) for every story whose signature (content hash, times, tag
        slugs) is the one it had then: no body to load, no fragment to render. Its
        `content_html` is `story_html` exactly (that output holds no character `xml_text`
        strips). Returns how many were taken."""
        if len(old_items) != len(old_sigs):
            return 0
        by_id = {s.id: s for s in self.chosen[spec.key]}
        taken = 0
        for item, old in zip(old_items, old_sigs, strict=True):
            uid = item.get("id") if isinstance(item, dict) else None
            sid = uid[len(_URN):] if isinstance(uid, str) and uid.startswith(_URN) else None
            story = by_id.get(sid) if sid is not None else None
            content = item.get("content_html") if story is not None else None
            if story is None or sigs.get(story.id) != old or not isinstance(content, str):
                continue
            codes = (item.get("language"),) if spec.language in ("en", "zh") \
                else tuple(story.languages)
            self._content.setdefault((story.id, codes), content)
            taken += 1
        return taken

    def tag_page(self, spec: FeedSpec) -> bytes:
        return self.site.tag_page(spec, self.chosen[spec.key])  # cards: index fields only

    def story_page(self, story: Story) -> bytes:
        return self.site.story_page(story)

    def index(self) -> bytes:
        return self.site.index_page(self.top)

    def opml(self) -> bytes:
        return self.site.opml()


def make_plan(config: Config, stories: Sequence[Story], now: datetime, env: Any = None) -> Plan:
    """Rank `stories` (index records suffice) and decide every feed's selection."""
    ranked = rank(list(stories), now, config.rank)
    slugs = tag_slugs({t for s in stories for t in s.tags}, config.tags)
    specs = catalog(config.site.title, config.site.description, slugs)
    limit = max(0, config.feeds.items)
    return Plan(config=config, stories=stories, ranked=ranked, slugs=slugs, specs=specs,
                site=Site(config.site, slugs, specs, env=env),
                chosen=choose(specs, ranked, limit), limit=limit)


def build_files(config: Config, stories: Sequence[Story], now: datetime,
                env: Any = None) -> tuple[dict[str, bytes], list[str]]:
    """Every published file as relpath → bytes, and the feed relpaths. Pure: no I/O.
    `env` overrides the Jinja2 environment (tests pin templates owned by others)."""
    plan = make_plan(config, stories, now, env)
    files: dict[str, bytes] = {}
    for spec in plan.specs:
        files.update(plan.feed(spec, _identity))
        if spec.tag is not None and spec.slug is not None:
            files[tag_page_path(spec.slug)] = plan.tag_page(spec)
    for story in stories:
        files[story_path(story.id)] = plan.story_page(story)
    files["index.html"] = plan.index()
    files["feeds.opml"] = plan.opml()
    return files, plan.feed_paths()


def _identity(s: Story) -> Story:
    return s


_URN = story_urn("")


__all__ = ["Plan", "build_files", "choose", "format_ranked", "make_plan", "select"]
