"""The embedded delivery journal: checkpoint + dated segments + archive, the upgrade from
schema 2's deliveries.jsonl (also killed mid-way), claim and import_records."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import codec
from digest.models import iso
from digest.store import Store
from digest.store import journal as journal_mod
from digest.store.journal_state import KEEP_EDITIONS

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def rec(edition: str, email: str = "a@example.com", state: str = "sent",
        stories: list[str] | None = None, at: datetime | None = None, digest: str = "daily",
        **extra: object) -> dict:
    return {"digest": digest, "edition": edition, "email": email, "state": state,
            "message_id": f"<{edition}.{email}>", "stories": stories or [],
            "at": iso(at or T0), "reason": "", "attempt": 1, **extra}


def history(days: int, emails: int) -> list[dict]:
    """A schema-2 style history: per day and email `sending` then `sent` (one `failed`)."""
    out = []
    for d in range(days):
        at = T0 + timedelta(days=d)
        for e in range(emails):
            email = f"u{e}@example.com"
            ids = [f"s{d}-{k}" for k in range(3)]
            out.append(rec(f"{at:%Y-%m-%d}", email, "sending", ids, at))
            final = "failed" if (d + e) % 7 == 0 else "sent"
            out.append(rec(f"{at:%Y-%m-%d}", email, final, ids, at + timedelta(seconds=e)))
    return out


def naive(records: list[dict]) -> tuple[dict, dict]:
    """What schema 2's whole-file journal answered: latest per key, every id sent."""
    latest, sent = {}, {}
    for r in records:
        latest[(r["digest"], r["edition"], r["email"].lower())] = r
        if r["state"] == "sent":
            sent.setdefault(r["email"].lower(), set()).update(r["stories"])
    return latest, sent


def legacy_store(root: Path, records: list[dict], torn: bool = False) -> None:
    """A store as schema 2 left it: meta version 2 and a root deliveries.jsonl."""
    Store(root).meta_set("schema_version", 2)
    data = b"".join(codec.dumps(r) + b"\n" for r in records)
    (root / "deliveries.jsonl").write_bytes(data + (b'{"digest":"da' if torn else b""))


def check_same(store: Store, records: list[dict], days: int) -> None:
    """The answers schema 2 gave, for the retained editions and the ids in the window."""
    latest, sent = naive(records)
    j = store.journal
    first_kept = f"{T0 + timedelta(days=days - KEEP_EDITIONS):%Y-%m-%d}"
    for (digest, edition, email), r in latest.items():
        if edition >= first_kept:
            assert j.state(digest, edition, email) == r
    for email, ids in sent.items():
        recent = {i for i in ids if int(i[1:].split("-")[0]) >= days - 14}
        assert recent <= j.sent_story_ids(email) <= ids


def test_new_store_layout_and_reopen(store, tmp_path):
    store.journal.append([rec("e1", stories=["s1"]), rec("e1", "b@example.com", "failed")])
    root = tmp_path / "store" / "journal"
    assert [p.name for p in root.iterdir()] == [f"log-{datetime.now(UTC):%Y-%m-%d}.jsonl"]
    assert not (tmp_path / "store" / "deliveries.jsonl").exists()
    fresh = Store(tmp_path / "store")
    assert fresh.journal.state("daily", "e1", "A@Example.com")["state"] == "sent"
    assert fresh.journal.sent_story_ids("a@example.com") == {"s1"}


def test_upgrade_from_deliveries_jsonl(tmp_path):
    records = history(30, 5)
    legacy_store(tmp_path / "store", records, torn=True)
    store = Store(tmp_path / "store")
    assert store.meta_get("schema_version") >= 3
    assert not (tmp_path / "store" / "deliveries.jsonl").exists()
    arch = tmp_path / "store" / "journal" / "archive" / "deliveries-legacy.jsonl"
    assert arch.exists() and (tmp_path / "store" / "journal" / "state.json").exists()
    check_same(store, records, 30)
    assert list(store.journal.records()) == records  # history intact (torn tail dropped)
    # Appends after the upgrade go to a segment; history keeps its order.
    store.journal.append([rec("late", stories=["z1"], at=T0 + timedelta(days=31))])
    fresh = Store(tmp_path / "store")
    assert fresh.journal.state("daily", "late", "a@example.com")["state"] == "sent"
    assert "z1" in fresh.journal.sent_story_ids("a@example.com")
    assert list(fresh.journal.records())[-1]["edition"] == "late"
    assert len(list(fresh.journal.records())) == len(records) + 1


