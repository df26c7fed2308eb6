"""The publish after a few new stories, planned from the last plan state, equals a full plan.

`publishing._publish_new` reads only the index shards that changed and updates the last
publish's selections (digest.publish.keys.advance); every other change falls back to the
full plan. Either way the tree, the manifest's build keys and the next state must be exactly
what a publish from scratch of the same store makes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from digest.pipeline import publishing
from digest.pipeline.publishing import publish
from digest.publish.tree import STATE, manifest_entries
from digest.store import Store
from tests.support.publish import NOW, TAGS, corpus, story

COLUMNS = ("ids", "shard", "hash", "pub", "upd", "kind", "lg")






@pytest.fixture
def planned(monkeypatch):
    """What each publish's `advance` returned: True when the state planned it."""
    seen: list[bool] = []
    real = publishing.advance

    def spy(*a, **k):
        step = real(*a, **k)
        seen.append(step is not None)
        return step
    monkeypatch.setattr(publishing, "advance", spy)
    return seen


def served(out) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and not any(x.startswith(".") for x in p.relative_to(out).parts)}


def state_of(out) -> dict:
    s = json.loads((out / STATE).read_bytes())
    rows = {i: tuple(s[c][n] for c in COLUMNS) for n, i in enumerate(s["ids"])}
    return {**{k: v for k, v in s.items() if k not in (*COLUMNS, "token")}, "rows": rows}


def same_as_from_scratch(cfg, now) -> None:
    """The tree, build keys and state of `cfg`'s output equal a first publish elsewhere."""
    scratch = replace(cfg, feeds=replace(cfg.feeds, output=cfg.feeds.output.parent / "scratch"))
    publish(scratch, now=now)
    a, b = cfg.feeds.output, scratch.feeds.output
    got, want = served(a), served(b)
    assert sorted(got) == sorted(want)
    assert [rel for rel in want if got[rel] != want[rel]] == []
    keys = [{rel: e and e.key for rel, e in manifest_entries(out).items()} for out in (a, b)]
    assert keys[0] == keys[1]
    assert state_of(a) == state_of(b)


NEW = {"hot": 99, "quality": 99, "impact": 99}
CHANGES = {
    # kind: (the stories to store, whether the state can plan it)
    "one new top story": (lambda st: [story("new001", langs=("en",), tags=("chips",),
                                            hours_ago=0.1, scores=NEW)], True),
    "two new stories, one low": (lambda st: [
        story("new001", langs=("zh-Hans",), tags=("安全", "policy"), hours_ago=0.2, scores=NEW),
        story("new002", langs=("en", "zh-Hant"), tags=("Agent",), hours_ago=60,
              scores={"hot": 1, "quality": 1, "impact": 1})], True),
    "a new story with the same tag twice": (lambda st: [
        story("new001", tags=("chips", "chips"), hours_ago=0.3, scores=NEW)], True),
    "a new tag": (lambda st: [story("new001", tags=("brand new",), hours_ago=0.1)], False),
    "a tag in another case": (lambda st: [story("new001", tags=("CHIPS",), hours_ago=0.1)], False),
    "a story older than its tag's first": (lambda st: [
        story("new001", tags=("chips",), hours_ago=500)], False),
    "a feed time tie": (lambda st: [replace(story("new001", tags=("chips",), hours_ago=0.1),
                                            updated=st.get_story("s002").updated)], False),
    "an edited story": (lambda st: [replace(st.get_story("s001"), title={
        c: "Edited" for c in st.get_story("s001").languages})], False),
    "new times for the same text": (lambda st: [replace(
        st.get_story("s001"), updated=st.get_story("s001").updated + timedelta(minutes=7))],
        False),
    "a story in the future": (lambda st: [story("new001", tags=("chips",), hours_ago=-2)], False),
}


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_each_change_matches_a_publish_from_scratch(site, planned, kind):
    cfg, st = site
    publish(cfg, now=NOW)
    stories, by_state = CHANGES[kind]
    new = stories(st)
    st.upsert_stories(new, force=[s.id for s in new])  # force: new times, same text
    r = publish(cfg, now=NOW)
    assert r.written
    assert planned == [by_state]
    same_as_from_scratch(cfg, NOW)


def test_many_new_stories_one_by_one(site, planned):
    cfg, st = site
    publish(cfg, now=NOW)
    for i in range(12):
        st.upsert_stories([story(f"new{i:03d}", langs=(("en",), ("zh-Hans",))[i % 2],
                                 tags=(TAGS[i % 3],), hours_ago=0.05 * (i + 1),
                                 scores={"hot": 30 + 6 * i, "quality": 70, "impact": 50})])
        publish(cfg, now=NOW + timedelta(minutes=i))
    assert planned == [True] * 12
    same_as_from_scratch(cfg, NOW + timedelta(minutes=11))


def test_unread_pages_are_repaired_by_the_next_publish_with_nothing_new(site, planned):
    cfg, st = site
    publish(cfg, now=NOW)
    page = cfg.feeds.output / "stories/s030.html"
    page.unlink()
    st.upsert_stories(CHANGES["one new top story"][0](st))
    r = publish(cfg, now=NOW)
    # Planned from the state: the other story pages are trusted, not even statted.
    assert planned == [True] and not page.exists() and "stories/s030.html" not in r.written
    r = publish(cfg, now=NOW)  # nothing new: every file is statted
    assert page.exists() and r.written == ["stories/s030.html"]
    same_as_from_scratch(cfg, NOW)


@pytest.mark.parametrize("damage", ["torn", "foreign", "missing"])
def test_a_bad_state_means_a_full_plan(site, planned, damage):
    cfg, st = site
    publish(cfg, now=NOW)
    path = cfg.feeds.output / STATE
    if damage == "torn":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "foreign":  # valid, but another manifest's (a copy, a killed run)
        data = json.loads(path.read_bytes())
        data["token"] = "0" * 16
        path.write_text(json.dumps(data))
    else:
        path.unlink()
    (cfg.feeds.output / "stories/s030.html").unlink()
    st.upsert_stories(CHANGES["one new top story"][0](st))
    r = publish(cfg, now=NOW)
    assert planned == [] and "stories/s030.html" in r.written  # the full plan statted all
    same_as_from_scratch(cfg, NOW)


def test_a_publish_without_index_shards_keeps_no_state(site, monkeypatch):
    """A store without `index_stats` (PostgreSQL) always plans in full, and leaves no state
    that a later embedded publish could mistake for its own."""
    cfg, st = site
    publish(cfg, now=NOW)
    assert (cfg.feeds.output / STATE).exists()
    monkeypatch.delattr(Store, "index_stats")
    st.upsert_stories(CHANGES["one new top story"][0](st))
    publish(cfg, now=NOW)
    assert not (cfg.feeds.output / STATE).exists()


def test_index_stats_and_shard_records(tmp_path):
    st = Store(tmp_path / "store")
    st.upsert_stories(corpus(20))
    before = st.index_stats()
    assert sum(len(v) for v in st.shard_records(before).values()) == 20
    st.upsert_stories([story("new001")])
    after = st.index_stats()
    changed = [n for n in after if after[n] != before.get(n)]
    assert changed == [st.shard_name("new001")]
    (recs,) = st.shard_records(changed).values()
    assert "new001" in {r["id"] for r in recs} and all("hash" in r for r in recs)


def test_the_websub_queue_key_is_the_one_websub_keeps():
    from digest.pipeline import websub

    assert publishing.WEBSUB_PENDING == websub.PENDING
