"""Build keys for incremental publishing: what each published file is made from.

A file's key changes whenever its bytes could: story content hashes, times and tag slugs
for pages; the selection and its stories for feeds. The tree-wide build key covers the
settings, the web templates, the code and the libraries that shape the bytes. Pure but for
reading the templates, the code's source files and the store's index file stats.

The plan state (`plan_state`, `advance`): what a publish decided, per story a compact row
(index shard, content hash, times, languages, tags, rank key) and per feed its story ids,
kept beside the manifest. The next publish reads only the index shards whose stat changed;
when they hold nothing but new stories that move no other story's feed time or tag slug
(the common "one more story" publish) `advance` updates the selections from the rows,
without reading the other shards or building a `Story` per stored story. Anything else
(an edited or deleted story, a new tag spelling, a time tie) returns None: a full plan.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from bisect import insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.models import Story, parse_iso
from digest.publish.feeds import FORMATS
from digest.publish.plan import Plan, feed_specs, with_times
from digest.publish.rank import rank
from digest.publish.site import Site, story_path, tag_page_path
from digest.resources import WEB_TEMPLATES
from digest.subscribers import TAG_CHOICES, TagChoice


def _h(*parts: Any) -> str:
    return hashlib.blake2b(repr(parts).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


# The modules whose code shapes the published bytes: a change to any of them rebuilds all.
# (A module that does not exist, e.g. one not yet written, counts by name.)
_CODE = ("digest.models", "digest.i18n", "digest.templating", "digest.codec", "digest.publish.rank",
         "digest.publish.plan", "digest.publish.feeds", "digest.publish.site",
         "digest.publish.text", "digest.publish.storypage",
         "digest.publish.tree", "digest.publish.keys", "digest.publish.workers",
         "digest.publish.editions", "digest.mail.render", "digest.mail.subjects",
         "digest.pipeline.publishing")
_LIBS = ("jinja2", "markupsafe", "lxml", "feedgen", "orjson")


@cache
def _code_key() -> str:
    h = hashlib.blake2b(digest_size=12)
    for name in _CODE:
        mod = sys.modules.get(name)
        src = getattr(mod, "__file__", None)
        if src is None:  # not imported (yet): its file all the same, so the key is one
            try:         # whatever this process happened to import before
                spec = importlib.util.find_spec(name)
                src = spec.origin if spec is not None else None
            except (ImportError, ValueError):
                src = None
        h.update(Path(src).read_bytes() if src else name.encode())
    for name in _LIBS:
        try:
            h.update(f"{name}={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            h.update(name.encode())
    return h.hexdigest()


def _templates_key(root: Path = WEB_TEMPLATES) -> str:
    h = hashlib.blake2b(digest_size=12)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def build_key(config: Config) -> str:
    """What every file depends on besides the stories: settings, templates, code."""
    return _h("build/1", config.site, config.feeds.items, config.rank, sorted(config.tags.items()),
              config.websub.hubs, _templates_key(), _code_key())


def store_signature(store_path: Path) -> str:
    """Identity of the store's index files (inode, mtime, size). Every story write replaces
    an index shard (docs/ARCHITECTURE.md, "Store layout"), so an equal signature means the
    same stories; a write between this and reading the index only causes a rebuild later."""
    rows = []
    try:
        with os.scandir(Path(store_path) / "index") as it:
            for e in it:
                if e.name.endswith(".json"):
                    st = e.stat()
                    rows.append((e.name, st.st_ino, st.st_mtime_ns, st.st_size))
    except FileNotFoundError:
        return "none"
    return _h(sorted(rows))


def unix_seconds(dt: datetime) -> int:
    return int(dt.timestamp())


def _story_sig(s: Story, content_hash: str | None, slugs: dict[str, str]) -> str:
    # Content hash covers text, tags, scores, languages; times and tag slugs are separate.
    return f"{s.id}|{content_hash}|{unix_seconds(s.published)}|{unix_seconds(s.updated)}|" + \
        "/".join(slugs.get(t, "") for t in s.tags)


def story_sigs(plan: Plan, hashes: dict[str, str | None]) -> dict[str, str]:
    """story id → what its page and its feed items are made from."""
    return {s.id: _story_sig(s, hashes.get(s.id), plan.slugs) for s in plan.stories}


def file_keys(plan: Plan, sig: dict[str, str], pages: Iterable[Story] | None = None
              ) -> dict[str, str]:
    """relpath → build key, for every file of the plan (`sig` from `story_sigs`); story
    pages only of `pages` when given (the others' keys did not change)."""
    keys: dict[str, str] = {}
    all_specs = _h([(s.key, s.title, s.description, s.language, s.tag, s.slug, s.home)
                    for s in [*plan.specs, *plan.edition_specs]])
    for spec in plan.specs:
        items = [sig[s.id] for s in plan.chosen[spec.key]]
        spec_id = (spec.key, spec.title, spec.description, spec.language, spec.tag, spec.slug, spec.home)
        k = _h("feed", spec_id, items)
        for fmt, _, _, _ in FORMATS:
            keys[spec.path(fmt)] = k
        if spec.tag is not None and spec.slug is not None:
            keys[tag_page_path(spec.slug)] = _h("tag", spec_id, items)
    for s in plan.stories if pages is None else pages:
        keys[story_path(s.id)] = "s|" + sig[s.id]
    keys["index.html"] = _h("index", all_specs, [sig[s.id] for s in plan.top],
                            [tuple(c) for c in plan.tag_choices])
    keys["feeds.opml"] = _h("opml", all_specs)
    return keys


# --- the plan state: what the next publish starts from ----------------------------------

STATE_VERSION = 1
# Per story one entry in each column (JSON arrays of plain values read fast, ~5 ms for 10k
# stories): id, index shard, content hash, published and updated (POSIX seconds), and the
# rank key's class and log-score (`rank.order_key` is (class, score, -published, id)).
_COLUMNS = ("ids", "shard", "hash", "pub", "upd", "kind", "lg")


def plan_state(plan: Plan, index: Sequence[Story], hashes: Mapping[str, str | None],
               shards: Mapping[str, Sequence[int]], shard_of: Any, shown: Iterable[str],
               build: str) -> dict[str, Any]:
    """The state of a full plan of `index` (the stories as stored: times not moved);
    `shards` the index shard stats it was read at, `shard_of(id)` a story's shard, `shown`
    ids whose index records pages need besides the feeds' (the editions' stories)."""
    cols: dict[str, list] = {c: [] for c in _COLUMNS}
    for s in index:
        key = plan.order_keys[s.id]
        for c, v in zip(_COLUMNS, (s.id, shard_of(s.id), hashes.get(s.id),
                                   unix_seconds(s.published), unix_seconds(s.updated),
                                   key[0], key[1]), strict=True):
            cols[c].append(v)
    first: dict[str, list] = {}  # tag group → (published, id) of its first story
    for s in sorted(index, key=lambda s: (s.published, s.id)):
        for t in s.tags:
            first.setdefault(t.casefold(), [unix_seconds(s.published), s.id])
    counts: dict[str, int] = {}  # as digest.subscribers.tag_choices counts, in plan order
    spelling: dict[str, str] = {}
    for s in plan.stories:
        for k in {t.casefold(): t for t in s.tags if t}:
            counts[k] = counts.get(k, 0) + 1
        for t in s.tags:
            spelling.setdefault(t.casefold(), t)
    chosen = {k: [s.id for s in v] for k, v in plan.chosen.items()}
    by_id = {s.id: s for s in index}
    keep = {i for ids in chosen.values() for i in ids} | set(shown)
    return {"v": STATE_VERSION, "build": build, "shards": {n: list(v) for n, v in shards.items()},
            **cols, "moved": {i: unix_seconds(t) for i, t in plan.moved.items()},
            "first": first, "slugs": dict(plan.slugs), "chosen": chosen, "counts": counts,
            "spelling": spelling,
            "records": {i: _record(by_id[i]) for i in sorted(keep) if i in by_id},
            "max_published": max(cols["pub"], default=0)}


@dataclass
class Advance:
    """A plan made from the state: `new` the stories added, `plan` (its `stories` only
    those pages and feeds show), `sigs` of those, `state` the next state."""

    new: list[Story]
    plan: Plan
    sigs: dict[str, str]
    state: dict[str, Any]


def _tag_choices(counts: Mapping[str, int], spelling: Mapping[str, str],
                 aliases: Mapping[str, str]) -> list[TagChoice]:
    """digest.subscribers.tag_choices from its counts (the same order and values)."""
    by_fold = {t.casefold(): slug for t, slug in aliases.items()}
    top = sorted(counts, key=lambda k: (-counts[k], k))[:TAG_CHOICES]
    return [TagChoice(spelling[k], aliases.get(spelling[k]) or by_fold.get(k), counts[k])
            for k in top]


def advance(state: dict[str, Any], config: Config, now: datetime,
            changed: Mapping[str, list[dict]], shards: Mapping[str, Sequence[int]],
            shown: Iterable[str], env: Any = None) -> Advance | None:
    """The plan after the index shards in `changed` (name → their records now) changed, or
    None when that needs a full plan: a story changed or went, a new one ties with a feed
    time, is dated in the future, or brings a tag spelling (or an earlier first story of a
    tag) that could move a slug. `state` is updated in place."""
    try:
        ids, shard, hashes, pub, upd, kind, lg = (state[c] for c in _COLUMNS)
        if not all(len(state[c]) == len(ids) for c in _COLUMNS):
            return None
    except (KeyError, TypeError):
        return None
    row = {sid: n for n, sid in enumerate(ids)}
    now_s = now.timestamp()
    new: list[tuple[str, Story, dict]] = []
    for name, recs in changed.items():
        seen = set()
        for rec in recs:
            sid = rec.get("id")
            seen.add(sid)
            n = row.get(sid)
            try:
                story = Story.from_dict(rec) if n is None or hashes[n] != rec.get("hash") \
                    else None
            except (KeyError, ValueError, TypeError):
                return None  # the full plan reports the corrupt record
            if story is not None:
                if n is not None:
                    return None  # edited: its rank, feeds and slugs may all move
                new.append((name, story, rec))
            elif _seconds(rec, "published") != pub[n] or _seconds(rec, "updated") != upd[n]:
                return None  # same text, new times (`ingest --as-of`)
        if any(sh == name and ids[n] not in seen for n, sh in enumerate(shard)):
            return None  # a story went
    if not new:
        return None
    slugs: dict[str, str] = state["slugs"]
    first, spelling, moved = state["first"], state["spelling"], state["moved"]
    spellings: dict[str, int] = {}
    for t in slugs:
        spellings[t.casefold()] = spellings.get(t.casefold(), 0) + 1
    taken = set(upd)
    taken.update(moved.values())
    for _, s, _ in new:
        p, u = unix_seconds(s.published), unix_seconds(s.updated)
        if p > now_s or u in taken:
            # Future: its rank key depends on `now`. A tie: `distinct_updated` may move
            # other stories' feed times.
            return None
        taken.add(u)
        for t in s.tags:
            k = t.casefold()
            f = first.get(k)
            if t not in slugs or spellings.get(k) != 1 or spelling.get(k) != t \
                    or f is None or not f < [p, s.id]:
                return None  # a new spelling or an earlier first story: slugs may move
    limit = max(0, config.feeds.items)
    chosen: dict[str, list[str]] = state["chosen"]
    counts: dict[str, int] = state["counts"]
    records: dict[str, dict] = state["records"]

    def key_of(i: str) -> tuple:
        n = row[i]
        return (kind[n], lg[n], -float(pub[n]), i)

    for name, s, rec in new:
        order: dict[str, tuple] = {}
        rank([s], now, config.rank, order)
        key = order[s.id]
        row[s.id] = len(ids)
        for c, v in zip(_COLUMNS, (s.id, name, rec.get("hash"),
                                   unix_seconds(s.published), unix_seconds(s.updated),
                                   key[0], key[1]), strict=True):
            state[c].append(v)
        if key_of(s.id) != key:
            return None  # not the key this state keeps (cannot happen: guards the columns)
        records[s.id] = _record(s)
        targets = ["all", *(k for k in ("en", "zh") if s.text_in(k))]
        targets += dict.fromkeys(f"tag/{slugs[t]}" for t in s.tags)  # a tag listed twice: once
        for target in targets:
            lst = chosen.get(target)
            if lst is None:
                return None
            if len(lst) < limit or (lst and key < key_of(lst[-1])):
                insort(lst, s.id, key=key_of)
                del lst[limit:]
        for k in {t.casefold(): t for t in s.tags if t}:
            counts[k] = counts.get(k, 0) + 1
        state["max_published"] = max(state["max_published"], unix_seconds(s.published))
    state["shards"] = {n: list(v) for n, v in shards.items()}

    # The stories pages and feeds show, from their index records, with their feed times.
    keep = {i for lst in chosen.values() for i in lst} | {i for i in shown if i in row}
    if not keep <= records.keys():
        return None  # an index record not kept (an edition's story new to the state)
    stories: dict[str, Story] = {}
    for i in sorted(keep | {s.id for _, s, _ in new}):
        st = Story.from_dict(records[i])
        if i in moved:
            st = with_times(st, datetime.fromtimestamp(moved[i], UTC))
        stories[i] = st
    state["records"] = {i: records[i] for i in sorted(keep)}  # as `plan_state` keeps them
    specs = feed_specs(config, slugs)
    plan = Plan(config=config, stories=list(stories.values()), ranked=[], slugs=slugs,
                specs=specs, site=Site(config.site, slugs, specs, env=env),
                chosen={k: [stories[i] for i in lst] for k, lst in chosen.items()}, limit=limit,
                _tag_choices=_tag_choices(counts, spelling, config.tags))
    sigs = {i: _story_sig(st, hashes[row[i]], slugs) for i, st in stories.items()}
    return Advance([stories[s.id] for _, s, _ in new], plan, sigs, state)


def _record(s: Story) -> dict[str, Any]:
    """A story's index record as the state keeps it (its fields in the store's index)."""
    rec = s.summary_dict()
    rec["summary"] = dict(s.summary)
    rec["origin"] = s.origin
    return rec


def _seconds(rec: dict, name: str) -> int | None:
    """A time of an index record in POSIX seconds (`updated` defaults to `published`, as in
    Story.from_dict), None when unreadable."""
    try:
        return unix_seconds(parse_iso(rec.get(name) or rec["published"]))
    except (KeyError, ValueError, TypeError):
        return None
