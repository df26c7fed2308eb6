"""Store: subscribers (keyed by lowercased email) and the delivery journal."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime

import pytest

from digest.errors import StoreError
from digest.models import Subscriber
from digest.store import Store


def rec(edition: str, email: str = "a@example.com", state: str = "sent", stories=("s1",)):
    return {"digest": "daily", "edition": edition, "email": email, "state": state,
            "message_id": f"<{edition}@x>", "stories": list(stories),
            "at": "2026-11-22T07:00:00Z", "reason": ""}


def test_subscriber_crud(store, tmp_path):
    added = store.add_subscriber(Subscriber(email=" Ann@Example.com ", tags=["AI"]))
    assert added.email == "ann@example.com"
    with pytest.raises(StoreError, match="already exists"):
        store.add_subscriber(Subscriber(email="ANN@example.com"))
    got = store.get_subscriber("ANN@EXAMPLE.COM")
    assert got is not None and got.tags == ["AI"] and got.status == "pending"
    when = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    upd = store.update_subscriber("ann@example.com", status="active", confirmed=when)
    assert upd.status == "active"
    again = Store(tmp_path / "store").get_subscriber("ann@example.com")
    assert again.status == "active" and again.confirmed == when
    with pytest.raises(StoreError):
        store.update_subscriber("nobody@example.com", status="active")
    with pytest.raises(StoreError):
        store.update_subscriber("ann@example.com", colour="blue")
    store.add_subscriber(Subscriber(email="bob@example.com", status="active"))
    assert [s.email for s in store.list_subscribers("active")] == ["ann@example.com",
                                                                  "bob@example.com"]
    assert store.remove_subscriber("Bob@example.com") is True
    assert store.remove_subscriber("bob@example.com") is False
    assert [s.email for s in Store(tmp_path / "store").list_subscribers()] == ["ann@example.com"]


def test_upsert_subscribers_keeps_created(store, tmp_path):
    first = Subscriber(email="a@example.com", created=datetime(2026, 1, 1, tzinfo=UTC))
    assert store.upsert_subscribers([first, Subscriber(email="b@example.com")]) == (2, 0)
    assert store.upsert_subscribers([Subscriber(email="A@example.com", tags=["x"]),
                                     Subscriber(email="c@example.com")]) == (1, 1)
    a = Store(tmp_path / "store").get_subscriber("a@example.com")
    assert a.tags == ["x"] and a.created == first.created


def test_upsert_100k_subscribers(store, tmp_path):
    subs = [Subscriber(email=f"user{i}@example.com", status="active") for i in range(100_000)]
    assert store.upsert_subscribers(subs) == (100_000, 0)
    changed = [Subscriber(email=f"USER{i}@example.com", status="active", tags=["ai"])
               for i in range(0, 100_000, 10)]
    assert store.upsert_subscribers(changed + subs[:5]) == (0, 10_000)
    fresh = Store(tmp_path / "store")
    assert len(fresh.list_subscribers()) == 100_000
    assert fresh.get_subscriber("user99990@example.com").tags == ["ai"]


def test_journal_state_and_sent_ids(store, tmp_path):
    j = store.journal
    assert j.state("daily", "2026-11-22", "a@example.com") is None
    j.append([rec("2026-11-22", state="sending", stories=["s1", "s2"])])
    assert j.state("daily", "2026-11-22", "A@example.com")["state"] == "sending"
    assert j.sent_story_ids("a@example.com") == frozenset()
    j.append([rec("2026-11-22", stories=["s1", "s2"]), rec("2026-11-22", email="b@example.com")])
    assert j.state("daily", "2026-11-22", "a@example.com")["state"] == "sent"
    assert j.sent_story_ids("a@example.com") == {"s1", "s2"}
    # Another process's appends are picked up incrementally.
    Store(tmp_path / "store").journal.append([rec("2026-11-23", stories=["s3"])])
    assert j.sent_story_ids("a@example.com") == {"s1", "s2", "s3"}
    assert j.state("daily", "2026-11-23", "a@example.com")["state"] == "sent"
    assert len(list(j.records())) == 4
    with pytest.raises(StoreError):
        j.append([{"digest": "daily"}])


def segment(tmp_path):
    """Today's journal segment (journal/log-YYYY-MM-DD.jsonl; digest/store/journal.py)."""
    from datetime import UTC, datetime

    return tmp_path / "store" / "journal" / f"log-{datetime.now(UTC):%Y-%m-%d}.jsonl"


def test_journal_torn_last_line(store, tmp_path):
    path = segment(tmp_path)
    store.journal.append([rec("e1"), rec("e2")])
    with open(path, "ab") as f:  # what a kill mid-append leaves
        f.write(b'{"digest":"daily","edition":"e3","email":"a@exa')
    fresh = Store(tmp_path / "store")
    assert [r["edition"] for r in fresh.journal.records()] == ["e1", "e2"]
    assert fresh.journal.state("daily", "e3", "a@example.com") is None
    assert fresh.journal.state("daily", "e2", "a@example.com") is not None
    fresh.journal.append([rec("e4", stories=["s9"])])  # the torn tail is cut, not glued on
    assert path.read_bytes().count(b"\n") == 3
    assert [r["edition"] for r in Store(tmp_path / "store").journal.records()] == ["e1", "e2", "e4"]
    assert fresh.journal.sent_story_ids("a@example.com") == {"s1", "s9"}


def test_journal_corrupt_middle_line_names_it(store, tmp_path):
    store.journal.append([rec("e1")])
    path = segment(tmp_path)
    with open(path, "ab") as f:
        f.write(b"garbage\n")
    store.journal.append([rec("e2")])
    with pytest.raises(StoreError, match=r"log-[0-9-]+\.jsonl:2"):
        Store(tmp_path / "store").journal.state("daily", "e2", "a@example.com")


def test_journal_disk_full_leaves_no_partial_batch(store, tmp_path, monkeypatch):
    path = segment(tmp_path)
    store.journal.append([rec("e1")])
    before = path.read_bytes()
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="disk full"):
        store.journal.append([rec("e2"), rec("e3")])
    monkeypatch.setattr(os, "fsync", real)
    assert path.read_bytes() == before
    assert store.journal.state("daily", "e2", "a@example.com") is None
