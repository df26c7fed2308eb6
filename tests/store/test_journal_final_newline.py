"""Issue 17, item 10: a journal's last line that is a whole record missing only its newline (a
hand edit, a copy) is complete, not torn: it is read (so its edition is not sent again) and
the next append writes the missing newline instead of cutting the record. A torn line (a kill
mid-append) is still cut. The same for the legacy deliveries.jsonl upgrade."""

from __future__ import annotations

from datetime import UTC, datetime

from digest import codec
from digest.store import Store
from tests.store.test_journal import legacy_store, rec


def _segment(root) -> object:
    return root / "journal" / f"log-{datetime.now(UTC):%Y-%m-%d}.jsonl"


def _write_without_final_newline(store: Store, root, records: list[dict]) -> None:
    store.journal.append(records)
    seg = _segment(root)
    data = seg.read_bytes()
    assert data.endswith(b"\n")
    seg.write_bytes(data[:-1])  # the hand edit / copy that lost the newline


def test_a_complete_last_record_without_newline_is_read(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    _write_without_final_newline(store, root, [
        rec("e1", state="sending", stories=["s1"]), rec("e1", state="sent", stories=["s1"])])
    fresh = Store(root)
    assert fresh.journal.state("daily", "e1", "a@example.com")["state"] == "sent"
    assert fresh.journal.sent_story_ids("a@example.com") == {"s1"}
    assert [r["state"] for r in fresh.journal.records()] == ["sending", "sent"]


def test_the_next_append_writes_the_missing_newline_and_keeps_the_record(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    _write_without_final_newline(store, root, [rec("e1", state="sent", stories=["s1"])])
    reader = Store(root)
    assert reader.journal.state("daily", "e1", "a@example.com")["state"] == "sent"
    Store(root).journal.append([rec("e2", state="sent", stories=["s2"])])
    lines = _segment(root).read_bytes().split(b"\n")
    assert lines[-1] == b"" and [codec.loads(x)["edition"] for x in lines[:-1]] == ["e1", "e2"]
    # A reader that had read the line before its newline catches up without a gap.
    assert reader.journal.state("daily", "e2", "a@example.com")["state"] == "sent"
    assert reader.journal.sent_story_ids("a@example.com") == {"s1", "s2"}
    fresh = Store(root)
    assert [r["edition"] for r in fresh.journal.records()] == ["e1", "e2"]
    assert fresh.journal.sent_story_ids("a@example.com") == {"s1", "s2"}


def test_a_torn_last_line_is_still_cut(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    store.journal.append([rec("e1", state="sending")])
    seg = _segment(root)
    whole = codec.dumps(rec("e1", state="sent"))
    seg.write_bytes(seg.read_bytes() + whole[:-1])  # cut before its closing brace
    assert Store(root).journal.state("daily", "e1", "a@example.com")["state"] == "sending"
    Store(root).journal.append([rec("e2")])
    assert [codec.loads(x)["state"] for x in seg.read_bytes().splitlines()] == ["sending",
                                                                              "sent"]
    assert [r["edition"] for r in Store(root).journal.records()] == ["e1", "e2"]


def test_the_legacy_upgrade_keeps_a_last_record_without_newline(tmp_path):
    root = tmp_path / "store"
    records = [rec("e1", state="sending", stories=["s1"]), rec("e1", state="sent",
                                                                stories=["s1"])]
    legacy_store(root, records)
    legacy = root / "deliveries.jsonl"
    legacy.write_bytes(legacy.read_bytes()[:-1])
    store = Store(root)
    assert store.journal.state("daily", "e1", "a@example.com")["state"] == "sent"
    assert store.journal.sent_story_ids("a@example.com") == {"s1"}
    assert list(store.journal.records()) == records
