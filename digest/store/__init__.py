"""Crash-safe, locked store: TinyDB index files, per-story body files and a delivery journal."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock
import orjson
from tinydb import Query, TinyDB
from tinydb.storages import Storage

from digest.errors import StoreError
from digest.fileio import fsync_path, write_all
from digest.models import Story, Subscriber

SCHEMA_VERSION = 1
# Index shards for a new store. One 10k-story index file costs ~45 ms to rewrite; 32 shards
# keep a one-story write near 2 ms (bench/bench_store.py). The count used is kept in meta.
DEFAULT_SHARDS = 32
LOCK_TIMEOUT = 120.0  # seconds; a stuck holder then gets a StoreError instead of a hang
JOURNAL_STATES = ("sending", "sent", "failed", "bounced")
# Ids become file names; anything else (untrusted structured story files) is hashed.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
# The store holds the site secret (stories.json meta) and subscribers' addresses: only the
# owner may read it, whatever the umask.
DIR_MODE = 0o700
FILE_MODE = 0o600
_DISK_HINT = "free disk space (or fix permissions) and run the command again; the previous " \
             "version of the file is intact"


def _write_error(path: Path, e: OSError) -> StoreError:
    what = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return StoreError(f"{path}: could not write ({what}); nothing was changed", _DISK_HINT)


def _write_temp(path: Path, data: bytes, tmpdir: Path) -> Path:
    """Write `data` to a fresh, fsynced temp file in `tmpdir` (same file system as `path`)."""
    tmp = tmpdir / f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise _write_error(path, e) from e
    return tmp


def atomic_write(path: Path, data: bytes, tmpdir: Path) -> None:
    """Replace `path` with `data` so a kill at any instant leaves the old or the new file.

    The temp file lives in `tmpdir` (cleaned, under the lock, by the next transaction)."""
    atomic_write_many({path: data}, tmpdir)


def atomic_write_many(files: dict[Path, bytes], tmpdir: Path) -> None:
    """Atomically replace many files: temp files written and fsynced in parallel (the
    file system folds concurrent fsyncs into one journal commit), then renamed, then each
    directory fsynced once so the renames are durable."""
    if len(files) > 8:
        with ThreadPoolExecutor(max_workers=8) as pool:
            temps = list(pool.map(lambda kv: _write_temp(kv[0], kv[1], tmpdir), files.items()))
    else:
        temps = [_write_temp(p, d, tmpdir) for p, d in files.items()]
    dirs: set[Path] = set()
    for path, tmp in zip(files, temps, strict=True):
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _write_error(path, e) from e
        dirs.add(path.parent)
    for d in dirs:
        fsync_path(d, directory=True)


def _dumps(obj: Any, what: str) -> bytes:
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError) as e:
        raise StoreError(f"{what}: cannot be stored as JSON ({e})",
                         "the story or subscriber holds text that is not valid Unicode; fix "
                         "the input file") from e


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class AtomicJSONStorage(Storage):
    """TinyDB storage: orjson, an in-memory cache (TinyDB calls read() on every operation),
    writes deferred to the transaction's end and done by atomic replace."""

    def __init__(self, path: Path, owner: Store) -> None:
        self.path = Path(path)
        self._owner = owner
        self._data: dict[str, Any] | None = None
        self._sig: tuple[int, int, int] | None = None
        self._dirty = False
        self._checked_epoch = -1
        self.generation = 0  # bumps whenever the cache is replaced from disk

    def _load(self) -> None:
        if self._data is not None:
            try:
                if _signature(os.stat(self.path)) == self._sig:
                    return  # unchanged on disk: the cheap, common case
            except FileNotFoundError:
                pass
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            if self._data is None or self._sig is not None:
                self._data, self._sig = {}, None
                self.generation += 1
            return
        except OSError as e:
            raise StoreError(f"{self.path}: cannot read ({e.strerror})",
                             "check the store directory's permissions") from e
        try:
            # Signature and bytes from the same open file, so a concurrent replace is
            # noticed at the next check rather than missed.
            sig = _signature(os.fstat(fd))
            if self._data is not None and sig == self._sig:
                return
            with os.fdopen(fd, "rb", closefd=False) as f:
                raw = f.read()
        finally:
            os.close(fd)
        try:
            data = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as e:
            raise StoreError(f"{self.path}: corrupt JSON ({e})",
                             "restore this file from a backup or repair it by hand; digest "
                             "will not reset it, so nothing is lost") from e
        if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
            raise StoreError(f"{self.path}: not a TinyDB file (expected an object of tables)",
                             "restore this file from a backup or move it out of the store")
        self._data, self._sig = data, sig
        self.generation += 1

    def read(self) -> dict[str, Any]:
        if self._dirty:
            return self._data  # our uncommitted changes win
        owner = self._owner
        if owner.in_transaction and self._checked_epoch == owner.epoch:
            return self._data  # already validated under the lock in this transaction
        self._load()
        if owner.in_transaction:
            self._checked_epoch = owner.epoch
        return self._data

    def write(self, data: dict[str, Any]) -> None:
        if not self._owner.in_transaction:
            raise RuntimeError("store write outside a transaction")  # a bug in store.py
        self._data = data
        self._dirty = True

    @property
    def dirty(self) -> bool:
        return self._dirty

    def flush(self) -> None:
        """Write the cache to disk if it changed (called at commit, under the lock)."""
        if not self._dirty:
            return
        atomic_write(self.path, _dumps(self._data, str(self.path)), self._owner.tmpdir)
        self._sig = _signature(os.stat(self.path))
        self._dirty = False

    def discard(self) -> None:
        """Forget the cache (rollback): the next read loads the committed file."""
        self._data, self._sig, self._dirty = None, None, False
        self._checked_epoch = -1
        self.generation += 1

    def close(self) -> None:
        pass


