"""Store: story upsert semantics, layout, reload, rollback, corruption, disk full, schema."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import orjson
import pytest

from digest.config import StoreConfig
from digest.errors import StoreError
from digest.models import Subscriber
from digest.store import SCHEMA_VERSION, Journal, Store, StoreBackend, open_store
from tests.support.store import make_story


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and directory under root with (inode, mtime_ns, size)."""
    out = {}
    for p in [root, *root.rglob("*")]:
        st = p.stat()
        out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def test_fresh_store_created_with_schema(tmp_path):
    store = Store(tmp_path / "a" / "b" / "store")
    assert (tmp_path / "a/b/store/stories.json").exists()
    assert store.meta_get("schema_version") == SCHEMA_VERSION
    assert store.story_count() == 0 and store.list_stories() == []
    assert store.get_story("nope") is None


def test_upsert_added_updated_unchanged(store, tmp_path):
    a, b = make_story(1), make_story(2)
    assert store.upsert_stories([a, b]) == [(a.id, "added"), (b.id, "added")]
    assert store.get_story(a.id) == a
    assert store.get_stories([b.id, "missing", a.id]) == [b, a]
    a2 = make_story(1, rev=1)
    assert store.upsert_stories([a2, b]) == [(a.id, "updated"), (b.id, "unchanged")]
    assert store.get_story(a.id) == a2
    assert store.story_count() == 2
    # A fresh instance (another process) sees the same.
    again = Store(tmp_path / "store")
    assert again.get_story(a.id) == a2 and again.story_count() == 2


def test_same_id_twice_in_one_batch(store):
    a, a1 = make_story(1), make_story(1, rev=1)
    assert store.upsert_stories([a, a, a1]) == [(a.id, "added"), (a.id, "unchanged"),
                                                (a.id, "updated")]
    assert store.story_count() == 1 and store.get_story(a.id) == a1


def test_list_stories_is_the_index_without_bodies(store, tmp_path):
    stories = [make_story(i) for i in range(50)]
    store.upsert_stories(stories)
    listed = store.list_stories()
    assert [s.id for s in listed] == sorted(s.id for s in stories)
    s = listed[0]
    full = store.get_story(s.id)
    assert s.summary_dict() == full.summary_dict() and s.summary == full.summary
    assert s.analysis == {} and s.faq == {} and full.analysis != {}
    # The index record holds no body text: the hot files stay small.
    index_bytes = b"".join(p.read_bytes() for p in (tmp_path / "store/index").glob("*.json"))
    assert b"analysis" not in index_bytes and b"faq" not in index_bytes


def test_times_alone_do_not_make_an_update(store):
    a = make_story(1)
    store.upsert_stories([a])
    later = make_story(1)
    later.published = later.published.replace(hour=9)
    assert store.upsert_stories([later]) == [(a.id, "unchanged")]


