"""The web's subscribe does the same store work for a stored and an unknown address (no
enumeration by timing), and drops expired pending subscriptions it comes across."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest import codec
from digest.config import Config
from digest.config.settings import StoreConfig
from digest.models import Subscriber
from digest.pipeline.subscribing import Subscriptions
from digest.store import Store
from digest.store.storage import AtomicJSONStorage
from digest.store.subscribers import shard_of

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture
def subs(tmp_path):
    store = Store(tmp_path / "store")
    store.upsert_subscribers(
        [Subscriber(email=f"user{i}@example.com", status="active", created=NOW - timedelta(days=30))
         for i in range(1000)]
        + [Subscriber(email=f"wait{i}@example.com", created=NOW - timedelta(days=1))
           for i in range(50)])
    return Subscriptions(Config(store=StoreConfig(path=tmp_path / "store")))


def work(monkeypatch, call) -> dict[str, int]:
    """Shard files read and written by `call()`."""
    counts = {"read": 0, "write": 0}
    real_flush, real_loads = AtomicJSONStorage.flush, codec.loads

    def flush(self):
        counts["write"] += self.dirty
        real_flush(self)

    def loads(raw):
        counts["read"] += 1
        return real_loads(raw)
    monkeypatch.setattr(AtomicJSONStorage, "flush", flush)
    monkeypatch.setattr(codec, "loads", loads)
    try:
        call()
    finally:
        monkeypatch.setattr(AtomicJSONStorage, "flush", real_flush)
        monkeypatch.setattr(codec, "loads", real_loads)
    return counts


def new(email: str) -> Subscriber:
    return Subscriber(email=email, languages=["zh"], created=NOW)


def test_known_and_unknown_addresses_cost_the_same(subs, monkeypatch):
    subs.subscribe(new("warmup@example.com"))  # the handle opens the store once
    cases = {"active": "user7@example.com", "pending": "wait3@example.com",
             "unknown": "nobody@example.com"}
    got = {k: work(monkeypatch, lambda e=e: subs.subscribe(new(e))) for k, e in cases.items()}
    assert got["active"] == got["unknown"] == got["pending"], got
    assert got["unknown"]["write"] == 1  # one shard file, whatever the address
    store = Store(subs.config.store.path)
    assert store.get_subscriber("user7@example.com").languages == ["en", "zh"]  # active: kept
    assert store.get_subscriber("nobody@example.com").status == "pending"
    assert store.get_subscriber("wait3@example.com").languages == ["zh"]


def test_cold_handles_cost_the_same(subs, monkeypatch):
    """A first request after start (nothing cached) too."""
    cfg = subs.config
    known = work(monkeypatch, lambda: Subscriptions(cfg).subscribe(new("user8@example.com")))
    unknown = work(monkeypatch, lambda: Subscriptions(cfg).subscribe(new("x@example.com")))
    assert known == unknown, (known, unknown)


def test_subscribe_drops_expired_pending_in_its_shard(subs):
    store = Store(subs.config.store.path)
    store.add_subscriber(Subscriber(email="stale@example.com", created=NOW - timedelta(days=8)))
    sub = subs.subscribe(new("stale@example.com"))  # expired: treated as a new request
    assert sub.status == "pending" and sub.created == NOW
    assert subs.config.web.pending_days == 7
    store.add_subscriber(Subscriber(email="old@example.com", created=NOW - timedelta(days=9)))
    n = store._subscribers.nshards
    same = next(f"s{i}@example.com" for i in range(10_000)
                if shard_of(f"s{i}@example.com", n) == shard_of("old@example.com", n))
    subs.subscribe(new(same))
    assert Store(subs.config.store.path).get_subscriber("old@example.com") is None
    assert len(Store(subs.config.store.path).list_subscribers("pending")) == 50 + 2  # stale (asked again) and the new one
