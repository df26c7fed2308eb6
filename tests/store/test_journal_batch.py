"""Batched journal reads (`states`, `sent_story_ids_many`): the send planner asks once per batch
of subscribers. Each answer must equal the one-key answer, on both backends, and the embedded
journal catches up with the log once per batched call, not once per key."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest import codec
from digest.store import Store, open_store
from digest.store import journal as journal_mod
from digest.store.journal_state import JournalState


def _history(seed: int) -> list[dict]:
    """Random records over 2 digests, 3 editions, 12 emails (mixed case), every state."""
    rnd = random.Random(seed)
    out = []
    for n in range(300):
        email = f"U{rnd.randrange(12)}@Example.org"
        email = email if rnd.random() < 0.5 else email.lower()
        state = rnd.choice(["sending", "sent", "sent", "failed", "bounced"])
        ids = sorted({f"s{rnd.randrange(40)}" for _ in range(rnd.randrange(1, 5))})
        out.append({"digest": rnd.choice(["daily", "weekly"]),
                    "edition": f"2026-11-{20 + rnd.randrange(3)}", "email": email,
                    "state": state, "message_id": f"<{n}@x>", "stories": ids,
                    "at": f"2026-11-22T08:{n // 60:02d}:{n % 60:02d}Z", "reason": "",
                    "attempt": 1})
    return out


@pytest.fixture(params=["embedded", "postgresql"])
def backend(request, tmp_path: Path) -> Iterator:
    if request.param == "embedded":
        yield Store(tmp_path / "store")
        return
    url = request.getfixturevalue("pg_url")
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_reads_equal_one_key_reads(backend, seed: int) -> None:
    records = _history(seed)
    for i in range(0, len(records), 37):  # appended in uneven batches
        backend.journal.append(records[i:i + 37])
    j = backend.journal
    rnd = random.Random(seed)
    emails = [f"u{k}@example.org" for k in range(14)]  # two never written
    keys = [(f"2026-11-{20 + rnd.randrange(4)}", rnd.choice(emails).upper()
             if rnd.random() < 0.3 else rnd.choice(emails)) for _ in range(60)]
    keys += keys[:5]  # a key asked twice gets the same answer twice
    for digest in ("daily", "weekly", "monthly"):
        assert j.states(digest, keys) == [j.state(digest, e, m) for e, m in keys]
        asked = [m for _, m in keys]
        assert j.sent_story_ids_many(asked, digest) == [j.sent_story_ids(m, digest)
                                                        for m in asked]
    assert j.sent_story_ids_many(emails) == [j.sent_story_ids(m) for m in emails]
    assert j.states("daily", []) == [] and j.sent_story_ids_many([], "daily") == []
    # Something was found (the comparison is not between two empty answers).
    assert any(j.states("daily", keys)) and any(j.sent_story_ids_many(emails))


def test_a_batched_state_is_the_callers_own(backend) -> None:
    backend.journal.append([{"digest": "daily", "edition": "e1", "email": "a@x.org",
                             "state": "sent", "stories": ["s1", "s2"], "at":
                             "2026-11-22T08:00:00Z"}])
    got = backend.journal.states("daily", [("e1", "a@x.org")])[0]
    got["stories"].append("mutated")
    got["state"] = "failed"
    again = backend.journal.state("daily", "e1", "a@x.org")
    assert again["stories"] == ["s1", "s2"] and again["state"] == "sent"
    assert backend.journal.sent_story_ids("a@x.org") == {"s1", "s2"}


def test_embedded_batched_reads_catch_up_once(tmp_path: Path, monkeypatch) -> None:
    store = Store(tmp_path / "store")
    store.journal.append(_history(4))
    listed = []
    real = journal_mod.live_segments
    monkeypatch.setattr(journal_mod, "live_segments", lambda root: listed.append(1) or real(root))
    keys = [("2026-11-21", f"u{k}@example.org") for k in range(100)]
    store.journal.states("daily", keys)
    store.journal.sent_story_ids_many([m for _, m in keys], "daily")
    assert len(listed) == 2  # one catch-up (one listing of the log) per call, not per key
    listed.clear()
    for _, m in keys[:10]:
        store.journal.sent_story_ids(m, "daily")
    assert len(listed) == 10


def test_batched_reads_see_another_writers_appends(tmp_path: Path) -> None:
    """Each batched call catches up: records another process appended since are seen."""
    reader, writer = Store(tmp_path / "store"), Store(tmp_path / "store")
    key = ("e1", "a@x.org")
    assert reader.journal.states("daily", [key]) == [None]
    writer.journal.append([{"digest": "daily", "edition": "e1", "email": "a@x.org",
                            "state": "sent", "stories": ["s9"], "at": "2026-11-22T08:00:00Z"}])
    assert reader.journal.states("daily", [key])[0]["state"] == "sent"
    assert reader.journal.sent_story_ids_many(["A@x.org"], "daily") == [{"s9"}]


def test_the_state_shares_repeated_values_but_answers_the_same() -> None:
    """Records applied to the state share story lists and repeated strings (memory at 100k
    subscribers), and the answers, the checkpoint and a reload are unchanged."""
    records = _history(5)
    st = JournalState()
    for r in records:
        st.apply(dict(r, stories=list(r["stories"])))
    lists = {id(r["stories"]) for r in st.records()}
    distinct = {tuple(r["stories"]) for r in st.records()}
    assert len(lists) == len(distinct)  # one list object per distinct story list
    latest = {}
    for r in records:
        latest[(r["digest"], r["edition"], r["email"].lower())] = r
    for (digest, edition, email), r in latest.items():
        assert st.get(digest, edition, email) == r
    back = JournalState.load(codec.loads(codec.dumps(st.dump({}))))
    for (digest, edition, email), r in latest.items():
        assert back.get(digest, edition, email) == r
    for email in {r["email"].lower() for r in records}:
        assert back.sent_ids(email, "daily") == st.sent_ids(email, "daily")


def test_dump_bytes_is_the_checkpoint_dump() -> None:
    st = JournalState()
    for r in _history(6):
        st.apply(dict(r, stories=list(r["stories"])))
    covers = {"legacy": False, "segment": "log-2026-11-22.jsonl", "offset": 123, "lineno": 4}
    fast = codec.loads(bytes(st.dump_bytes(covers)))
    slow = st.dump(covers)
    assert fast == slow and fast["latest"] and fast["sent"]


def test_a_large_state_checkpoints_less_often(tmp_path: Path, monkeypatch) -> None:
    """Above LARGE_STATE keys the interval is the key count: fewer whole-state rewrites, and
    still a checkpoint before the tail outgrows the state; what is read is unchanged."""
    monkeypatch.setattr(journal_mod, "CHECKPOINT_RECORDS", 4)
    monkeypatch.setattr(journal_mod, "LARGE_STATE", 10)
    store = Store(tmp_path / "store")
    writes = []
    real = JournalState.dump_bytes
    monkeypatch.setattr(JournalState, "dump_bytes",
                        lambda self, covers: writes.append(len(self.latest)) or real(self, covers))
    records = [{"digest": "daily", "edition": "e1", "email": f"u{i}@x.org", "state": "sent",
                "stories": [f"s{i}"], "at": "2026-11-22T08:00:00Z"} for i in range(60)]
    for r in records:
        store.journal.append([r])
    # 4 records per checkpoint up to 10 keys, then one per as many records as there are keys
    assert writes == [4, 8, 12, 24, 48]
    fresh = Store(tmp_path / "store")
    assert fresh.journal.states("daily", [("e1", r["email"]) for r in records]) == records


def test_the_state_holds_a_send_compactly() -> None:
    """A send's records (`sending` then `sent` per subscriber, one shared story list) cost
    well under 1 KB per subscriber in the state (dicts in per-key dicts were ~1.4 KB), and
    the compact form answers, checkpoints and reloads the same."""
    import tracemalloc

    ids = [f"story-{i:05d}" for i in range(10)]
    n = 5000

    def records() -> Iterator[dict]:
        for i in range(n):
            for state in ("sending", "sent"):
                yield {"digest": "daily", "edition": "2026-11-22", "email": f"u{i}@example.com",
                       "state": state, "message_id": f"<20261122.{i}.0123456789abcdef@x.org>",
                       "stories": list(ids), "at": f"2026-11-22T08:{i // 600:02d}:00Z",
                       "reason": "", "attempt": 1}

    tracemalloc.start()
    try:
        st = JournalState()
        before = tracemalloc.get_traced_memory()[0]
        for r in records():
            st.apply(r)
        per_email = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_email < 750, per_email
    last = {r["email"]: r for r in records()}
    assert st.get("daily", "2026-11-22", "U7@example.com") == last["u7@example.com"]
    assert st.sent_ids("u7@example.com", "daily") == set(ids)
    assert st.size() == (n, n * len(ids))
    back = JournalState.load(codec.loads(bytes(st.dump_bytes({}))))
    assert list(back.records()) == list(st.records()) == list(last.values())
    assert back.sent_ids("u4999@example.com") == set(ids)
