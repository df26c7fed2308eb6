"""Build keys for incremental publishing: what each published file is made from.

A file's key changes whenever its bytes could: story content hashes, times and tag slugs
for pages; the selection and its stories for feeds. The tree-wide build key covers the
settings, the web templates, the code and the libraries that shape the bytes. Pure but for
reading the templates, the code's source files and the store's index file stats.
"""

from __future__ import annotations

import hashlib
import os
import sys
from datetime import datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.models import Story
from digest.publish.feeds import FORMATS
from digest.publish.plan import Plan
from digest.publish.site import story_path, tag_page_path
from digest.resources import WEB_TEMPLATES


def _h(*parts: Any) -> str:
    return hashlib.blake2b(repr(parts).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


# The modules whose code shapes the published bytes: a change to any of them rebuilds all.
# (A name not imported at the first publish, e.g. a module not yet written, counts by name.)
_CODE = ("digest.models", "digest.i18n", "digest.templating", "digest.codec", "digest.publish.rank",
         "digest.publish.plan", "digest.publish.feeds", "digest.publish.site",
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


def file_keys(plan: Plan, sig: dict[str, str]) -> dict[str, str]:
    """relpath → build key, for every file of the plan (`sig` from `story_sigs`)."""
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
    for s in plan.stories:
        keys[story_path(s.id)] = "s|" + sig[s.id]
    keys["index.html"] = _h("index", all_specs, [sig[s.id] for s in plan.top],
                            [tuple(c) for c in plan.tag_choices])
    keys["feeds.opml"] = _h("opml", all_specs)
    return keys