def test_unchanged_upsert_touches_no_file(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    stories = [make_story(i) for i in range(40)]
    store.upsert_stories(stories)
    store.upsert_subscribers([Subscriber(email="a@example.com")])
    before = snapshot(root)
    assert {s for _, s in store.upsert_stories(stories)} == {"unchanged"}
    assert Store(root).upsert_stories(stories[:5])[0][1] == "unchanged"
    sub = store.get_subscriber("a@example.com")
    assert store.upsert_subscribers([sub]) == (0, 0)
    assert snapshot(root) == before


def test_untrusted_ids_stay_inside_the_store(store, tmp_path):
    evil = make_story(1)
    evil.id = "../../escape/x"
    store.upsert_stories([evil])
    assert not (tmp_path / "escape").exists()
    assert store.body_path(evil.id).resolve().is_relative_to((tmp_path / "store").resolve())
    assert store.get_story(evil.id) == evil


def test_reads_and_writes_see_another_writers_commit(tmp_path):
    one, two = Store(tmp_path / "store"), Store(tmp_path / "store")
    one.upsert_stories([make_story(1)])
    assert one.story_count() == 1  # loads the caches of `one`
    two.upsert_stories([make_story(i) for i in range(2, 30)])  # same shards, other "process"
    assert one.story_count() == 29  # a read outside a transaction reloads
    one.upsert_stories([make_story(30)])  # must not reuse doc ids or drop two's stories
    assert Store(tmp_path / "store").story_count() == 30
    one.add_subscriber(Subscriber(email="a@example.com"))
    two.add_subscriber(Subscriber(email="b@example.com"))
    one.add_subscriber(Subscriber(email="c@example.com"))
    assert [s.email for s in Store(tmp_path / "store").list_subscribers()] == [
        "a@example.com", "b@example.com", "c@example.com"]


def test_transaction_batches_and_rolls_back(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    store.upsert_stories([make_story(0)])
    before = snapshot(root)
    with pytest.raises(RuntimeError), store.transaction():
        store.upsert_stories([make_story(1)])
        store.meta_set("k", 1)
        assert store.get_story(make_story(1).id) is not None  # visible inside
        raise RuntimeError("boom")
    assert snapshot(root) == before
    assert store.get_story(make_story(1).id) is None and store.meta_get("k") is None
    with store.transaction():  # nested transactions write once, at the outer exit
        with store.transaction():
            store.upsert_stories([make_story(2)])
        assert Store(root).story_count() == 1  # not yet on disk
        store.meta_set("k", 2)
    assert Store(root).story_count() == 2 and Store(root).meta_get("k") == 2


def test_meta_and_quarantine(store, tmp_path):
    store.meta_set("last_publish", "2026-11-22T12:00:00Z")
    assert Store(tmp_path / "store").meta_get("last_publish") == "2026-11-22T12:00:00Z"
    assert store.meta_get("absent", 7) == 7
    assert store.quarantine_get("seeds/bad.txt") is None
    store.quarantine_put("seeds/bad.txt", "abc", "bad.txt:3: score is not a number")
    store.quarantine_put("seeds/bad.txt", "abd", "changed")
    assert Store(tmp_path / "store").quarantine_get("seeds/bad.txt") == {
        "path": "seeds/bad.txt", "fingerprint": "abd", "reason": "changed"}
    store.quarantine_clear("seeds/bad.txt")
    assert store.quarantine_get("seeds/bad.txt") is None


@pytest.mark.parametrize("victim", ["stories.json", "subscribers.json", "index"])
def test_corrupt_file_raises_naming_it_and_is_kept(tmp_path, victim):
    root = tmp_path / "store"
    store = Store(root)
    store.upsert_stories([make_story(i) for i in range(40)])
    store.add_subscriber(Subscriber(email="a@example.com"))
    path = root / victim if victim != "index" else sorted((root / "index").glob("*.json"))[0]
    path.write_bytes(b'{"stories": {"1": {"id": "x", "tit')
    with pytest.raises(StoreError) as e:
        s = Store(root)
        s.list_stories()
        s.list_subscribers()
    assert path.name in str(e.value) and e.value.hint
    assert path.read_bytes() == b'{"stories": {"1": {"id": "x", "tit'  # never reset


def test_newer_schema_refused(tmp_path):
    root = tmp_path / "store"
    Store(root).meta_set("schema_version", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer"):
        Store(root)


def test_stale_temp_files_are_removed(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    (root / ".tmp" / "stories.json.123.deadbeef.tmp").write_bytes(b'{"half')
    store.upsert_stories([make_story(1)])
    assert list((root / ".tmp").iterdir()) == []
    assert Store(root).story_count() == 1


def _fail_on(monkeypatch, name: str, after: int = 0):
    """Make os.<name> raise ENOSPC after `after` successful calls."""
    real = getattr(os, name)
    calls = {"n": 0}

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)
    monkeypatch.setattr(os, name, failing)


@pytest.mark.parametrize("name,after", [("fsync", 0), ("write", 0), ("fsync", 3), ("replace", 1)])
def test_disk_full_keeps_the_old_files(tmp_path, monkeypatch, name, after):
    root = tmp_path / "store"
    store = Store(root)
    store.upsert_stories([make_story(i) for i in range(3)])
    before = {p: p.read_bytes() for p in root.rglob("*.json")}
    with monkeypatch.context() as m:
        _fail_on(m, name, after)
        with pytest.raises(StoreError) as e:
            store.upsert_stories([make_story(i, rev=1) for i in range(3)] + [make_story(9)])
    assert "disk full" in str(e.value) and "intact" in e.value.hint
    for p, data in before.items():  # every index file still holds the old data
        if "bodies" in p.parts:  # a body is whole: the old or the new version (healed by
            assert orjson.loads(p.read_bytes())["title"]["en"] in (  # the next ingest)
                make_story(int(p.stem[1:], 16)).title["en"],
                make_story(int(p.stem[1:], 16), rev=1).title["en"])
        else:
            assert p.read_bytes() == data
    reopened = Store(root)
    assert reopened.story_count() in (3, 4)  # one shard may have committed before the fault
    assert {reopened.get_story(make_story(i).id) is not None for i in range(3)} == {True}
    # After the disk is freed the same upsert goes through.
    assert store.upsert_stories([make_story(9)])[0][1] in ("added", "unchanged")
    assert Store(root).get_story(make_story(9).id) == make_story(9)
    assert list((root / ".tmp").iterdir()) == []


def test_files_without_a_schema_version_are_refused_untouched(tmp_path):
    """No digest wrote a store without meta.schema_version: such files are not ours to rewrite."""
    root = tmp_path / "store"
    root.mkdir()
    foreign = orjson.dumps({"stories": {"1": make_story(1).to_dict()}})
    (root / "stories.json").write_bytes(foreign)
    with pytest.raises(StoreError, match="no schema_version") as e:
        Store(root)
    assert e.value.hint
    assert (root / "stories.json").read_bytes() == foreign


def test_the_embedded_store_implements_the_interface(tmp_path):
    store = open_store(StoreConfig(path=tmp_path / "store"))
    assert isinstance(store, Store) and isinstance(store, StoreBackend)
    assert isinstance(store.journal, Journal)
    assert open_store(tmp_path / "store").story_count() == 0


def test_text_that_is_not_unicode_is_refused_cleanly(store, tmp_path):
    bad = make_story(1)
    bad.title["en"] = "broken \ud800 surrogate"
    with pytest.raises(StoreError, match=bad.id):
        store.upsert_stories([make_story(2), bad])
    assert store.story_count() == 0 and Store(tmp_path / "store").story_count() == 0