def test_sent_ids_outside_the_window_are_dropped_from_the_state_only(tmp_path):
    records = history(40, 2)
    legacy_store(tmp_path / "store", records)
    store = Store(tmp_path / "store")
    got = store.journal.sent_story_ids("u1@example.com")
    assert "s39-0" in got and "s0-0" not in got  # 14 days back from the newest `at`
    assert "s26-0" in got
    assert sum("s0-0" in r["stories"] for r in store.journal.records()) == 4


def _run_upgrade(root: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if kill_at:
        env["DIGEST_JOURNAL_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-c", "import sys; from digest.store import Store; "
                           "Store(sys.argv[1])", str(root)], env=env, capture_output=True)


@pytest.mark.parametrize("point", ["checkpoint", "move"])
def test_upgrade_killed_at_each_step_is_redone(tmp_path, point):
    records = history(20, 4)
    root = tmp_path / "store"
    legacy_store(root, records)
    p = _run_upgrade(root, point)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-2000:]
    assert (root / "deliveries.jsonl").exists()  # nothing lost: the legacy file is in place
    assert (root / "journal" / "state.json").exists() == (point == "move")
    store = Store(root)
    assert not (root / "deliveries.jsonl").exists()
    check_same(store, records, 20)
    assert list(store.journal.records()) == records  # converted once, not twice


