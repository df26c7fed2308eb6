"""Issue 18: ingest workers compute each story's content hash and body bytes, and a big batch
of body files is made durable by one syncfs instead of an fsync per file. The stored bytes,
statuses and crash-safety order must be what the store computes and writes by itself."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import codec
from digest.config import load_config
from digest.models import Block
from digest.pipeline import ingesting
from digest.pipeline.ingesting import ingest_paths
from digest.store import Store, embedded
from digest.store.embedded import SYNCFS_OVER, encode_story
from tests.support.store import make_story

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path, sub: str) -> dict[str, bytes]:
    """Every file under `root/sub`, by relative path, the project dir taken out."""
    base = root / sub
    return {str(p.relative_to(root)): p.read_bytes().replace(str(root.parent).encode(), b"ROOT")
            for p in sorted(base.rglob("*")) if p.is_file()}


def test_encode_story_is_what_the_store_computes() -> None:
    s = make_story(7)
    h, body = encode_story(s)
    assert h == s.content_hash()
    assert body == codec.dumps(s.to_dict())
    # to_dict spells out FAQ and Block: the very dicts dataclasses.asdict gave
    s.body = {"en": [Block("p", "text")]}
    d = s.to_dict()
    assert d["faq"] == {k: [dataclasses.asdict(f) for f in v] for k, v in s.faq.items()}
    assert d["body"] == {"en": [{"kind": "p", "text": "text"}]}
    assert list(d["faq"]["en"][0]) == ["q", "a"] and list(d["body"]["en"][0]) == ["kind", "text"]


def test_a_big_batch_is_written_with_one_syncfs_and_the_same_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[Path] = []
    real = embedded._syncfs
    monkeypatch.setattr(embedded, "_syncfs", lambda p: (syncs.append(p), real(p))[1])
    stories = [make_story(i) for i in range(SYNCFS_OVER + 30)]

    one = Store(tmp_path / "one" / "store")  # one story a transaction: fsync per file
    for s in stories:
        assert one.upsert_stories([s]) == [(s.id, "added")]
    assert syncs == []

    many = Store(tmp_path / "many" / "store")
    # half of them precomputed (as ingest workers do), half computed by the store
    pre = {s.id: encode_story(s) for s in stories[::2]}
    assert many.upsert_stories(stories, encoded=pre) == [(s.id, "added") for s in stories]
    assert len(syncs) == 1  # new bodies written in place, one flush before the index
    assert _files(tmp_path / "one", "store/bodies") == _files(tmp_path / "many", "store/bodies")
    assert _files(tmp_path / "one", "store/index") == _files(tmp_path / "many", "store/index")

    # Updates replace existing files (staged, flushed, renamed, flushed again); a story with
    # the same text but a missing body file is rewritten.
    syncs.clear()
    changed = [make_story(i, rev=1) for i in range(SYNCFS_OVER + 10)]
    gone = stories[-1]
    many.body_path(gone.id).unlink()
    got = many.upsert_stories([*changed, gone])
    assert got == [(s.id, "updated") for s in [*changed, gone]]
    assert len(syncs) == 2
    assert list((tmp_path / "many" / "store" / ".tmp").iterdir()) == []
    reopened = Store(tmp_path / "many" / "store")
    for s in [*changed, gone, *stories[len(changed):-1]]:
        assert reopened.get_story(s.id) == s
        assert reopened.story_hash(s.id) == s.content_hash()
    assert reopened.upsert_stories(changed) == [(s.id, "unchanged") for s in changed]


def _project(root: Path) -> tuple[Path, object]:
    root.mkdir(parents=True)
    (root / "config.toml").write_text('[store]\npath = "store"\n', encoding="utf-8")
    inbox = root / "inbox"
    inbox.mkdir()
    return inbox, load_config(root / "config.toml")


def _write_inbox(inbox: Path, text: str, when: float) -> None:
    """Cards with ids in their names, and one whose id is a hash of its title."""
    for i in range(8):
        (inbox / f"3{i:02d}_{i + 512:016x}.txt").write_text(text, encoding="utf-8")
    (inbox / "untitled-note.txt").write_text(text, encoding="utf-8")
    for p in inbox.iterdir():
        os.utime(p, (when, when))


@pytest.mark.parametrize(("batch", "as_of"), [(3, None), (1000, None), (3, "given")])
def test_worker_hashes_are_not_used_for_stories_the_parent_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int, as_of: str | None) -> None:
    """A re-ingest of edited cards without --as-of keeps each stored `published` (new body
    bytes), and an edited title keeps the file's earlier id (new hash and body): the
    workers' precomputed values for those stories must not be stored. The result is
    byte for byte the in-process run's."""
    when = datetime.now(UTC) - timedelta(hours=12) if as_of else None
    card = next((REPO / "seeds").glob("001_*.txt")).read_text(encoding="utf-8")
    edited = card.replace("China may have accessed Mythos", "China may have reached Mythos") \
        .replace("Semafor", "Semafor Media")
    assert edited != card
    first, second = time.time() - 3 * 86400, time.time() - 86400
    runs = {}
    for name, workers in (("a", False), ("b", True)):
        root = tmp_path / name
        inbox, config = _project(root)
        _write_inbox(inbox, card, first)
        assert len(ingest_paths(config, [inbox]).added) == 9
        kept = {s.id: s.published for s in Store(root / "store").list_stories()}
        _write_inbox(inbox, edited, second)
        with monkeypatch.context() as m:
            if workers:
                m.setattr(ingesting, "PARALLEL_MIN_FILES", 1)
                m.setattr(ingesting, "CHUNK_FILES", 2)
                m.setattr(ingesting, "BATCH_STORIES", batch)
                m.setattr(ingesting, "_workers", lambda n: 2)
                m.setattr(ingesting, "_prepare_chunk", _checked_chunk)
            report = ingest_paths(config, [inbox], as_of=when)
        runs[name] = report
        assert len(report.updated) == 9 and not report.added, report.lines()
        store = Store(root / "store")
        note = [s for s in store.list_stories() if s.origin.endswith("untitled-note.txt")]
        assert len(note) == 1 and note[0].title["en"].startswith("China may have reached")
        assert note[0].id in kept  # the edited title kept the file's id
        for s in store.list_stories():
            full = store.get_story(s.id)
            assert full is not None and full.id == s.id
            assert store.story_hash(s.id) == full.content_hash()
            if when is None:  # derived times: the stored `published` is kept
                assert full.published == kept[s.id] <= full.updated
    assert [e.text for e in runs["a"].events] == [
        e.text.replace(str(tmp_path / "b"), str(tmp_path / "a")) for e in runs["b"].events]
    for sub in ("store/index", "store/bodies"):
        a = {k: v.replace(b"/a/", b"/X/") for k, v in _files(tmp_path / "a", sub).items()}
        b = {k: v.replace(b"/b/", b"/X/") for k, v in _files(tmp_path / "b", sub).items()}
        assert a == b


