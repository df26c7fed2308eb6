"""Incremental publishing gives exactly the bytes of a build from scratch.

`publish` skips files whose build key and stat are unchanged, reuses feed item content from
the last JSON Feed, renders story pages in forked workers and may skip everything when the
store's index files did not change. Each of these is checked here against the pure
`build_files` over the same stories: same paths, same bytes, nothing else in the tree.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta

import pytest

from digest.errors import DigestError
from digest.models import Block
from digest.pipeline import publishing
from digest.pipeline.publishing import publish
from digest.publish import workers as pageworkers
from digest.publish.plan import Plan, build_files
from digest.publish.tree import LOCK, MANIFEST, SHARDS, STAGING, STATE
from digest.store import Store
from tests.support.publish import NOW, corpus, mtimes, story


def tree(out) -> dict[str, bytes]:
    skip = {MANIFEST, LOCK, STATE}
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and p.name not in skip
            and not {STAGING, SHARDS} & set(p.relative_to(out).parts)}


def expected(cfg, st: Store, now) -> dict[str, bytes]:
    stories = st.get_stories([s.id for s in st.list_stories()])
    return build_files(cfg, stories, now)[0]




def check(cfg, st, now) -> publishing.PublishReport:
    r = publish(cfg, now=now)
    got, want = tree(cfg.feeds.output), expected(cfg, st, now)
    assert sorted(got) == sorted(want)
    for rel in want:
        assert got[rel] == want[rel], rel
    assert not list((cfg.feeds.output / STAGING).glob("*"))  # no temp file left
    return r


def test_each_kind_of_change_matches_a_full_build(site, monkeypatch):
    cfg, st = site
    taken = []
    real_reuse = Plan.reuse_content
    monkeypatch.setattr(Plan, "reuse_content",
                        lambda self, *a: taken.append(real_reuse(self, *a)) or taken[-1])
    first = check(cfg, st, NOW)
    assert first.written and not first.unchanged

    # A new top story: its page, the feeds it enters, their tag pages, the index.
    st.upsert_stories([story("new001", langs=("en",), tags=("chips", "brand new"), hours_ago=0.1,
                             scores={"hot": 99, "quality": 99, "impact": 99})])
    r = check(cfg, st, NOW)
    assert "stories/new001.html" in r.written and "feeds/en/feed.json" in r.written
    assert "feeds/zh/feed.json" not in r.written and len(r.written) < 30
    assert sum(taken) > 0  # the rebuilt feeds took unchanged items' content from before

    # Only the body of a story in the feeds changes: its page and feed content, not the
    # index-level fields (reused content must not hide it).
    old = st.get_story("s000")
    st.upsert_stories([replace(old, analysis={c: ["Rewritten analysis"] for c in old.languages})])
    r = check(cfg, st, NOW)
    assert "stories/s000.html" in r.written and "feeds/all/feed.json" in r.written

    # A story's times move (hash unchanged): its page shows them.
    s5 = st.get_story("s005")
    st.upsert_stories([replace(s5, updated=s5.updated + timedelta(hours=2),
                               body={"en": [Block("p", "x")]} if "en" in s5.languages else s5.body)])
    check(cfg, st, NOW)

    # A tag disappears from every story: its feeds and page are removed.
    holders = [s for s in st.get_stories([x.id for x in st.list_stories()]) if "Agent" in s.tags]
    st.upsert_stories([replace(s, tags=[t for t in s.tags if t != "Agent"]) for s in holders])
    r = check(cfg, st, NOW)
    assert "feeds/tags/agent/rss.xml" in r.removed

    # Later the same day nothing changes: nothing is written, not even the manifest.
    before = mtimes(cfg.feeds.output)
    r = check(cfg, st, NOW + timedelta(hours=5))
    assert r.written == [] and r.removed == [] and mtimes(cfg.feeds.output) == before


def test_settings_change_rebuilds_and_matches(site):
    cfg, st = site
    check(cfg, st, NOW)
    other = replace(cfg, site=replace(cfg.site, title="Another title", base_url="https://x.test/"))
    r = check(other, st, NOW)
    assert "index.html" in r.written and "feeds.opml" in r.written
    assert check(other, st, NOW).written == []


def test_damaged_output_is_repaired(site):
    cfg, st = site
    check(cfg, st, NOW)
    out = cfg.feeds.output
    (out / "stories/s003.html").unlink()
    (out / "feeds/all/atom.xml").write_bytes(b"<feed/>")  # edited in place, other size
    page = out / "stories/s004.html"
    page.write_bytes(page.read_bytes().replace(b"<html", b"<HTML"))  # same size, new mtime
    r = check(cfg, st, NOW)
    assert {"stories/s003.html", "feeds/all/atom.xml", "stories/s004.html"} <= set(r.written)


def test_lost_manifest_still_matches(site):
    cfg, st = site
    check(cfg, st, NOW)
    (cfg.feeds.output / MANIFEST).unlink()
    before = mtimes(cfg.feeds.output)
    r = check(cfg, st, NOW)
    assert r.written == []  # compared by bytes: nothing rewritten
    after = mtimes(cfg.feeds.output)
    # (the plan state is rewritten: it belongs to the new manifest)
    # (so is the lost manifest's shards: files no top file names)
    assert MANIFEST in after and all(after[k] == v for k, v in before.items()
                                     if k != STATE and not k.startswith(SHARDS + "/"))


def test_forked_page_workers_match(site, monkeypatch):
    cfg, st = site
    monkeypatch.setattr(pageworkers, "PARALLEL_MIN_PAGES", 1)
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: pages are rendered in-process")
    forked = []
    real_fork = pageworkers.fork_pages
    monkeypatch.setattr(pageworkers, "fork_pages",
                        lambda *a: forked.append(real_fork(*a)) or forked[-1])
    r = check(cfg, st, NOW)
    assert forked[0] is not None and len(forked[0]) >= 2  # really rendered in workers
    assert sum(p.startswith("stories/") for p in r.written) == 40
    st.upsert_stories(corpus(45)[40:])
    r = check(cfg, st, NOW)
    assert sorted(p for p in r.written if p.startswith("stories/")) == \
        [f"stories/s{i:03d}.html" for i in range(40, 45)]


def test_worker_error_is_raised_and_leaves_no_temp_files(site, monkeypatch):
    cfg, st = site
    monkeypatch.setattr(pageworkers, "PARALLEL_MIN_PAGES", 1)
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: pages are rendered in-process")
    real = Plan.story_page

    def boom(self, s):
        if s.id == "s039":
            raise DigestError("cannot render s039", "fix it")
        return real(self, s)

    monkeypatch.setattr(Plan, "story_page", boom)
    with pytest.raises(DigestError, match="s039"):
        publish(cfg, now=NOW)
    staging = cfg.feeds.output / STAGING
    assert not staging.exists() or not list(staging.iterdir())
    assert not (cfg.feeds.output / "stories").exists()  # nothing was renamed into place


def test_future_story_disables_the_shortcut(site):
    cfg, st = site
    st.upsert_stories([story("future1", hours_ago=-30, scores={"hot": 10, "quality": 10, "impact": 10})])
    check(cfg, st, NOW)
    # Once `now` passes it, its age grows from 0 and the order may change: a real rebuild.
    check(cfg, st, NOW + timedelta(hours=40))