def test_upgrade_killed_at_random_moments(tmp_path):
    records = history(60, 300)  # 36k lines: the conversion takes a moment
    root = tmp_path / "store"
    legacy_store(root, records)
    rng = random.Random(5)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from digest.store import "
                                 "Store; Store(sys.argv[1])", str(root)], env=env)
        time.sleep(rng.uniform(0.1, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (root / "deliveries.jsonl").exists():
            break
    store = Store(root)
    check_same(store, records, 60)
    assert sum(1 for _ in store.journal.records()) == len(records)


def test_checkpoint_and_tail_replay(store, tmp_path, monkeypatch):
    monkeypatch.setattr(journal_mod, "CHECKPOINT_RECORDS", 10)
    other = Store(tmp_path / "store")
    other.journal.state("daily", "x", "a@example.com")  # loaded before the checkpoint
    for i in range(25):
        store.journal.append([rec(f"e{i:02d}", stories=[f"s{i}"], at=T0 + timedelta(hours=i))])
    state = codec.loads((tmp_path / "store" / "journal" / "state.json").read_bytes())
    assert state["covers"]["offset"] > 0
    # A process that loaded before sees the new checkpoint and the tail after it.
    assert other.journal.state("daily", "e24", "a@example.com")["state"] == "sent"
    assert other.journal.sent_story_ids("a@example.com") == {f"s{i}" for i in range(25)}
    fresh = Store(tmp_path / "store")
    assert fresh.journal.state("daily", "e24", "a@example.com")["stories"] == ["s24"]
    assert fresh.journal.state("daily", "e00", "a@example.com") is None  # pruned: > 8 back
    assert len(list(fresh.journal.records())) == 25


def test_older_segments_move_to_archive(store, tmp_path):
    root = tmp_path / "store" / "journal"
    root.mkdir(exist_ok=True)
    (root / "log-2020-01-01.jsonl").write_bytes(codec.dumps(rec("old", stories=["o1"])) + b"\n"
                                                + b'{"torn')
    store.journal.append([rec("new", stories=["n1"])])
    assert (root / "archive" / "log-2020-01-01.jsonl").exists()
    assert not (root / "log-2020-01-01.jsonl").exists()
    fresh = Store(tmp_path / "store")
    assert fresh.journal.sent_story_ids("a@example.com") == {"o1", "n1"}
    assert [r["edition"] for r in fresh.journal.records()] == ["old", "new"]


def test_claim(store):
    j = store.journal
    now = T0
    j.append([rec("e1", "done@x.org", "sent"), rec("e1", "fail@x.org", "failed"),
              rec("e1", "perm@x.org", "failed", permanent=True),
              rec("e1", "live@x.org", "sending", at=now - timedelta(seconds=30)),
              rec("e1", "dead@x.org", "sending", at=now - timedelta(seconds=600))])
    want = [rec("e1", e, "sending", at=now) for e in
            ("new@x.org", "done@x.org", "fail@x.org", "perm@x.org", "live@x.org", "dead@x.org",
             "NEW@x.org")]
    got = j.claim(want, lease_seconds=120)
    assert [r["email"] for r in got] == ["new@x.org", "fail@x.org", "dead@x.org"]
    assert j.state("daily", "e1", "fail@x.org")["state"] == "sending"
    assert j.claim(want, lease_seconds=120) == []


def test_import_records_skips_what_is_present(store, tmp_path):
    records = history(5, 3)
    store.journal.append(records[:10])
    assert store.journal.import_records(iter(records)) == len(records) - 10
    assert store.journal.import_records(records) == 0
    assert list(Store(tmp_path / "store").journal.records()) == records


def test_import_never_lets_an_older_record_override_a_newer_one(store, tmp_path):
    """Finding 10: an imported `sending` older than the stored `sent` stays history."""
    j = store.journal
    j.append([rec("e1", "a@example.com", "sent", ["s1"], at=T0 + timedelta(minutes=5))])
    older = [rec("e1", "a@example.com", "sending", ["s1"], at=T0),
             rec("e1", "b@example.com", "sending", ["s2"], at=T0),
             rec("e1", "b@example.com", "sent", ["s2"], at=T0 + timedelta(minutes=1))]
    assert j.import_records(older) == 3
    for journal in (j, Store(tmp_path / "store").journal):
        assert journal.state("daily", "e1", "a@example.com")["state"] == "sent"
        assert journal.state("daily", "e1", "b@example.com")["state"] == "sent"
        assert journal.claim([rec("e1", "a@example.com", "sending", at=T0)]) == []
        assert len(list(journal.records())) == 4  # the history has every record
    assert j.import_records(older) == 0  # and a second copy adds nothing


def test_a_future_record_does_not_empty_the_dedupe_window(store, tmp_path, monkeypatch):
    """Finding 5: the window is measured back from at most the wall clock + 1 day."""
    monkeypatch.setattr(journal_mod, "CHECKPOINT_RECORDS", 1)
    now = datetime.now(UTC).replace(microsecond=0)
    store.journal.append([rec("e1", stories=["recent"], at=now - timedelta(days=2))])
    store.journal.append([rec("e2", "b@example.com", stories=["z"],
                              at=now + timedelta(days=400))])  # a skewed clock
    store.journal.append([rec("e3", "c@example.com", stories=["y"], at=now)])  # checkpoints
    for journal in (store.journal, Store(tmp_path / "store").journal):
        assert journal.sent_story_ids("a@example.com") == {"recent"}
    state = codec.loads((tmp_path / "store" / "journal" / "state.json").read_bytes())
    assert state["newest_at"] == iso(now)


def test_a_reader_does_not_skip_records_archived_under_it(store, tmp_path, monkeypatch):
    """Finding 9: a checkpoint + archive by another process between a reader's state check
    and its segment listing: the reader reloads instead of skipping the rest of a segment."""
    root = tmp_path / "store" / "journal"
    root.mkdir(exist_ok=True)
    seg = root / "log-2020-01-01.jsonl"
    seg.write_bytes(codec.dumps(rec("old1", stories=["o1"])) + b"\n")
    reader = Store(tmp_path / "store").journal
    assert reader.state("daily", "old1", "a@example.com") is not None  # read up to there
    with seg.open("ab") as f:  # a record that day the reader has not seen yet
        f.write(codec.dumps(rec("old2", stories=["o2"])) + b"\n")
    real, fired = journal_mod.live_segments, []

    def listing(path):
        if not fired:  # the writer checkpoints and archives log-2020-01-01 right now
            fired.append(1)
            store.journal.append([rec("new", stories=["n1"])])
            assert (root / "archive" / seg.name).exists()
        return real(path)

    monkeypatch.setattr(journal_mod, "live_segments", listing)
    assert reader.state("daily", "old2", "a@example.com") is not None
    assert reader.sent_story_ids("a@example.com") == {"o1", "o2", "n1"}
