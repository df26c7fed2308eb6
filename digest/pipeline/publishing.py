"""Rank and publish: read the store, plan the feeds and pages (digest.publish.plan, pure),
write them atomically (digest.publish.tree).

Publishing is incremental, with the output dir's manifest as the build cache (see
digest/publish/tree.py): every file gets a build key naming what it is made from (story content
hashes and times, the selection of a feed, tag slugs; digest/publish/keys.py); the templates,
the settings and the code form one `build` key for the whole tree. A file whose key is
unchanged and whose stat still matches the manifest is not rebuilt, and its story bodies are
not even loaded. When neither the store's index files nor the build key changed, the whole
tree is known to be current after a stat of each file (`_unchanged_report`).

What is checked when: a publish with nothing new stats every file the manifest lists, and
any that differs from its entry (deleted, edited, truncated) makes it a full publish, which
rebuilds it. A full publish (a build change, an edited or deleted story, no plan state)
stats every file. The publish after a few new stories (`_publish_new`) reads only the
index shards that changed, stats the feeds, tag pages, index and new story pages it may
rebuild, and trusts the manifest for the other story pages; a damaged one among those is
repaired by the next publish that has nothing new (the daemon's next tick).
"""

from __future__ import annotations

import gc
import json
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.models import Story
from digest.publish import editions as edpub
from digest.publish import workers as pageworkers
from digest.publish.feeds import FORMATS, FeedSpec
from digest.publish.keys import (
    STATE_VERSION,
    advance,
    build_key,
    file_keys,
    plan_state,
    story_sigs,
    unix_seconds,
)
from digest.publish.plan import Plan, make_plan, select
from digest.publish.rank import Ranked, rank
from digest.publish.site import story_path, tag_page_path
from digest.publish.text import _SAFE_ID
from digest.publish.tree import Tree, open_tree
from digest.store.base import DamagedBody

# The top directory of the story pages (digest.publish.site.story_path).
STORIES = "stories"
# digest.pipeline.websub.PENDING, the store meta key of queued pings (a test keeps them equal).
WEBSUB_PENDING = "websub_pending"


@dataclass
class PublishReport:
    output: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)  # relpaths of every feed file
    stories: int = 0
    websub: Any = None  # digest.pipeline.websub.WebSubReport when hubs are configured or pending
    skipped: list[str] = field(default_factory=list)  # ids of stories whose body is damaged
    warnings: list[str] = field(default_factory=list)  # one per skipped story, with its hint

    def summary(self) -> str:
        total = len(self.written) + len(self.unchanged)
        text = (f"published {self.stories} stories, {len(self.feeds)} feed files, {total} files "
                f"in {self.output}: {len(self.written)} written, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed")
        if self.skipped:
            text += f", {len(self.skipped)} skipped (damaged body)"
        if self.websub is not None and (self.websub.hubs or self.websub.dropped):
            text += "; " + self.websub.summary()
        return text


def _open_store(config: Config):  # -> digest.store.Store, imported late: an edge module
    from digest.store import open_store

    return open_store(config.store)


def rank_stories(config: Config, now: datetime, lang: str | None = None, tag: str | None = None,
                 limit: int | None = None) -> list[Ranked]:
    """Stored stories (index records, no bodies) in rank order at `now`."""
    stories = select(_open_store(config).list_stories(), lang, tag, config.tags)
    ranked = rank(stories, now, config.rank)
    return ranked[:limit] if limit is not None and limit >= 0 else ranked


# --- publishing (I/O) ---------------------------------------------------------------------