def _tinydb(storage: AtomicJSONStorage) -> TinyDB:
    # A fresh TinyDB per use: Table caches its next document id, which goes stale when
    # another process changed the file; building one costs microseconds.
    return TinyDB(storage=lambda: storage)


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


def _email_key(email: str) -> str:
    return email.strip().lower()


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
        # A kernel flock dies with its process (kill -9 leaves no stale lock); keeping the
        # file also refuses filelock's soft-lock fallback, whose marker would outlive a kill.
        self._lock = filelock.FileLock(self.path / ".lock", thread_local=False, mode=FILE_MODE,
                                       poll_interval=0.005, preserve_lock_file=True)
        self._lock_timeout = lock_timeout
        self._depth = 0
        self._held = 0
        self.epoch = 0
        self._nshards = int(shards or DEFAULT_SHARDS)
        self._main = AtomicJSONStorage(self.path / "stories.json", self)
        self._subs = AtomicJSONStorage(self.path / "subscribers.json", self)
        self._shards: dict[int, AtomicJSONStorage] = {}
        self._story_idx: dict[int, tuple[int, dict[str, int]]] = {}
        self._sub_idx: tuple[int, dict[str, int]] | None = None
        self._pending_bodies: dict[Path, bytes] = {}
        self.journal = DeliveryJournal(self.path / "deliveries.jsonl", self._locked)
        self._open(shards)

    # --- locking and transactions -----------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The thread mutex plus the cross-process file lock, re-entrant."""
        with self._mutex:
            if self._held == 0:
                try:
                    self._lock.acquire(timeout=self._lock_timeout)
                except filelock.Timeout as e:
                    raise StoreError(f"{self.path / '.lock'}: store is locked by another "
                                     f"process for over {self._lock_timeout:.0f} s",
                                     "wait for the running digest command to finish, or "
                                     "look for a stuck one") from e
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
                if self._held == 0:
                    self._lock.release()

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
        return [*self._shards.values(), self._subs, self._main]

    def _commit(self) -> None:
        for parent in {p.parent for p in self._pending_bodies}:
            if not parent.is_dir():
                parent.mkdir(mode=DIR_MODE)
                fsync_path(parent.parent, directory=True)
        atomic_write_many(self._pending_bodies, self.tmpdir)
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

    # --- open, schema and upgrade -------------------------------------------------------

    def _open(self, shards: int | None) -> None:
        version = self._schema_version()
        if version == SCHEMA_VERSION:
            self._nshards = int(self.meta_get("index_shards") or DEFAULT_SHARDS)
            return
        with self.transaction():
            version = self._schema_version()  # another process may have done it meanwhile
            if version is None:
                self._meta_put("schema_version", SCHEMA_VERSION)
                self._meta_put("index_shards", self._nshards)
            elif version < SCHEMA_VERSION:
                upgrade(self, version)
            elif version > SCHEMA_VERSION:
                raise StoreError(f"{self._main.path}: schema version {version} is newer than "
                                 f"this digest understands ({SCHEMA_VERSION})",
                                 "upgrade digest, or point [store] path at another directory")
            else:
                self._nshards = int(self.meta_get("index_shards") or DEFAULT_SHARDS)

    def _schema_version(self) -> int | None:
        """None for a fresh store; 0 for a plain TinyDB file without a meta table."""
        data = self._main.read()
        v = self.meta_get("schema_version")
        if v is not None:
            if not isinstance(v, int):
                raise StoreError(f"{self._main.path}: meta schema_version is {v!r}",
                                 "restore the file from a backup")
            return v
        return 0 if (data or self._subs.path.exists()) else None

    @property
    def shard_count(self) -> int:
        return self._nshards

    # --- meta and quarantine (stories.json) --------------------------------------------

    def meta_get(self, key: str, default: Any = None) -> Any:
        with self._mutex:
            doc = _tinydb(self._main).table("meta").get(Query().key == key)
            return doc["value"] if doc else default

    def _meta_put(self, key: str, value: Any) -> None:
        _tinydb(self._main).table("meta").upsert({"key": key, "value": value},
                                                 Query().key == key)

    def meta_set(self, key: str, value: Any) -> None:
        with self.transaction():
            self._meta_put(key, value)

    def quarantine_get(self, path: str) -> dict | None:
        with self._mutex:
            doc = _tinydb(self._main).table("quarantine").get(Query().path == str(path))
            return dict(doc) if doc else None

    def quarantine_put(self, path: str, fingerprint: str, reason: str) -> None:
        rec = {"path": str(path), "fingerprint": fingerprint, "reason": reason}
        with self.transaction():
            t = _tinydb(self._main).table("quarantine")
            old = t.get(Query().path == str(path))
            if old != rec:
                t.upsert(rec, Query().path == str(path))

    def quarantine_clear(self, path: str) -> None:
        with self.transaction():
            t = _tinydb(self._main).table("quarantine")
            if t.contains(Query().path == str(path)):
                t.remove(Query().path == str(path))

    def quarantine_list(self) -> list[dict]:
        with self._mutex:
            return [dict(d) for d in _tinydb(self._main).table("quarantine")]

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
                self._pending_bodies[self.body_path(story.id)] = _dumps(
                    story.to_dict(), f"story {story.id}")
            for n, plan in plans.items():
                self._apply_plan(n, plan)
        return results

    def _apply_plan(self, n: int, plan: dict[str, tuple[int | None, dict]]) -> None:
        if not plan:
            return
        table = _tinydb(self._shard(n)).table("stories")
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
                return Story.from_dict(orjson.loads(raw))
            except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as e:
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

    # --- subscribers (subscribers.json) --------------------------------------------------

    def _subs_index(self) -> dict[str, int]:
        table = self._subs.read().get("subscribers", {})
        if self._sub_idx is None or self._sub_idx[0] != self._subs.generation:
            idx = {_email_key(d["email"]): int(i) for i, d in table.items()}
            self._sub_idx = (self._subs.generation, idx)
        return self._sub_idx[1]

    def _sub_raw(self, email: str) -> tuple[int, dict] | None:
        doc_id = self._subs_index().get(_email_key(email))
        if doc_id is None:
            return None
        return doc_id, self._subs.read()["subscribers"][str(doc_id)]

    def get_subscriber(self, email: str) -> Subscriber | None:
        with self._mutex:
            found = self._sub_raw(email)
            return Subscriber.from_dict(found[1]) if found else None

    def list_subscribers(self, status: str | None = None) -> list[Subscriber]:
        """Subscribers in the order they were added, optionally of one status."""
        with self._mutex:
            docs = list(self._subs.read().get("subscribers", {}).values())
        return [Subscriber.from_dict(d) for d in docs if status is None or d.get("status") == status]

    def add_subscriber(self, sub: Subscriber) -> Subscriber:
        """Store a new subscriber (email lowercased); StoreError if it already exists."""
        sub = dataclasses.replace(sub, email=_email_key(sub.email))
        with self.transaction():
            if self._sub_raw(sub.email):
                raise StoreError(f"subscriber {sub.email} already exists",
                                 "use `digest subscribers remove` first, or import to update")
            doc_id = _tinydb(self._subs).table("subscribers").insert(sub.to_dict())
            self._subs_index()[sub.email] = doc_id
        return sub

    def upsert_subscribers(self, subs: Iterable[Subscriber]) -> tuple[int, int]:
        """Add or replace many subscribers in one write; returns (added, updated).

        An existing row keeps its `created` time and, when the new one has none, its secret."""
        new: dict[str, dict] = {}
        changed: dict[int, dict] = {}
        with self.transaction():
            idx = self._subs_index()
            table = self._subs.read().get("subscribers", {})
            for sub in subs:
                rec = sub.to_dict()
                key = rec["email"] = _email_key(sub.email)
                doc_id = idx.get(key)
                if doc_id is None:
                    new[key] = rec  # a repeated email in the batch: the last one wins
                    continue
                old = changed.get(doc_id) or table[str(doc_id)]
                rec["created"] = old.get("created") or rec["created"]
                if not rec["secret"]:
                    rec["secret"] = old.get("secret", "")
                if rec != old:
                    changed[doc_id] = rec
            t = _tinydb(self._subs).table("subscribers")
            if new:
                for doc_id, key in zip(t.insert_multiple(new.values()), new, strict=True):
                    idx[key] = doc_id
            if changed:
                def replace(doc: dict) -> None:
                    rec = by_key[_email_key(doc["email"])]
                    doc.clear()
                    doc.update(rec)
                by_key = {r["email"]: r for r in changed.values()}
                t.update(replace, doc_ids=list(changed))
        return len(new), len(changed)

    def update_subscriber(self, email: str, **changes: Any) -> Subscriber:
        """Change fields of a subscriber (Subscriber field names); StoreError if unknown."""
        with self.transaction():
            found = self._sub_raw(email)
            if found is None:
                raise StoreError(f"no subscriber {_email_key(email)}",
                                 "list them with `digest subscribers list`")
            doc_id, doc = found
            try:
                sub = dataclasses.replace(Subscriber.from_dict(doc), **changes)
            except TypeError as e:
                raise StoreError(f"cannot update subscriber {email}: {e}",
                                 "use fields of digest.models.Subscriber") from e
            sub.email = _email_key(sub.email)
            if sub.email != _email_key(email) and self._sub_raw(sub.email):
                raise StoreError(f"subscriber {sub.email} already exists",
                                 "remove one of the two addresses first")
            rec = sub.to_dict()
            if rec != doc:
                _tinydb(self._subs).table("subscribers").update(
                    lambda d: (d.clear(), d.update(rec)), doc_ids=[doc_id])
                idx = self._subs_index()
                idx.pop(_email_key(email), None)
                idx[sub.email] = doc_id
        return sub

    def remove_subscriber(self, email: str) -> bool:
        with self.transaction():
            found = self._sub_raw(email)
            if found is None:
                return False
            _tinydb(self._subs).table("subscribers").remove(doc_ids=[found[0]])
            self._subs_index().pop(_email_key(email), None)
        return True


