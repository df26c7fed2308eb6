"""Subscriber shards: one change rewrites one shard, streaming in email order, pending expiry,
and the crash-safe upgrade from the single subscribers.json of schema 1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest import codec
from digest.errors import StoreError
from digest.models import Subscriber
from digest.store import SCHEMA_VERSION, Store
from digest.store.storage import AtomicJSONStorage
from digest.store.subscribers import SubscriberTable, shard_of

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def writes(monkeypatch):
    """Paths (relative to the store) of every file a commit rewrites, in order."""
    seen: list[str] = []
    real = AtomicJSONStorage.flush

    def flush(self):
        if self.dirty:
            seen.append(f"{self.path.parent.name}/{self.path.name}")
        real(self)
    monkeypatch.setattr(AtomicJSONStorage, "flush", flush)
    return seen


def many(n: int, status: str = "active") -> list[Subscriber]:
    return [Subscriber(email=f"user{i}@example.com", status=status, created=T0) for i in range(n)]


def test_one_change_rewrites_one_shard(store, writes):
    store.upsert_subscribers(many(2000))
    files = {p.name for p in (store.path / "subscribers").glob("*.json")}
    assert len(files) == store.meta_get("subscriber_shards") == 64
    writes.clear()
    store.add_subscriber(Subscriber(email="new@example.com"))
    store.update_subscriber("user5@example.com", tags=["ai"])
    store.remove_subscriber("user6@example.com")
    n = store._subscribers.nshards
    assert writes == [f"subscribers/{shard_of(e, n):02x}.json" for e in
                      ("new@example.com", "user5@example.com", "user6@example.com")]
    fresh = Store(store.path)
    assert fresh.get_subscriber("user5@example.com").tags == ["ai"]
    assert fresh.get_subscriber("user6@example.com") is None
    assert fresh.get_subscriber("NEW@example.com") is not None


def test_iter_subscribers_streams_in_email_order(store):
    subs = many(300) + [Subscriber(email=f"p{i}@example.com", created=T0) for i in range(20)]
    store.upsert_subscribers(subs)
    it = store.iter_subscribers("active")
    assert next(it).email == "user0@example.com"  # a generator, not a list
    active = [s.email for s in store.iter_subscribers("active")]
    assert active == sorted(f"user{i}@example.com" for i in range(300))
    every = [s.email for s in store.iter_subscribers()]
    assert every == sorted(s.email for s in subs)
    assert [s.email for s in store.list_subscribers()] == every
    assert [s.email for s in store.list_subscribers("pending")] == sorted(
        f"p{i}@example.com" for i in range(20))


def test_expire_pending(store, writes):
    old = [Subscriber(email=f"old{i}@example.com", created=T0) for i in range(30)]
    new = [Subscriber(email=f"new{i}@example.com", created=T0 + timedelta(days=8))
           for i in range(30)]
    kept = [Subscriber(email=f"act{i}@example.com", status="active", created=T0) for i in range(30)]
    store.upsert_subscribers(old + new + kept)
    cutoff = T0 + timedelta(days=1)
    # One address: only its shard is swept (and rewritten even when nothing expired there).
    writes.clear()
    n = store._subscribers.nshards
    assert store.expire_pending(cutoff, email="old3@example.com") == sum(
        shard_of(s.email, n) == shard_of("old3@example.com", n) for s in old)
    assert writes == [f"subscribers/{shard_of('old3@example.com', n):02x}.json"]
    assert store.get_subscriber("old3@example.com") is None
    writes.clear()
    assert store.expire_pending(cutoff, email="act1@example.com") >= 0
    assert len(writes) == 1
    # The whole store: the rest of the old pending rows, nothing else; no-op shards unwritten.
    left = len(store.list_subscribers("pending")) - 30
    assert store.expire_pending(cutoff) == left
    assert {s.email for s in Store(store.path).list_subscribers()} == {
        s.email for s in new + kept}
    writes.clear()
    assert store.expire_pending(cutoff) == 0 and writes == []


def test_expire_pending_restores_a_suppressed_status(store, writes):
    """A re-subscribe nobody confirmed gets back the gone status it suppressed (the row is
    kept); a plain pending row is dropped; a fresh one stays."""
    rows = [Subscriber(email=f"{s}@example.com", created=T0, suppressed=s)
            for s in ("unsubscribed", "complained", "bounced")]
    rows += [Subscriber(email="plain@example.com", created=T0),
             Subscriber(email="fresh@example.com", created=T0 + timedelta(days=8),
                        suppressed="complained")]
    store.upsert_subscribers(rows)
    cutoff = T0 + timedelta(days=1)
    n = store._subscribers.nshards
    writes.clear()
    assert store.expire_pending(cutoff, email="complained@example.com") == sum(
        shard_of(s.email, n) == shard_of("complained@example.com", n) for s in rows[:4])
    assert writes == [f"subscribers/{shard_of('complained@example.com', n):02x}.json"]
    assert store.get_subscriber("complained@example.com").status == "complained"
    store.expire_pending(cutoff)
    again = Store(store.path)
    for s in ("unsubscribed", "complained", "bounced"):
        got = again.get_subscriber(f"{s}@example.com")
        assert (got.status, got.suppressed, got.created) == (s, "", T0)
    assert again.get_subscriber("plain@example.com") is None
    fresh = again.get_subscriber("fresh@example.com")
    assert (fresh.status, fresh.suppressed) == ("pending", "complained")
    assert again.list_subscribers("active") == []
    writes.clear()
    assert again.expire_pending(cutoff) == 0 and writes == []


def _legacy_store(root, rows: list[Subscriber]) -> None:
    """A schema-1 store as an older digest left it: every subscriber in subscribers.json."""
    s = Store(root)
    s.upsert_stories([])
    s.meta_set("schema_version", 1)
    for p in (root / "subscribers").glob("*.json"):
        p.unlink()
    (root / "subscribers").rmdir()
    docs = {str(i + 1): r.to_dict() for i, r in enumerate(rows)}
    (root / "subscribers.json").write_bytes(codec.dumps({"subscribers": docs}))


def _contents(store: Store) -> list[dict]:
    return [s.to_dict() for s in store.iter_subscribers()]


def test_upgrade_from_subscribers_json(tmp_path):
    root = tmp_path / "store"
    rows = many(500) + [Subscriber(email="p@example.com", created=T0)]
    _legacy_store(root, rows)
    store = Store(root)
    assert not (root / "subscribers.json").exists()
    assert store.meta_get("schema_version") == SCHEMA_VERSION
    assert _contents(store) == sorted((r.to_dict() for r in rows), key=lambda d: d["email"])
    assert len(list((root / "subscribers").glob("*.json"))) == 64
    store.add_subscriber(Subscriber(email="after@example.com"))
    assert len(Store(root).list_subscribers()) == 502


def test_upgrade_killed_mid_commit_is_redone(tmp_path, monkeypatch):
    root = tmp_path / "store"
    rows = many(400)
    _legacy_store(root, rows)
    real, done = AtomicJSONStorage.flush, []

    def dies(self):  # the kill: some shard files written, stories.json (the version) not
        if self.dirty and len(done) == 5:
            raise KeyboardInterrupt
        done.append(self.path)
        real(self)
    monkeypatch.setattr(AtomicJSONStorage, "flush", dies)
    with pytest.raises(KeyboardInterrupt):
        Store(root)
    monkeypatch.setattr(AtomicJSONStorage, "flush", real)
    assert (root / "subscribers.json").exists()
    store = Store(root)
    assert not (root / "subscribers.json").exists()
    assert _contents(store) == sorted((r.to_dict() for r in rows), key=lambda d: d["email"])


def test_upgrade_killed_before_the_old_file_is_removed(tmp_path, monkeypatch):
    root = tmp_path / "store"
    _legacy_store(root, many(100))
    monkeypatch.setattr(SubscriberTable, "remove_legacy", lambda self: None)
    Store(root)  # committed (schema is current), the old file still there
    monkeypatch.undo()
    assert (root / "subscribers.json").exists()
    # The old file wins while it exists: the shards are rebuilt from it, not merged.
    (root / "subscribers" / "00.json").write_bytes(b'{"subscribers": {}}')
    store = Store(root)
    assert not (root / "subscribers.json").exists()
    assert len(store.list_subscribers()) == 100
    assert store.meta_get("schema_version") == SCHEMA_VERSION


def test_corrupt_shard_is_named_and_kept(store):
    store.upsert_subscribers(many(100))
    n = store._subscribers.nshards
    path = store.path / "subscribers" / f"{shard_of('user1@example.com', n):02x}.json"
    path.write_bytes(b'{"subscribers": {"1": {"em')
    with pytest.raises(StoreError) as e:
        Store(store.path).get_subscriber("user1@example.com")
    assert path.name in str(e.value) and e.value.hint
    assert path.read_bytes() == b'{"subscribers": {"1": {"em'


def test_iterating_leaves_no_shard_cached(tmp_path):
    """A send's sweep of pending rows and its pass over every subscriber read the shards
    they do not hold for themselves: afterwards no shard's rows sit in the store's caches."""
    Store(tmp_path / "s").upsert_subscribers(many(500))
    store = Store(tmp_path / "s")
    assert store.expire_pending(T0 + timedelta(days=1)) == 0  # a send's sweep comes first
    emails = [s.email for s in store.iter_subscribers("active")]
    assert emails == sorted(f"user{i}@example.com" for i in range(500))
    cached = [s.path.name for s in store._subscribers.storages() if s.cached]
    assert cached == []
    assert store.get_subscriber("user7@example.com") is not None  # a lookup still caches
    assert [s.path.name for s in store._subscribers.storages() if s.cached] == \
        [f"{shard_of('user7@example.com', 64):02x}.json"]


def test_iterating_inside_a_transaction_sees_its_uncommitted_changes(store):
    store.upsert_subscribers(many(50))
    with store.transaction():
        store.add_subscriber(Subscriber(email="aaa@example.com", status="active", created=T0))
        store.update_subscriber("user3@example.com", status="unsubscribed")
        store.remove_subscriber("user4@example.com")
        active = [s.email for s in store.iter_subscribers("active")]
        assert active[0] == "aaa@example.com"
        assert "user3@example.com" not in active and "user4@example.com" not in active
        assert len(active) == 49
        assert [s.email for s in store.iter_subscribers("unsubscribed")] == ["user3@example.com"]
    fresh = Store(store.path)
    assert [s.email for s in fresh.iter_subscribers("active")] == active
