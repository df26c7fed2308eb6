"""Rank and publish: read the store, build feeds and pages (pure), write them atomically.

Publishing is incremental, with the output dir's manifest as the build cache (see
digest/output.py): every file gets a build key naming what it is made from (story content
hashes and times, the selection of a feed, tag slugs); the templates, the settings and this
code form one `build` key for the whole tree. A file whose key is unchanged and whose stat
still matches the manifest is not rebuilt, and its story bodies are not even loaded.
When neither the store's index files nor the build key changed, the whole tree is known to
be current after a stat of each file (`_unchanged_report`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.config import Config
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
from digest.models import Story
from digest.publish.tree import Tree, open_tree
from digest.publish import workers as pageworkers
from digest.publish.keys import (
    build_key,
    file_keys,
    store_signature,
    story_sigs,
    unix_seconds,
)
from digest.publish.rank import Ranked, rank
from digest.publish.site import Site, story_path, tag_page_path


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


# --- the plan: what goes where (pure) -------------------------------------------------------


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


# --- publishing (I/O) ---------------------------------------------------------------------


def _unchanged_report(tree: Tree, out: Path, build: str, sig: str, now: datetime) -> PublishReport | None:
    """The report of a publish that would change nothing, or None when that is not known
    without reading the store: same build key, same store index files, every file as the
    last run left it, and no story newer than `now` (the rank order does not depend on
    `now` otherwise; see digest.publish.rank.order_key)."""
    meta = tree.meta
    if tree.build != build or meta.get("store") != sig or meta.get("future", True):
        return None
    if not isinstance(meta.get("max_published"), int) or now.timestamp() < meta["max_published"]:
        return None
    if not tree.all_fresh():
        return None
    return PublishReport(output=out, unchanged=sorted(tree.previous),
                         feeds=list(meta.get("feeds") or []), stories=int(meta.get("stories") or 0))


def publish(config: Config, now: datetime | None = None) -> PublishReport:
    """Write feeds, story pages, tag pages, index.html and feeds.opml into `[feeds] output`;
    files whose bytes did not change are not touched, and files of vanished tags or stories
    are removed."""
    now = now or datetime.now(UTC)
    out = Path(config.feeds.output)
    store = _open_store(config)
    build = build_key(config)
    with open_tree(out) as tree:
        sig = store_signature(config.store.path)
        done = _unchanged_report(tree, out, build, sig, now)
        if done is not None:
            return done
        # One read transaction: a consistent snapshot of index and hashes, and the store
        # checks its index files once instead of twice per story_hash call (20k stats).
        with store.transaction():
            index = store.list_stories()
            hashes = {s.id: store.story_hash(s.id) for s in index}
        plan = make_plan(config, index, now)
        sigs = story_sigs(plan, hashes)
        keys = file_keys(plan, sigs)
        valid = tree.build == build

        def fresh(rel: str) -> bool:
            return valid and tree.fresh(rel, keys[rel])

        kept: list[str] = []
        same: list[str] = []

        def emit(rel: str, data: bytes) -> None:
            if tree.differs(rel, data):
                tree.stage(rel, data)
            else:
                same.append(rel)

        # Which feeds and story pages must be rebuilt; only their stories' bodies are read.
        stale_specs = []
        for spec in plan.specs:
            paths = [spec.path(fmt) for fmt, _, _, _ in FORMATS]
            if all(fresh(p) for p in paths):
                kept.extend(paths)
            else:
                stale_specs.append(spec)
        stale_pages = []
        for s in index:
            if fresh(story_path(s.id)):
                kept.append(story_path(s.id))
            else:
                stale_pages.append(s)

        # Story pages are most of the work of a full publish: render them in forked workers
        # (before this process starts any writer thread) while this one builds the feeds.
        workers = pageworkers.fork_pages(store, plan, tree, stale_pages)
        try:
            bodies: dict[str, Story] = {}

            def body(s: Story) -> Story:
                full = bodies.get(s.id)
                if full is None:
                    full = bodies[s.id] = pageworkers.load_body(store, s)
                return full

            old_items = tree.meta.get("items") if valid and isinstance(tree.meta.get("items"), dict) else {}
            for spec in stale_specs:
                _reuse_feed_content(tree, plan, spec, old_items.get(spec.key), sigs)
                for rel, data in plan.feed(spec, body).items():
                    emit(rel, data)
            for spec in plan.specs:
                if spec.tag is not None and spec.slug is not None:
                    rel = tag_page_path(spec.slug)
                    if fresh(rel):
                        kept.append(rel)
                    else:
                        emit(rel, plan.tag_page(spec))
            for rel, make in (("index.html", plan.index), ("feeds.opml", plan.opml)):
                if fresh(rel):
                    kept.append(rel)
                else:
                    emit(rel, make())
            if workers is None:
                for s in stale_pages:
                    emit(story_path(s.id), plan.story_page(body(s)))
        except BaseException:
            if workers is not None:
                pageworkers.reap(workers)
            raise
        if workers is not None:
            for staged, unchanged in pageworkers.join(workers):
                for rel, st in staged:
                    tree.adopt(rel, st)
                same.extend(unchanged)

        max_pub = max((unix_seconds(s.published) for s in index), default=0)
        meta = {"store": sig, "max_published": max_pub, "future": max_pub > now.timestamp(),
                "stories": len(index), "feeds": plan.feed_paths(),
                "items": {spec.key: [sigs[s.id] for s in plan.chosen[spec.key]] for spec in plan.specs}}
        report = tree.commit(keep=kept, keys=keys, unchanged=same, build=build, meta=meta)
    return PublishReport(output=out, written=report.written, unchanged=report.unchanged,
                         removed=report.removed, feeds=plan.feed_paths(), stories=len(index))


def _reuse_feed_content(tree: Tree, plan: Plan, spec: FeedSpec, old_sigs: Any,
                        sigs: dict[str, str]) -> None:
    """Seed `plan` with the item content of this feed's last JSON Feed, if that file is
    still exactly what the last run (same build key) wrote."""
    rel = spec.path("json")
    entry = tree.entries.get(rel)
    if not isinstance(old_sigs, list) or entry is None or entry.key is None \
            or not tree.fresh(rel, entry.key):
        return
    try:
        items = json.loads((tree.outdir / rel).read_bytes())["items"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if isinstance(items, list):
        plan.reuse_content(spec, items, old_sigs, sigs)


__all__ = ["Plan", "PublishReport", "build_files", "choose", "format_ranked", "make_plan",
           "publish", "rank_stories", "select"]
