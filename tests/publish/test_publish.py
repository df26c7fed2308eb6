"""Publishing end to end: store → files; no-op republish, minimal rewrites, pruning, golden
files from the seeds, and the atomic compare-then-replace writer."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import replace

import feedparser
import pytest
from tests.support.publish import GOLDEN, NOW, make_config, mtimes, seed_stories, store_with, story
from jinja2 import ChoiceLoader, DictLoader

from digest.publish import tree as output
from digest.errors import DigestError, StoreError
from digest.publish.tree import MANIFEST, write_tree
from digest.pipeline.publishing import build_files, format_ranked, publish, rank_stories
from digest.publish.site import environment

# --- the writer --------------------------------------------------------------------------


def test_write_tree_writes_compares_and_prunes(tmp_path):
    out = tmp_path / "out"
    r = write_tree(out, {"a.txt": b"A", "d/b.txt": b"B", "d/e/c.txt": b"C"})
    assert sorted(r.written) == ["a.txt", "d/b.txt", "d/e/c.txt"] and not r.unchanged
    (out / "mine.txt").write_bytes(b"not digest's")  # a file digest never wrote
    before = mtimes(out)
    r = write_tree(out, {"a.txt": b"A", "d/b.txt": b"B", "d/e/c.txt": b"C"})
    assert r.written == [] and r.removed == [] and mtimes(out) == before
    r = write_tree(out, {"a.txt": b"A2", "d/b.txt": b"B"})
    assert r.written == ["a.txt"] and r.removed == ["d/e/c.txt"] and r.unchanged == ["d/b.txt"]
    assert not (out / "d/e").exists()  # emptied directory removed
    assert (out / "mine.txt").read_bytes() == b"not digest's"
    assert json.loads((out / MANIFEST).read_text())["files"] == ["a.txt", "d/b.txt"]
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    assert oct((out / "a.txt").stat().st_mode & 0o777) == "0o644"


def test_write_tree_managed_prefixes_limit_pruning(tmp_path):
    out = tmp_path / "out"
    write_tree(out, {"feeds/x.xml": b"1", "other/y.html": b"2"})
    r = write_tree(out, {}, managed_prefixes=["feeds/"])
    assert r.removed == ["feeds/x.xml"] and (out / "other/y.html").exists()
    assert write_tree(out, {}).removed == ["other/y.html"]  # still remembered in the manifest


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", MANIFEST, ""])
def test_write_tree_refuses_paths_outside(tmp_path, bad):
    with pytest.raises(ValueError):
        write_tree(tmp_path, {bad: b"x"})


def test_write_tree_ignores_tampered_manifest(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / MANIFEST).write_text(json.dumps({"files": ["../victim.txt", "/etc/hostname"]}))
    write_tree(out, {"a": b"1"})
    assert victim.read_text() == "keep"


def test_disk_full_leaves_old_files(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_tree(out, {"a.txt": b"old a", "b.txt": b"old b"})
    real = output._stage
    calls = []

    def full_after_one(outdir, rel, data):
        calls.append(rel)
        if len(calls) > 1:  # the second staged file hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(outdir, rel, data)

    monkeypatch.setattr(output, "_stage", full_after_one)
    with pytest.raises(StoreError) as e:
        write_tree(out, {"a.txt": b"new a", "b.txt": b"new b"})
    assert "disk full" in e.value.message and "no published file was replaced" in e.value.message
    assert e.value.hint
    assert (out / "a.txt").read_bytes() == b"old a" and (out / "b.txt").read_bytes() == b"old b"
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]


def test_unwritable_output_is_a_digest_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DigestError) as e:
        write_tree(blocker / "out", {"a": b"1"})
    assert str(blocker) in e.value.message and "digest publish" in e.value.hint


# --- golden files from the seeds -----------------------------------------------------------


def test_golden_seed_site(tmp_path):
    cfg = make_config(tmp_path, **{"安全": "security"})
    # The subscribe form belongs to the web area; pin it so its changes do not churn these.
    env = environment()
    env.loader = ChoiceLoader([DictLoader({"_subscribe.html": '<section id="subscribe"></section>\n'}),
                               env.loader])
    files, _ = build_files(cfg, seed_stories(), NOW, env=env)
    if os.environ.get("DIGEST_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel, blob in files.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_bytes(blob)
    golden = {p.relative_to(GOLDEN).as_posix(): p.read_bytes() for p in GOLDEN.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(golden), "run DIGEST_UPDATE_GOLDEN=1 pytest tests/test_publish.py"
    for rel in files:
        assert files[rel] == golden[rel], f"{rel} differs; refresh with DIGEST_UPDATE_GOLDEN=1"


# --- end to end through the store ----------------------------------------------------------


@pytest.fixture
def seeded(tmp_path):
    cfg = make_config(tmp_path, **{"安全": "security"})
    st = store_with(cfg, seed_stories())
    return cfg, st


def test_publish_then_republish_is_a_noop(seeded):
    cfg, _ = seeded
    first = publish(cfg, now=NOW)
    assert len(first.written) >= 3 * 3 * 3 + 3 + 2 and not first.removed
    out = cfg.feeds.output
    for rel in first.feeds:
        if not rel.endswith(".json"):
            assert feedparser.parse((out / rel).read_bytes()).bozo == 0, rel
    before = mtimes(out)
    again = publish(cfg, now=NOW.replace(hour=20))  # later the same day: nothing new
    assert again.written == [] and again.removed == []
    assert mtimes(out) == before
    assert "0 written" in again.summary()


def test_adding_one_story_rewrites_only_what_it_touches(seeded):
    cfg, st = seeded
    publish(cfg, now=NOW)
    before = mtimes(cfg.feeds.output)
    st.upsert_stories([story("zzfresh00000001", langs=("en",), tags=("Claude",), hours_ago=0.5)])
    r = publish(cfg, now=NOW)
    changed = set(r.written)
    assert {"stories/zzfresh00000001.html", "index.html"} <= changed
    for d in ("feeds/en", "feeds/all", "feeds/tags/claude"):
        assert {f"{d}/rss.xml", f"{d}/atom.xml", f"{d}/feed.json"} <= changed
    untouched = [p for p in before if p.startswith(("feeds/zh/", "feeds/tags/security/"))]
    assert untouched and not changed & set(untouched)
    assert "feeds.opml" not in changed  # no new tag, so the feed list is the same
    after = mtimes(cfg.feeds.output)
    # Everything else keeps its mtime (the manifest gained the new page's path).
    assert all(after[p] == before[p] for p in before if p not in changed | {MANIFEST})
    top = feedparser.parse((cfg.feeds.output / "feeds/en/atom.xml").read_bytes()).entries[0]
    assert top.id == "urn:digest:story:zzfresh00000001"


def test_tag_removal_unlists_and_deletes_its_feeds(seeded):
    cfg, st = seeded
    publish(cfg, now=NOW)
    out = cfg.feeds.output
    assert (out / "feeds/tags/agent/atom.xml").exists()
    (mine := out / "feeds" / "tags" / "agent" / "notes.txt").write_text("operator's file")
    holders = [s for s in st.get_stories([x.id for x in st.list_stories()]) if "Agent" in s.tags]
    st.upsert_stories([replace(s, tags=[t for t in s.tags if t != "Agent"]) for s in holders])
    r = publish(cfg, now=NOW)
    assert {"feeds/tags/agent/rss.xml", "feeds/tags/agent/atom.xml", "feeds/tags/agent/feed.json",
            "tags/agent.html"} <= set(r.removed)
    assert not (out / "feeds/tags/agent/atom.xml").exists() and mine.exists()
    for listing in ("feeds.opml", "index.html"):
        assert b"feeds/tags/agent/" not in (out / listing).read_bytes()


def test_rank_stories_and_format(seeded):
    cfg, _ = seeded
    ranked = rank_stories(cfg, NOW)
    assert [r.story.id for r in ranked][:1] and len(ranked) == 3
    assert [r.story.id for r in rank_stories(cfg, NOW, lang="en")] == \
        [r.story.id for r in ranked if r.story.text_in("en")]
    assert len(rank_stories(cfg, NOW, tag="security")) == 1 == len(rank_stories(cfg, NOW, tag="安全"))
    assert len(rank_stories(cfg, NOW, limit=1)) == 1
    lines = format_ranked(ranked)
    assert len(lines) == 3 and "decay" in lines[0] and ranked[0].story.id in lines[0]
    assert [sorted(r.as_json()) for r in ranked][0] == sorted(
        ["id", "title", "tldr", "tldr_excerpt", "languages", "tags", "scores", "score",
         "published", "updated", "source"])


def test_publish_empty_store(tmp_path):
    cfg = make_config(tmp_path)
    store_with(cfg, [])
    r = publish(cfg, now=NOW)
    out = cfg.feeds.output
    assert (out / "index.html").exists() and (out / "feeds.opml").exists()
    for key in ("en", "zh", "all"):
        assert feedparser.parse((out / f"feeds/{key}/atom.xml").read_bytes()).bozo == 0
    assert publish(cfg, now=NOW).written == [] and r.written