def _unchanged_report(tree: Tree, out: Path, build: str, sig: str, now: datetime) -> PublishReport | None:
    """The report of a publish that would change nothing, or None when that is not known
    without reading the store: same build key, same store index files, every file as the
    last run left it, and no story newer than `now` (the rank order does not depend on
    `now` otherwise; see digest.publish.rank.order_key)."""
    meta = tree.meta
    if tree.build != build or meta.get("store") != sig or meta.get("future", True) \
            or meta.get("skipped"):  # a story skipped last time may be readable now
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
    are removed. The run is recorded in store meta (`last_publish`, for `digest status`)."""
    from digest.pipeline.status import LAST_PUBLISH, record_run

    now = now or datetime.now(UTC)
    store = _open_store(config)
    report = _publish(config, store, now)
    if report.written or report.removed or store.meta_get(LAST_PUBLISH) is None:
        # a publish that changed nothing leaves the store alone (the daemon ticks often)
        record_run(store, LAST_PUBLISH, datetime.now(UTC), written=len(report.written),
                   unchanged=len(report.unchanged), removed=len(report.removed),
                   stories=report.stories)
    report.websub = _ping(config, store, report)
    return report


def _ping(config: Config, store: Any, report: PublishReport) -> Any:
    """WebSub pings for the feeds whose bytes changed, after the tree is committed and its
    lock released (hubs fetch what is on disk); retries the ones earlier publishes left. A
    hub never fails the publish: what it does not take stays queued (digest.pipeline.websub)."""
    if not config.websub.hubs and not store.meta_get(WEBSUB_PENDING):
        return None  # no WebSub: not even its module (urllib, http.client) is imported
    from digest.errors import DigestError
    from digest.pipeline import websub

    urls = websub.feed_urls(config, report.written, report.feeds) if config.websub.hubs else []
    try:
        return websub.ping_hubs(config, store, urls, datetime.now(UTC))
    except (DigestError, OSError) as e:  # the store, not a hub: the files are published anyway
        websub.log.warning("websub: pings not sent: %s", e)
        return None


def _publish(config: Config, store: Any, now: datetime) -> PublishReport:
    try:
        return _publish_tree(config, store, now)
    finally:
        gc.unfreeze()  # what `_gc_paused` froze: collectable again (a daemon publishes often)


def _publish_tree(config: Config, store: Any, now: datetime) -> PublishReport:
    out = Path(config.feeds.output)
    build = build_key(config)
    with open_tree(out) as tree:
        sig = store.signature()
        # Editions live in store meta, not in the signature: their own signature decides.
        records = _edition_records(config, store)
        esig = edpub.signature(records)
        done = _unchanged_report(tree, out, build, sig, now) \
            if tree.meta.get("editions", "") == esig else None
        if done is not None:
            return done
        report = _publish_new(config, store, tree, build, sig, esig, records, now)
        if report is None:
            report = _publish_all(config, store, tree, build, sig, esig, records, now)
    return report


def _publish_all(config: Config, store: Any, tree: Tree, build: str, sig: str, esig: str,
                 records: dict[str, list[edpub.EditionRecord]], now: datetime) -> PublishReport:
    """Plan every stored story (the full plan) and write what changed."""
    out = tree.outdir
    stats = getattr(store, "index_stats", None)  # the plan state needs index shards
    # One read transaction: a consistent snapshot of index and hashes, and the store
    # checks its index files once instead of twice per story_hash call (20k stats).
    with store.transaction(), _gc_paused():
        shards = stats() if stats is not None else None
        index = store.list_stories()
        every = getattr(store, "story_hashes", None)  # one pass (embedded store)
        hashes = every() if every is not None else {s.id: store.story_hash(s.id) for s in index}
    # A story whose body cannot be read is skipped, not the whole publish: a round
    # collects every damaged body it needs; the next plans without those stories (their
    # pages stay as the last publish wrote them). Rounds end when none is found.
    damaged: dict[str, DamagedBody] = {}
    while True:
        found: dict[str, DamagedBody] = {}
        stories = [s for s in index if s.id not in damaged]
        with _gc_paused():
            plan = make_plan(config, stories, now)
            sigs = story_sigs(plan, hashes)
            plan.edition_specs, groups = _edition_files(config, plan, records, sigs)
            keys = file_keys(plan, sigs)
        result = _render(config, store, tree, build, plan, sigs, keys, groups, stories, found)
        if not found:
            break
        tree.close()  # this round's staged files
        damaged.update(found)
    kept, same = result
    if damaged:
        previous = set(tree.previous)
        kept += [r for r in (story_path(i) for i in sorted(damaged))
                 if r in previous and (out / r).is_file()]
    state = None
    if shards is not None and not damaged:
        state = plan_state(plan, stories, hashes, shards, store.shard_name,
                           _edition_story_ids(records), build)
    max_pub = max((unix_seconds(s.published) for s in stories), default=0)
    return _commit(tree, plan, sigs, keys, kept, same, build, esig, state, damaged,
                   {"store": sig, "max_published": max_pub, "future": max_pub > now.timestamp(),
                    "stories": len(stories)})


def _publish_new(config: Config, store: Any, tree: Tree, build: str, sig: str, esig: str,
                 records: dict[str, list[edpub.EditionRecord]], now: datetime
                 ) -> PublishReport | None:
    """The publish after a few new stories, from the last plan state (digest.publish.keys):
    only the index shards that changed are read, only the new stories' pages are rendered,
    and the other story pages are kept as the manifest lists them, unread and unstatted.
    (A publish with nothing new stats every file, `_unchanged_report`; a full plan, on any
    build change, checks every page's stat.) None when this does not apply: then
    `_publish_all`."""
    meta = tree.meta
    if tree.build != build or meta.get("editions", "") != esig or meta.get("skipped") \
            or meta.get("future", True) or not hasattr(store, "index_stats"):
        return None
    state = tree.read_state()
    if state is None or state.get("v") != STATE_VERSION or state.get("build") != build:
        return None
    with store.transaction():
        shards = store.index_stats()
        before = state.get("shards") or {}
        if not before.keys() <= shards.keys():
            return None  # a shard file went: a full plan says what is left
        changed = [n for n, st in shards.items() if list(st) != before.get(n)]
        if not changed or 2 * len(changed) > len(shards):
            return None  # nothing new in the index (a file to repair), or much: plan all
        fresh_records = store.shard_records(changed)
    with _gc_paused():
        try:
            step = advance(state, config, now, fresh_records, shards, _edition_story_ids(records))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            step = None  # a state this code cannot read (a hand edit): plan everything
        if step is None:
            return None
        plan, sigs = step.plan, step.sigs
        plan.edition_specs, groups = _edition_files(config, plan, records, sigs)
        keys = file_keys(plan, sigs, pages=step.new)
    found: dict[str, DamagedBody] = {}
    kept, same = _render(config, store, tree, build, plan, sigs, keys, groups, step.new, found)
    if found:
        tree.close()
        return None  # the full plan skips the damaged story and reports it
    # The other stories' pages: those the last run wrote (no story went, none is skipped),
    # kept by the commit without reading their manifest shards; reported from the state.
    others = _story_pages(step.state["ids"], {s.id for s in step.new})
    max_pub = step.state["max_published"]
    return _commit(tree, plan, sigs, keys, kept, same, build, esig, step.state, {},
                   {"store": sig, "max_published": max_pub, "future": max_pub > now.timestamp(),
                    "stories": len(step.state["ids"])}, keep_dir=STORIES, others=others)


_SAFE_IDS = re.compile(rf"(?:{_SAFE_ID.pattern}\n)*")


def _story_pages(ids: Sequence[str], but: set[str]) -> list[str]:
    """`story_path` of each id not in `but` (the report's unchanged pages): ~100k, so the
    common case, every id safe, is checked in one regex pass instead of one per id."""
    rest = [i for i in ids if i not in but]
    joined = "\n".join(rest) + "\n"
    if joined.count("\n") == len(rest) and _SAFE_IDS.fullmatch(joined):
        return [f"stories/{i}.html" for i in rest]
    return [story_path(i) for i in rest]


def _commit(tree: Tree, plan: Plan, sigs: dict[str, str], keys: dict[str, str], kept: list[str],
            same: list[str], build: str, esig: str, state: dict[str, Any] | None,
            damaged: dict[str, DamagedBody], meta: dict[str, Any], keep_dir: str | None = None,
            others: Sequence[str] = ()) -> PublishReport:
    meta["feeds"] = plan.feed_paths()
    meta["items"] = {spec.key: [sigs[s.id] for s in plan.chosen[spec.key]] for spec in plan.specs}
    if damaged:
        meta["skipped"] = sorted(damaged)
    if esig:
        meta["editions"] = esig
    if state is not None:
        # The state belongs to this manifest only: a run killed between the two writes
        # leaves tokens that differ, and the next publish plans everything.
        state["token"] = meta["state"] = secrets.token_hex(8)
    else:
        tree.drop_state()
    report = tree.commit(keep=kept, keys=keys, unchanged=same, build=build, meta=meta,
                         keep_dir=keep_dir)
    report.unchanged += others
    if state is not None:
        tree.write_state(state)
    return PublishReport(output=tree.outdir, written=report.written, unchanged=report.unchanged,
                         removed=report.removed, feeds=plan.feed_paths(), stories=meta["stories"],
                         skipped=sorted(damaged),
                         warnings=[_skip_warning(damaged[i]) for i in sorted(damaged)])


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while the index is read and planned: ~100k acyclic objects are made in a
    burst, and each collection would walk all of them again. What is alive after it is then
    frozen (`gc.freeze`), so the collections the rendering triggers do not walk it either
    (together ~0.2 s at 10k stories); `_publish` unfreezes it when it is done. The collector
    is back on before pages are rendered (and workers forked)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _skip_warning(e: DamagedBody) -> str:
    return f"skipped story {e.story_id}: {e.message}" + (f" (hint: {e.hint})" if e.hint else "")


def _render(config: Config, store: Any, tree: Tree, build: str, plan: Plan, sigs: dict[str, str],
            keys: dict[str, str], edition_groups: list[edpub.Group], pages: Sequence[Story],
            damaged: dict[str, DamagedBody]) -> tuple[list[str], list[str]]:
    """Stage every stale file of `plan` (story pages: those of `pages`); a story whose body
    cannot be read lands in `damaged` (and whatever needed it is left unstaged). Returns
    (kept, unchanged)."""
    for group in edition_groups:
        keys.update(dict.fromkeys(group.paths, group.key))
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
    for s in pages:
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
            try:
                files = plan.feed(spec, body)
            except DamagedBody as e:
                damaged.setdefault(e.story_id, e)  # the next round plans without it
                continue
            for rel, data in files.items():
                emit(rel, data)
        for spec in plan.specs:
            if spec.tag is not None and spec.slug is not None:
                rel = tag_page_path(spec.slug)
                if fresh(rel):
                    kept.append(rel)
                else:
                    emit(rel, plan.tag_page(spec))
        for group in edition_groups:
            if all(fresh(p) for p in group.paths):
                kept.extend(group.paths)
            else:
                for rel, data in group.make().items():
                    emit(rel, data)
        for rel, make in (("index.html", plan.index), ("feeds.opml", plan.opml)):
            if fresh(rel):
                kept.append(rel)
            else:
                emit(rel, make())
        if workers is None:
            for e in pageworkers.render_pages(store, plan, tree, stale_pages, same):
                damaged.setdefault(e.story_id, e)
    except BaseException:
        if workers is not None:
            pageworkers.reap(workers)
        raise
    if workers is not None:
        for staged, unchanged, skipped in pageworkers.join(workers):
            for rel, st in staged:
                tree.adopt(rel, st)
            same.extend(unchanged)
            for e in skipped:
                damaged.setdefault(e.story_id, e)
    return kept, same


def _edition_story_ids(records: dict[str, list[edpub.EditionRecord]]) -> set[str]:
    """The stories the edition pages show (their index records are kept in the state)."""
    return {i for recs in records.values() for r in recs for i in r.stories}


def _edition_records(config: Config, store: Any) -> dict[str, list[edpub.EditionRecord]]:
    """The editions `digest send` recorded, per configured digest (digest.publish.editions)."""
    return {d.name: edpub.load_records(d.name, store.meta_get(edpub.meta_key(d.name)))
            for d in config.digests}


def _edition_files(config: Config, plan: Plan, records: dict[str, list[edpub.EditionRecord]],
                   sigs: dict[str, str]) -> tuple[list[FeedSpec], list[edpub.Group]]:
    """The editions feeds and files: pages, archive indexes, feeds (their stories from the
    index records of this publish: titles and TL;DRs)."""
    if not any(records.values()):
        return [], []
    renderer = edpub.Renderer(plan.base, config.site.title, config.site.description,
                              config.site.author, plan.site.render_page,
                              {s.id: s for s in plan.stories}, config.tags, config.feeds.items,
                              config.websub.hubs)
    infos = [edpub.DigestInfo(d.name, d.subject) for d in config.digests]
    return edpub.plan_files(renderer, infos, records, sigs)


def _reuse_feed_content(tree: Tree, plan: Plan, spec: FeedSpec, old_sigs: Any,
                        sigs: dict[str, str]) -> None:
    """Seed `plan` with the item content of this feed's last JSON Feed, if that file is
    still exactly what the last run (same build key) wrote."""
    rel = spec.path("json")
    entry = tree.entry(rel)
    if not isinstance(old_sigs, list) or entry is None or entry.key is None \
            or not tree.fresh(rel, entry.key):
        return
    try:
        items = json.loads((tree.outdir / rel).read_bytes())["items"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if isinstance(items, list):
        plan.reuse_content(spec, items, old_sigs, sigs)


__all__ = ["PublishReport", "publish", "rank_stories"]
