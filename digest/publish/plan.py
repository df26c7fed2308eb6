"""The feed plan, pure: rank the stories, choose each feed's selection, build every file's bytes.

`make_plan` decides what goes where from index records alone; `Plan` renders feeds and pages
on demand (story bodies only through the `full` callback), so the incremental publisher in
digest.pipeline.publishing loads bodies just for what it rebuilds. `build_files` is the
whole site in memory, for tests and the golden files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from digest.config import Config
from digest.models import Story
from digest.publish.feeds import (
    FORMATS,
    Feed,
    FeedItem,
    FeedSpec,
    base_slug,
    catalog,
    feed_files,
    item_language,
    item_urn,
    join_url,
    split_item_urn,
)
from digest.publish.rank import Ranked, rank
from digest.publish.site import Site, lang_anchor, story_path, tag_page_path, typeset
from digest.subscribers import TAG_CHOICES, TagChoice, tag_choices

# --- selecting and listing ----------------------------------------------------------------


def select(stories: Sequence[Story], lang: str | None = None, tag: str | None = None,
           aliases: dict[str, str] | None = None) -> list[Story]:
    """Stories readable in `lang` (`en`, `zh`, `zh-Hant`, `all`) and carrying `tag` (the tag
    itself or its slug)."""
    out = list(stories)
    if lang and lang != "all":
        out = [s for s in out if s.text_in(lang) or lang in s.languages]
    if tag:
        slugs = assign_slugs(stories, aliases)  # all of them: the published slugs
        folded = tag.casefold()
        out = [s for s in out
               if any(folded == t.casefold() or tag == slugs.get(t) for t in s.tags)]
    return out


def assign_slugs(stories: Sequence[Story], aliases: dict[str, str] | None = None
                 ) -> dict[str, str]:
    """tag → slug for every spelling of every tag.

    Tags equal but for case ("Security", "security") are one tag: one slug, one feed, one
    page. Two different tags that normalise to one base slug ("AI Safety", "ai-safety") keep
    it in order of arrival — `[tags]` aliases first, then the tag of the earliest story
    (published, then id) — and a later one gets a hash suffix: a new tag never moves an
    existing feed to another address."""
    groups: dict[str, list[str]] = {}  # casefold → spellings, first seen first
    for story in sorted(stories, key=lambda s: (s.published, s.id)):
        for t in story.tags:
            spellings = groups.setdefault(t.casefold(), [])
            if t not in spellings:
                spellings.append(t)
    aliases = aliases or {}

    def alias_of(spellings: list[str]) -> str | None:
        return next((t for t in spellings if aliases.get(t)), None)

    order = sorted(groups.values(), key=lambda sp: alias_of(sp) is None)  # stable
    out: dict[str, str] = {}
    taken: set[str] = set()
    for spellings in order:
        first = alias_of(spellings) or spellings[0]
        slug = base_slug(first, aliases)
        if slug in taken:
            slug = f"{slug}-{hashlib.sha1(spellings[0].casefold().encode()).hexdigest()[:6]}"
        taken.add(slug)
        for t in spellings:
            out[t] = slug
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


def choose(specs: Sequence[FeedSpec], ranked: Sequence[Ranked], limit: int,
           slugs: dict[str, str] | None = None) -> dict[str, list[Story]]:
    """spec.key → its top `limit` stories in rank order, in one pass over the ranking
    (instead of one scan per feed). With `slugs` (every spelling → slug) a tag feed takes
    the stories of every spelling of its tag."""
    out: dict[str, list[Story]] = {spec.key: [] for spec in specs}
    by_tag = {spec.tag: out[spec.key] for spec in specs if spec.tag is not None}
    if slugs:
        by_slug = {spec.slug: out[spec.key] for spec in specs if spec.tag is not None}
        by_tag = {t: by_slug[slug] for t, slug in slugs.items() if slug in by_slug}
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
        added: set[int] = set()  # a tag listed twice (or in two cases) adds it once
        for t in s.tags:
            lst = by_tag.get(t)
            if lst is not None and id(lst) not in added and len(lst) < limit:
                added.add(id(lst))
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
    _tldr: dict[tuple[str, str], str] = field(default_factory=dict)  # one render per version
    _tag_choices: list[TagChoice] | None = None
    # The editions feeds (digest.publish.editions), set by the publisher when editions were
    # sent: listed in index.html and feeds.opml after the others (none: bytes as before).
    edition_specs: list[FeedSpec] = field(default_factory=list)
    # What the incremental publisher keeps (digest.publish.keys.plan_state): each story's
    # rank key and the feed times `distinct_updated` moved.
    order_keys: dict[str, tuple] = field(default_factory=dict)
    moved: dict[str, datetime] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.site.base_url

    @property
    def top(self) -> list[Story]:
        return self.chosen.get("all", [])

    @property
    def tag_choices(self) -> list[TagChoice]:
        """The tags index.html's subscribe form offers (the same as GET /subscribe)."""
        if self._tag_choices is None:
            self._tag_choices = tag_choices((s.tags for s in self.stories), self.config.tags,
                                            TAG_CHOICES)
        return self._tag_choices

    def feed_paths(self) -> list[str]:
        return [spec.path(fmt) for spec in [*self.specs, *self.edition_specs]
                for fmt, _, _, _ in FORMATS]

    # --- rendering ----------------------------------------------------------------------

    def _item(self, story: Story, spec: FeedSpec, full: Callable[[Story], Story]) -> FeedItem:
        # One language version per item (`feeds.item_language`): the same id, title, text
        # and times in every feed that carries it. Only the content needs the body (`full`);
        # the rest is in the index record.
        code = item_language(spec.language, story.languages) or story.languages[0]
        key = (story.id, (code,))
        content = self._content.get(key)
        if content is None:
            content = self._content[key] = self.site.story_html(full(story), (code,))
        title = story.title.get(code) or next(iter(story.title.values()), story.id)
        return FeedItem(
            id=item_urn(story.id, code),
            url=join_url(self.base, story_path(story.id)) + "#" + lang_anchor(story.languages, code),
            title=typeset(title, code),
            lang=code,
            published=story.published,
            updated=max(story.updated, story.published),
            tags=tuple(story.tags),
            summary_text=typeset(" ".join(story.tldr.get(code) or []), code),
            summary_html=self._tldr_html(story, code),
            content_html=content,
        )

    def _tldr_html(self, story: Story, code: str) -> str:
        # A story is in several feeds (all, its language's, its tags'): rendered once.
        html = self._tldr.get((story.id, code))
        if html is None:
            html = self._tldr[(story.id, code)] = self.site.tldr_html(story, code)
        return html

    def feed(self, spec: FeedSpec, full: Callable[[Story], Story]) -> dict[str, bytes]:
        """The three files of one feed; `full` maps a (possibly index-only) story to the
        story with its body, called only for content not already known (`reuse_content`)."""
        feed = Feed(
            title=spec.title, description=spec.description, language=spec.language,
            feed_id=spec.feed_id, home_url=join_url(self.base, spec.home),
            urls={link["fmt"]: link["href"] for link in spec.links(self.base)},
            author=self.config.site.author,
            items=tuple(self._item(s, spec, full) for s in self.chosen[spec.key]),
            hubs=self.config.websub.hubs,
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
            parts = split_item_urn(uid) if isinstance(uid, str) else None
            story = by_id.get(parts[0]) if parts is not None else None
            content = item.get("content_html") if story is not None else None
            if story is None or parts is None or sigs.get(story.id) != old \
                    or not isinstance(content, str) or item.get("language") != parts[1]:
                continue
            self._content.setdefault((story.id, (parts[1],)), content)
            taken += 1
        return taken

    def tag_page(self, spec: FeedSpec) -> bytes:
        alias = self.config.tags.get(spec.tag) if spec.tag is not None else None
        return self.site.tag_page(spec, self.chosen[spec.key], alias)  # index fields only

    def story_page(self, story: Story) -> bytes:
        return self.site.story_page(story)

    def index(self) -> bytes:
        return self.site.index_page(self.top, self.tag_choices, self.edition_specs)

    def opml(self) -> bytes:
        return self.site.opml(self.edition_specs)


def distinct_updated(stories: Sequence[Story], exact: Collection[str] = ()) -> dict[str, datetime]:
    """story id → an `updated` moved back a few seconds, for the stories whose `updated`
    ties with another's; the others are absent. Pure and deterministic.

    Atom readers (and the W3C validator) want no two entries of a feed with one `updated`.
    Ties come from relative ages: every card of one batch that says "2h ago" resolves to
    the same second of `as_of`, a time the source gave to the hour. Within a tie the story
    with the newer `published` (then the smaller id) keeps the instant, the next moves
    1 s back, and so on past instants any story has. The times of stories in `exact` (ids
    whose source stated the time) are never moved: they keep their instant, and two exact
    ones that tie stay tied, as the source said. (The store does not yet record which
    times were exact, so `make_plan` passes none.)
    Computed over all stories, not per feed, so an item has one `updated` in every feed."""
    def second(s: Story) -> datetime:
        return s.updated.replace(microsecond=0)  # feeds show whole seconds (`iso`)

    # Every instant some story has is kept by one of them (an exact one if any), so a story
    # whose time ties with none never moves; only the others of a tie look for a free second.
    taken = {second(s) for s in stories}
    keeper = {second(s): s.id for s in stories if s.id in exact}
    order = sorted((s for s in stories if s.id not in exact),
                   key=lambda s: (-s.updated.timestamp(), -s.published.timestamp(), s.id))
    moved: dict[str, datetime] = {}
    # below[t]: every second in (below[t], t] is taken, so the walk down from t skips to it
    # (path-compressed: a 10k-story tie costs O(n), not O(n²) steps; same result).
    below: dict[datetime, datetime] = {}
    one = timedelta(seconds=1)
    for s in order:
        when = second(s)
        if keeper.setdefault(when, s.id) == s.id:
            continue
        walked = []
        while when in taken:
            walked.append(when)
            when = below.get(when) or when - one
        for t in walked:
            below[t] = when
        taken.add(when)
        moved[s.id] = when
    return moved


def _with_feed_times(stories: Sequence[Story], ranked: list[Ranked]
                     ) -> tuple[list[Story], list[Ranked], dict[str, datetime]]:
    """The stories (and their ranking, unchanged) with `distinct_updated` applied, and the
    moved times; a moved `published` follows its `updated` only where it would otherwise
    be later."""
    moved = distinct_updated(stories)
    if not moved:
        return list(stories), ranked, moved
    new = {sid: with_times(s, moved[sid]) for s in stories if (sid := s.id) in moved}
    get = new.get
    return ([get(s.id, s) for s in stories],
            [r if (n := get(r.story.id)) is None else _with_story(r, n) for r in ranked], moved)


def with_times(s: Story, when: datetime) -> Story:
    """`replace(s, updated=when, published=min(s.published, when))`, the same shallow copy
    without the dataclass machinery (~9k stories of a 10k store move on every publish)."""
    n = object.__new__(type(s))
    d = n.__dict__
    d.update(s.__dict__)
    d["updated"] = when
    d["published"] = min(s.published, when)
    return n


def _with_story(r: Ranked, story: Story) -> Ranked:
    """`replace(r, story=story)` for the frozen `Ranked`, as a shallow copy."""
    n = object.__new__(type(r))
    n.__dict__.update(r.__dict__)
    n.__dict__["story"] = story
    return n


def make_plan(config: Config, stories: Sequence[Story], now: datetime, env: Any = None) -> Plan:
    """Rank `stories` (index records suffice) and decide every feed's selection. Feed items
    get `distinct_updated` times (so do the plan's stories: their build keys follow them)."""
    keys: dict[str, tuple] = {}
    stories, ranked, moved = _with_feed_times(stories, rank(list(stories), now, config.rank, keys))
    slugs = assign_slugs(stories, config.tags)  # every spelling → its tag's slug
    specs = feed_specs(config, slugs)
    limit = max(0, config.feeds.items)
    return Plan(config=config, stories=stories, ranked=ranked, slugs=slugs, specs=specs,
                site=Site(config.site, slugs, specs, env=env),
                chosen=choose(specs, ranked, limit, slugs), limit=limit,
                order_keys=keys, moved=moved)


def feed_specs(config: Config, slugs: dict[str, str]) -> list[FeedSpec]:
    """Every feed of the site: one per language, then one per slug, titled by its first
    spelling (`slugs`: every spelling → its tag's slug, in `assign_slugs` order)."""
    return catalog(config.site.title, config.site.description,
                   {t: slug for slug, t in {v: k for k, v in reversed(slugs.items())}.items()})


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


__all__ = ["Plan", "build_files", "choose", "distinct_updated", "format_ranked", "make_plan", "select"]
