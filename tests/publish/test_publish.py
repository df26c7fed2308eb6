"""Publishing end to end: store → files; no-op republish, minimal rewrites, pruning, golden
files from the seeds, and the atomic compare-then-replace writer."""

from __future__ import annotations

import errno
import json
from dataclasses import replace

import feedparser
import pytest
from jinja2 import ChoiceLoader, DictLoader

from digest.errors import DigestError, StoreError
from digest.pipeline.publishing import publish, rank_stories
from digest.publish import tree as output
from digest.publish.plan import build_files, format_ranked
from digest.publish.site import environment
from digest.publish.tree import MANIFEST, SHARDS, STATE, manifest_entries, shard_of
from tests.support.publish import NOW, make_config, mtimes, seed_stories, store_with, story

# --- the writer, as publish drives it ------------------------------------------------------


def test_publish_writes_then_prunes_only_its_own_files(seeded):
    cfg, st = seeded
    out = cfg.feeds.output
    first = publish(cfg, now=NOW)
    assert list(manifest_entries(out)) == sorted(first.written)
    assert oct((out / "index.html").stat().st_mode & 0o777) == "0o644"
    (out / "mine.txt").write_bytes(b"not digest's")  # a file digest never wrote
    holders = [s for s in st.get_stories([x.id for x in st.list_stories()]) if "Agent" in s.tags]
    st.upsert_stories([replace(s, tags=[t for t in s.tags if t != "Agent"]) for s in holders])
    r = publish(cfg, now=NOW)
    assert "feeds/tags/agent/atom.xml" in r.removed
    assert not (out / "feeds/tags/agent").exists()  # emptied directory removed
    assert (out / "mine.txt").read_bytes() == b"not digest's"
    assert list(manifest_entries(out)) == sorted(r.written + r.unchanged)
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", MANIFEST, "", ".digest-tmp/x"])
def test_tree_refuses_paths_outside(tmp_path, bad):
    with output.open_tree(tmp_path / "out") as tree, pytest.raises(ValueError):
        tree.stage(bad, b"x")


def test_publish_ignores_a_tampered_manifest(seeded, tmp_path):
    cfg, _ = seeded
    out = cfg.feeds.output
    out.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / MANIFEST).write_text(json.dumps({"files": ["../victim.txt", "/etc/hostname"]}))
    publish(cfg, now=NOW)
    assert victim.read_text() == "keep"


def test_disk_full_leaves_old_files(seeded, monkeypatch):
    cfg, st = seeded
    out = cfg.feeds.output
    publish(cfg, now=NOW)
    before = {p: (out / p).read_bytes() for p in list(manifest_entries(out))}
    manifest = (out / MANIFEST).read_bytes()
    st.upsert_stories([story("zzfresh00000001", hours_ago=0.5)])  # index, feeds, a page change
    real = output.Tree._stage_one
    calls = []

    def full_after_one(tree, data):
        calls.append(len(data))
        if len(calls) > 1:  # the second staged file hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tree, data)

    # Tree.stage writes each changed file's temp copy here, in publish and in page workers.
    monkeypatch.setattr(output.Tree, "_stage_one", full_after_one)
    with pytest.raises(StoreError) as e:
        publish(cfg, now=NOW)
    assert "disk full" in e.value.message and "no published file was replaced" in e.value.message
    assert e.value.hint
    assert {p: (out / p).read_bytes() for p in before} == before
    assert (out / MANIFEST).read_bytes() == manifest
    assert not (out / "stories/zzfresh00000001.html").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    monkeypatch.setattr(output.Tree, "_stage_one", real)  # space freed: the rerun completes
    assert "stories/zzfresh00000001.html" in publish(cfg, now=NOW).written


def test_unwritable_output_is_a_digest_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = make_config(tmp_path)
    cfg = replace(cfg, feeds=replace(cfg.feeds, output=blocker / "out"))
    store_with(cfg, [story("s0001")])
    with pytest.raises(DigestError) as e:
        publish(cfg, now=NOW)
    assert str(blocker) in e.value.message and "digest publish" in e.value.hint


# --- golden files from the seeds -----------------------------------------------------------


def test_golden_seed_site(tmp_path, golden):
    cfg = make_config(tmp_path, **{"安全": "security"})
    # The subscribe form belongs to the web area; pin it so its changes do not churn these.
    env = environment()
    env.loader = ChoiceLoader([DictLoader({"_subscribe.html": '<section id="subscribe"></section>\n'}),
                               env.loader])
    files, _ = build_files(cfg, seed_stories(), NOW, env=env)
    golden.check("publish", files)


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
    # Everything else keeps its mtime (the manifest gained the new page's path; the plan
    # state its row). Of the manifest's shards only those listing a changed file are new.
    shards = {p for p in before if p.startswith(SHARDS + "/")}
    assert all(after[p] == before[p] for p in before
               if p not in changed | {MANIFEST, STATE} | shards)
    touched = {shard_of(p) for p in changed}
    assert 0 < len(shards - set(after)) <= len(touched) < len(shards)
    assert manifest_entries(cfg.feeds.output).keys() == \
        {p for p in before if not p.startswith(".")} | {"stories/zzfresh00000001.html"}
    top = feedparser.parse((cfg.feeds.output / "feeds/en/atom.xml").read_bytes()).entries[0]
    assert top.id == "urn:digest:story:zzfresh00000001:en"


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