# --- schema upgrades ------------------------------------------------------------------------


def _upgrade_0(store: Store) -> None:
    """Version 0 is a plain TinyDB store: full stories inside stories.json, no meta.
    Move each story to a body file + sharded index record; lowercase subscriber emails."""
    main = store._main.read()
    old = main.pop("stories", {})
    store._meta_put("index_shards", store._nshards)
    for n in range(store.shard_count):  # rebuild from scratch: a half-done upgrade is redone
        store._shard(n).write({"stories": {}})
        store._story_idx.pop(n, None)
    try:
        stories = [Story.from_dict(d) for d in old.values()]
    except (KeyError, ValueError, TypeError) as e:
        raise StoreError(f"{store._main.path}: a version-0 story cannot be read ({e})",
                         "repair or remove that record, then open the store again") from e
    store.upsert_stories(stories)
    subs = store._subs.read().get("subscribers", {})
    if subs:
        store._subs.write({"subscribers": {
            k: {**d, "email": _email_key(d["email"])} for k, d in subs.items()}})
    store._main.write(main)


_UPGRADES: dict[int, Callable[[Store], None]] = {0: _upgrade_0}


def upgrade(store: Store, from_version: int) -> None:
    """Run every upgrade step from `from_version` to SCHEMA_VERSION inside one transaction."""
    with store.transaction():
        for v in range(from_version, SCHEMA_VERSION):
            _UPGRADES[v](store)
        store._meta_put("schema_version", SCHEMA_VERSION)