_REAL_CHUNK = ingesting._prepare_chunk


def _checked_chunk(paths: list[tuple[Path, str]], as_of: object) -> list:
    """The real worker task, asserting that it did precompute every story."""
    out = _REAL_CHUNK(paths, as_of)  # type: ignore[arg-type]
    for prep in out:
        assert prep.parsed is None or (prep.encoded and all(prep.encoded))
    return out




def test_postgres_store_takes_the_precomputed_values(tmp_path: Path) -> None:
    """The PostgreSQL backend stores what it would compute itself (the same `encoded` map
    the ingest workers hand the embedded store)."""
    from tests.support.postgres import Cluster
    from tests.support.tools import missing_tool

    try:
        cluster = Cluster()
    except RuntimeError as e:
        missing_tool(str(e))
    from digest.store import open_store

    with cluster:
        plain, pre = open_store(cluster.create_db("plain")), open_store(cluster.create_db("pre"))
        stories = [make_story(i) for i in range(5)]
        enc = {s.id: encode_story(s) for s in stories[1:]}
        assert plain.upsert_stories(stories) == pre.upsert_stories(stories, encoded=enc)
        for s in stories:
            assert pre.get_story(s.id) == plain.get_story(s.id) == s
            assert pre.story_hash(s.id) == plain.story_hash(s.id) == s.content_hash()
        again = [make_story(i, rev=1) for i in range(5)]
        enc = {s.id: encode_story(s) for s in again[:3]}
        assert pre.upsert_stories(again, encoded=enc) == [(s.id, "updated") for s in again]
        assert [pre.get_story(s.id) for s in again] == again
        plain.close()
        pre.close()


def test_batches_grow_with_the_store_up_to_a_bound() -> None:
    """Each commit rewrites the whole index: a batch grows to a quarter of what is stored,
    so a 100k run does not rewrite it 100 times; a small store keeps 1,000-story batches."""
    assert ingesting._batch_limit(0) == ingesting.BATCH_STORIES == 1000
    assert ingesting._batch_limit(4000) == 1000
    assert ingesting._batch_limit(12_000) == 3000
    assert ingesting._batch_limit(10**6) == ingesting.BATCH_STORIES_MAX
