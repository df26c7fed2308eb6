"""The embedded (default) backend, `Store`: TinyDB files, story bodies and a journal, crash-safe."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from tinydb import Query

from digest import codec
from digest.errors import StoreError
from digest.fileio import atomic_write_many, fsync_path, locked
from digest.models import Story, Subscriber
from digest.store.journal import DeliveryJournal
from digest.store.migrations import SCHEMA_VERSION, upgrade
from digest.store.storage import DIR_MODE, FILE_MODE, AtomicJSONStorage, encode, tinydb
from digest.store.subscribers import SubscriberTable

# Index shards for a new store. One 10k-story index file costs ~45 ms to rewrite; 32 shards
# keep a one-story write near 2 ms (bench/bench_store.py). The count used is kept in meta.
DEFAULT_SHARDS = 32
LOCK_TIMEOUT = 120.0  # seconds; a stuck holder then gets a StoreError instead of a hang
# Ids become file names; anything else (untrusted structured story files) is hashed.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def _index_record(story: Story, content_hash: str) -> dict[str, Any]:
    rec = story.summary_dict()
    rec["summary"] = dict(story.summary)
    rec["origin"] = story.origin
    rec["hash"] = content_hash
    return rec


def _make_private(path: Path) -> None:
    """Close a store directory made world-readable before files were created 0600 (an
    older digest, or a umask): only when it is ours, so a shared directory is left alone."""
    st = os.stat(path)
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(path, DIR_MODE)


class Store:
    """The store directory: see docs/ARCHITECTURE.md for the layout and the API."""

    def __init__(self, path: Path, shards: int | None = None, lock_timeout: float = LOCK_TIMEOUT):
        self.path = Path(path)
        self.tmpdir = self.path / ".tmp"
        try:
            for d in (self.path, self.tmpdir, self.path / "index", self.path / "bodies"):
                d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            _make_private(self.path)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot create the store directory ({e.strerror})",
                             "set [store] path in config.toml to a writable directory") from e
        self._mutex = threading.RLock()
        self._lock_timeout = lock_timeout
        self._depth = 0
        self._held = 0
        self.epoch = 0
        self._nshards = int(shards or DEFAULT_SHARDS)
        self._main = AtomicJSONStorage(self.path / "stories.json", self)
        self._subscribers = SubscriberTable(AtomicJSONStorage(self.path / "subscribers.json", self),
                                            self.transaction, self._mutex)
        self._shards: dict[int, AtomicJSONStorage] = {}
        self._story_idx: dict[int, tuple[int, dict[str, int]]] = {}
        self._pending_bodies: dict[Path, bytes] = {}
        self.journal = DeliveryJournal(self.path / "deliveries.jsonl", self._locked)
        self._open()

    # --- locking and transactions -----------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The thread mutex plus the cross-process file lock, re-entrant."""
        with self._mutex:
            outer = nullcontext() if self._held else locked(
                self.path / ".lock", timeout=self._lock_timeout, what="store", mode=FILE_MODE,
                hint="wait for the running digest command to finish, or look for a stuck one")
            with outer:
                self._held += 1
                try:
                    yield
                finally:
                    self._held -= 1

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Hold the store lock; commit every changed file once at the outermost exit.

        An exception escaping the outermost level rolls back (nothing is written)."""
        with self._locked():
            self._depth += 1
            try:
                if self._depth == 1:
                    self.epoch += 1
                    self._clean_tmp()
                yield self
                if self._depth == 1:
                    self._commit()
            except BaseException:
                if self._depth == 1:
                    self._rollback()
                raise
            finally:
                self._depth -= 1

    def _storages(self) -> list[AtomicJSONStorage]:
        # Shards and bodies before stories.json: its meta is the last thing an upgrade writes.
        return [*self._shards.values(), self._subscribers.storage, self._main]

    def _commit(self) -> None:
        for parent in {p.parent for p in self._pending_bodies}:
            if not parent.is_dir():
                parent.mkdir(mode=DIR_MODE)
                fsync_path(parent.parent, directory=True)
        atomic_write_many(self._pending_bodies, self.tmpdir, mode=FILE_MODE)
        self._pending_bodies.clear()
        for s in self._storages():
            s.flush()

    def _rollback(self) -> None:
        self._pending_bodies.clear()
        for s in self._storages():
            if s.dirty:
                s.discard()

    def _clean_tmp(self) -> None:
        """Remove temp files a killed writer left behind (safe: we hold the lock)."""
        try:
            for entry in os.scandir(self.tmpdir):
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
        except FileNotFoundError:
            self.tmpdir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    # --- open and schema ----------------------------------------------------------------

    def _open(self) -> None:
        if self._schema_version() != SCHEMA_VERSION:
            with self.transaction():
                version = self._schema_version()  # another process may have done it meanwhile
                if version is None:
                    self._meta_put("schema_version", SCHEMA_VERSION)
                    self._meta_put("index_shards", self._nshards)
                    return
                upgrade(self, version, str(self._main.path))
        self._nshards = int(self.meta_get("index_shards") or DEFAULT_SHARDS)

    def _schema_version(self) -> int | None:
        """None for a fresh store; 0 for files without a version (no digest writes those)."""
        data = self._main.read()
        v = self.meta_get("schema_version")
        if v is not None:
            if not isinstance(v, int):
                raise StoreError(f"{self._main.path}: meta schema_version is {v!r}",
                                 "restore the file from a backup")
            return v
        return 0 if (data or self._subscribers.storage.path.exists()) else None

    @property
    def shard_count(self) -> int:
        return self._nshards

    # --- meta and quarantine (stories.json) --------------------------------------------

    def meta_get(self, key: str, default: Any = None) -> Any:
        with self._mutex:
            doc = tinydb(self._main).table("meta").get(Query().key == key)
            return doc["value"] if doc else default

    def _meta_put(self, key: str, value: Any) -> None:
        tinydb(self._main).table("meta").upsert({"key": key, "value": value},
                                                Query().key == key)

    def meta_set(self, key: str, value: Any) -> None:
        with self.transaction():
            self._meta_put(key, value)

    def quarantine_get(self, path: str) -> dict | None:
        with self._mutex:
            doc = tinydb(self._main).table("quarantine").get(Query().path == str(path))
            return dict(doc) if doc else None

    def quarantine_put(self, path: str, fingerprint: str, reason: str) -> None:
        rec = {"path": str(path), "fingerprint": fingerprint, "reason": reason}
        with self.transaction():
            t = tinydb(self._main).table("quarantine")
            old = t.get(Query().path == str(path))
            if old != rec:
                t.upsert(rec, Query().path == str(path))

    def quarantine_clear(self, path: str) -> None:
        with self.transaction():
            t = tinydb(self._main).table("quarantine")
            if t.contains(Query().path == str(path)):
                t.remove(Query().path == str(path))

    # --- stories: sharded index + body files --------------------------------------------

    def _shard_of(self, story_id: str) -> int:
        h = hashlib.blake2b(story_id.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        return int.from_bytes(h, "big") % self.shard_count

    def _shard(self, n: int) -> AtomicJSONStorage:
        s = self._shards.get(n)
        if s is None:
            s = self._shards[n] = AtomicJSONStorage(self.path / "index" / f"{n:02x}.json", self)
        return s

    def _index_of(self, n: int) -> dict[str, int]:
        """story id → TinyDB doc id within shard n, rebuilt when the shard was reloaded."""
        storage = self._shard(n)
        table = storage.read().get("stories", {})
        cached = self._story_idx.get(n)
        if cached is None or cached[0] != storage.generation:
            idx = {doc["id"]: int(doc_id) for doc_id, doc in table.items()}
            cached = self._story_idx[n] = (storage.generation, idx)
        return cached[1]

    def body_path(self, story_id: str) -> Path:
        name = story_id if _SAFE_ID.fullmatch(story_id) else \
            "h" + hashlib.sha256(story_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.path / "bodies" / name[:2] / f"{name}.json"

    def upsert_stories(self, stories: Iterable[Story]) -> list[tuple[str, str]]:
        """Add or update stories; unchanged ones (same content hash) touch no file."""
        results: list[tuple[str, str]] = []
        with self.transaction():
            # Changes per shard: doc id (None = new) and the index record.
            plans: dict[int, dict[str, tuple[int | None, dict]]] = {}
            for story in stories:
                n = self._shard_of(story.id)
                idx, plan = self._index_of(n), plans.setdefault(n, {})
                try:
                    h = story.content_hash()
                except UnicodeError as e:
                    raise StoreError(f"story {story.id} ({story.origin}): text is not valid "
                                     f"Unicode ({e.reason})", "fix the input file") from e
                if story.id in plan:
                    doc_id, cur = plan[story.id][0], plan[story.id][1]["hash"]
                elif story.id in idx:
                    doc_id = idx[story.id]
                    cur = self._shard(n).read()["stories"][str(doc_id)].get("hash")
                else:
                    doc_id, cur = None, None
                if cur == h:
                    results.append((story.id, "unchanged"))
                    continue
                results.append((story.id, "added" if cur is None else "updated"))
                plan[story.id] = (doc_id, _index_record(story, h))
                self._pending_bodies[self.body_path(story.id)] = encode(
                    story.to_dict(), f"story {story.id}")
            for n, plan in plans.items():
                self._apply_plan(n, plan)
        return results

    def _apply_plan(self, n: int, plan: dict[str, tuple[int | None, dict]]) -> None:
        if not plan:
            return
        table = tinydb(self._shard(n)).table("stories")
        new = [rec for doc_id, rec in plan.values() if doc_id is None]
        changed = {doc_id: rec for doc_id, rec in plan.values() if doc_id is not None}
        idx = self._index_of(n)
        if new:
            for doc_id, rec in zip(table.insert_multiple(new), new, strict=True):
                idx[rec["id"]] = doc_id
        if changed:
            def replace(doc: dict) -> None:
                rec = by_sid[doc["id"]]
                doc.clear()
                doc.update(rec)
            by_sid = {rec["id"]: rec for rec in changed.values()}
            table.update(replace, doc_ids=list(changed))

    def _index_record_of(self, story_id: str) -> dict | None:
        n = self._shard_of(story_id)
        doc_id = self._index_of(n).get(story_id)
        if doc_id is None:
            return None
        return self._shard(n).read()["stories"][str(doc_id)]

    def story_hash(self, story_id: str) -> str | None:
        """The stored content hash of a story, or None when it is not stored."""
        with self._mutex:
            rec = self._index_record_of(story_id)
            return rec.get("hash") if rec else None

    def get_story(self, story_id: str) -> Story | None:
        """The full story from its body file, or None when the index does not hold it."""
        with self._mutex:
            if self._index_record_of(story_id) is None:
                return None
            path = self.body_path(story_id)
            raw = self._pending_bodies.get(path)
            if raw is None:
                try:
                    raw = path.read_bytes()
                except FileNotFoundError as e:
                    raise StoreError(f"{path}: body file of story {story_id} is missing",
                                     "ingest the story file again to rewrite it") from e
            try:
                return Story.from_dict(codec.loads(raw))
            except (KeyError, ValueError, TypeError) as e:  # codec.DecodeError is a ValueError
                raise StoreError(f"{path}: corrupt story body ({e})",
                                 "ingest the story file again to rewrite it") from e

    def get_stories(self, ids: Iterable[str]) -> list[Story]:
        out = []
        for i in ids:
            s = self.get_story(i)
            if s is not None:
                out.append(s)
        return out

    def list_stories(self) -> list[Story]:
        """Every story from the index only (bodies empty), ordered by id."""
        with self._mutex:
            recs = [rec for n in range(self.shard_count)
                    for rec in self._shard(n).read().get("stories", {}).values()]
        try:
            return sorted((Story.from_dict(r) for r in recs), key=lambda s: s.id)
        except (KeyError, ValueError, TypeError) as e:
            raise StoreError(f"{self.path / 'index'}: a corrupt index record ({e})",
                             "restore the index files from a backup") from e

    def story_count(self) -> int:
        with self._mutex:
            return sum(len(self._shard(n).read().get("stories", {}))
                       for n in range(self.shard_count))

    # --- subscribers (subscribers.json, see subscribers.py) ----------------------------

    def get_subscriber(self, email: str) -> Subscriber | None:
        return self._subscribers.get(email)

    def list_subscribers(self, status: str | None = None) -> list[Subscriber]:
        """Subscribers in the order they were added, optionally of one status."""
        return self._subscribers.select(status)

    def add_subscriber(self, sub: Subscriber) -> Subscriber:
        """Store a new subscriber (email lowercased); StoreError if it already exists."""
        return self._subscribers.add(sub)

    def upsert_subscribers(self, subs: Iterable[Subscriber]) -> tuple[int, int]:
        """Add or replace many subscribers in one write; returns (added, updated)."""
        return self._subscribers.upsert(subs)

    def update_subscriber(self, email: str, **changes: Any) -> Subscriber:
        """Change fields of a subscriber (Subscriber field names); StoreError if unknown."""
        return self._subscribers.update(email, **changes)

    def remove_subscriber(self, email: str) -> bool:
        return self._subscribers.remove(email)