# --- delivery journal -----------------------------------------------------------------------


class DeliveryJournal:
    """Append-only JSON-lines log of deliveries with an incrementally built index."""

    def __init__(self, path: Path, lock: Callable[[], Any]) -> None:
        self.path = Path(path)
        self._lock = lock
        self._mutex = threading.Lock()
        self._reset()

    def _reset(self, ino: int = 0) -> None:
        self._ino, self._offset, self._lineno = ino, 0, 0
        self._latest: dict[tuple[str, str, str], dict] = {}
        self._last: dict[tuple[str, str], dict] = {}
        self._sent: dict[str, set[str]] = {}
        self._sent_frozen: dict[str, frozenset[str]] = {}

    def append(self, records: list[dict]) -> None:
        """Append a batch with one write + fsync under the store lock."""
        if not records:
            return
        for r in records:
            if not isinstance(r, dict) or r.get("state") not in JOURNAL_STATES or \
                    not all(isinstance(r.get(k), str) for k in ("digest", "edition", "email")):
                raise StoreError(f"{self.path}: bad journal record {r!r}",
                                 "records need digest, edition, email (strings) and a state "
                                 f"in {JOURNAL_STATES}")
        data = b"".join(_dumps(r, str(self.path)) + b"\n" for r in records)
        with self._lock():
            created = not self.path.exists()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE)
            except OSError as e:
                raise _write_error(self.path, e) from e
            try:
                size = os.fstat(fd).st_size
                good = _drop_torn_tail(fd, size)
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                except OSError as e:
                    os.ftruncate(fd, good)  # leave no half batch behind
                    raise _write_error(self.path, e) from e
            finally:
                os.close(fd)
            if created:
                fsync_path(self.path.parent, directory=True)

    def _catch_up(self) -> None:
        """Read only the bytes added since the last call (complete lines only)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._offset:
                self._reset()
            return
        if st.st_ino != self._ino or st.st_size < self._offset:
            self._reset(st.st_ino)
        if st.st_size == self._offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(st.st_size - self._offset)
        end = data.rfind(b"\n")
        if end < 0:
            return  # only a torn (or still being written) final line
        for line in data[: end + 1].split(b"\n")[:-1]:
            self._lineno += 1
            if line.strip():
                self._index(self._parse(line, self._lineno))
        self._offset += end + 1

    def _parse(self, line: bytes, lineno: int) -> dict:
        try:
            rec = orjson.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            return rec
        except ValueError as e:
            raise StoreError(f"{self.path}:{lineno}: corrupt journal line ({e})",
                             "fix or delete that line by hand; the other lines are intact") from e

    def _index(self, rec: dict) -> None:
        email = _email_key(str(rec.get("email", "")))
        digest, edition = str(rec.get("digest", "")), str(rec.get("edition", ""))
        self._latest[(digest, edition, email)] = rec
        self._last[(digest, email)] = rec
        if rec.get("state") == "sent" and rec.get("stories"):
            self._sent.setdefault(email, set()).update(map(str, rec["stories"]))
            self._sent_frozen.pop(email, None)

    def state(self, digest: str, edition: str, email: str) -> dict | None:
        """The latest record for (digest, edition, email), or None."""
        with self._mutex:
            self._catch_up()
            rec = self._latest.get((digest, edition, _email_key(email)))
            return dict(rec) if rec else None

    def latest(self, digest: str, email: str) -> dict | None:
        """The latest record of any edition of `digest` for `email`, or None."""
        with self._mutex:
            self._catch_up()
            rec = self._last.get((digest, _email_key(email)))
            return dict(rec) if rec else None

    def sent_story_ids(self, email: str) -> frozenset[str]:
        """Ids of every story in a digest marked `sent` to `email`."""
        with self._mutex:
            self._catch_up()
            key = _email_key(email)
            frozen = self._sent_frozen.get(key)
            if frozen is None:
                frozen = self._sent_frozen[key] = frozenset(self._sent.get(key, ()))
            return frozen

    def records(self) -> Iterator[dict]:
        """Every complete record in file order (a torn final line is skipped)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n")
        for n, line in enumerate(data[: end + 1].split(b"\n")[:-1], 1):
            if line.strip():
                yield self._parse(line, n)


def _drop_torn_tail(fd: int, size: int) -> int:
    """Cut a torn final line (a writer killed mid-append) so the next record starts clean.
    Returns the new size."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            good = start + nl + 1
            break
        pos = start
    else:
        good = 0
    os.ftruncate(fd, good)
    return good


__all__ = ["AtomicJSONStorage", "DeliveryJournal", "Store", "atomic_write", "upgrade"]
