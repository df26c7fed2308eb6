"""`story_count` (every `digest check`) from recorded per-shard counts, exact whatever the cache."""

from __future__ import annotations

import os

from digest.store import Store
from digest.store.embedded import COUNTS_FILE
from tests.support.store import make_story


def _loaded(store: Store) -> list[int]:
    """Index shards whose records this Store object has parsed."""
    return [n for n, s in store._shards.items() if s._data is not None]


def _filled(path, n: int = 40) -> None:
    store = Store(path)
    store.upsert_stories([make_story(i) for i in range(n)])
    store.upsert_stories([make_story(i) for i in range(n, n + 5)])  # a second commit


def test_count_comes_from_the_recorded_counts_without_parsing_shards(tmp_path):
    _filled(tmp_path / "s")
    fresh = Store(tmp_path / "s")
    assert fresh.story_count() == 45
    assert _loaded(fresh) == []  # a stat per shard, no shard parsed
    assert (tmp_path / "s" / COUNTS_FILE).is_file()


def test_a_shard_changed_behind_the_cache_is_recounted(tmp_path):
    _filled(tmp_path / "s")
    store = Store(tmp_path / "s")
    shard = store.shard_name(make_story(0).id)
    path = tmp_path / "s" / "index" / shard
    counts = (tmp_path / "s" / COUNTS_FILE).read_bytes()
    # another writer (or a kill between the shard and the cache) left one more story there
    other = Store(tmp_path / "s")
    extra = next(make_story(i) for i in range(1000, 2000)
                 if other.shard_name(make_story(i).id) == shard)
    other.upsert_stories([extra])
    (tmp_path / "s" / COUNTS_FILE).write_bytes(counts)  # the cache as before that write
    assert os.stat(path).st_size > 0
    fresh = Store(tmp_path / "s")
    assert fresh.story_count() == 46
    assert _loaded(fresh) == [int(shard[:-5], 16)]  # only the changed shard parsed


def test_missing_or_garbage_cache_still_counts_right(tmp_path):
    _filled(tmp_path / "s")
    cache = tmp_path / "s" / COUNTS_FILE
    for junk in (b"", b"not json", b"[1, 2]", b'{"00.json": "x", "01.json": [1, 2, 3]}'):
        cache.write_bytes(junk)
        assert Store(tmp_path / "s").story_count() == 45
    cache.unlink()
    assert Store(tmp_path / "s").story_count() == 45


def test_count_inside_a_transaction_sees_uncommitted_stories(tmp_path):
    _filled(tmp_path / "s")
    store = Store(tmp_path / "s")
    with store.transaction():
        store.upsert_stories([make_story(500)])
        assert store.story_count() == 46
    assert Store(tmp_path / "s").story_count() == 46


def test_counts_survive_a_copy_of_the_store(tmp_path):
    import shutil

    _filled(tmp_path / "s")
    shutil.copytree(tmp_path / "s", tmp_path / "copy")  # new inodes, same mtimes (copy2)
    fresh = Store(tmp_path / "copy")
    assert fresh.story_count() == 45
    assert _loaded(fresh) == []
