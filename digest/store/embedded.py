"""The embedded (default) backend, `Store`: TinyDB files, story bodies and a journal, crash-safe."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from tinydb import Query

from digest import codec
from digest.errors import StoreError
from digest.fileio import atomic_write_many, fsync_path, locked, write_error, write_file
from digest.models import Story, Subscriber, content_hash_of
from digest.store.base import DamagedBody
from digest.store.journal import DeliveryJournal
from digest.store.migrations import SCHEMA_VERSION, upgrade
from digest.store.storage import DIR_MODE, FILE_MODE, AtomicJSONStorage, encode, tinydb
from digest.store.subscribers import DEFAULT_SUBSCRIBER_SHARDS, SubscriberTable

# Index shards for a new store. One 10k-story index file costs ~45 ms to rewrite; 32 shards
# keep a one-story write near 2 ms (bench/bench_store.py). The count used is kept in meta.
DEFAULT_SHARDS = 32
LOCK_TIMEOUT = 120.0  # seconds; a stuck holder then gets a StoreError instead of a hang
# Stories per index shard, each with the shard file's (mtime_ns, size) when counted:
# `story_count` (every `digest check`) trusts a count only while its shard's stat matches, so
# a stale or missing cache costs a parse of that shard, never a wrong count.
COUNTS_FILE = "index-counts.json"
# Ids become file names; anything else (untrusted structured story files) is hashed.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
# More body files than this in one commit: one syncfs instead of an fsync per file and per
# directory (a 1,000-story ingest batch paid ~1,000 file and ~300 directory fsyncs).
SYNCFS_OVER = 64


def _hash_and_dict(story: Story) -> tuple[str, dict[str, Any]]:
    d = story.to_dict()
    try:
        return content_hash_of(d), d
    except UnicodeError as e:
        raise StoreError(f"story {story.id} ({story.origin}): text is not valid "
                         f"Unicode ({e.reason})", "fix the input file") from e


def encode_story(story: Story) -> tuple[str, bytes]:
    """(content hash, body file bytes) of a story, from one `to_dict`: what `upsert_stories`
    computes for it (ingest workers call this, so the storing process does not). Raises
    StoreError for text that is not valid Unicode."""
    h, d = _hash_and_dict(story)
    return h, encode(d, f"story {story.id}")


_libc: Any = None


def _syncfs(path: Path) -> None:
    """Flush the file system holding `path`: every file written so far, data and names, is
    durable when it returns (one journal commit). Raises OSError."""
    global _libc
    if _libc is None:
        import ctypes

        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.syncfs  # noqa: B018 - probe: not every libc has it
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        os.sync()  # not Linux: the portable, broader flush
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def _index_record(story: Story, content_hash: str) -> dict[str, Any]:
    rec = story.summary_dict()
    rec["summary"] = dict(story.summary)
    rec["origin"] = story.origin
    rec["hash"] = content_hash
    return rec


# What digest keeps at the top of a store directory (docs/ARCHITECTURE.md, "Embedded files"),
# including the files of older schemas and the daemon's lock (pipeline/project.DAEMON_LOCK).
STORE_NAMES = frozenset({"stories.json", "index", "bodies", "subscribers", "journal", ".tmp",
                         ".lock", "daemon.lock", "deliveries.jsonl", "subscribers.json",
                         COUNTS_FILE})
_SEND_LOCK = re.compile(r"send-[0-9a-f]{1,64}\.lock")
# Not digest's, but no one else's either: a file system's own (a volume made for the store)
# and the placeholders that keep an empty directory in git (this repository's store/).
NOT_COUNTED = frozenset({"lost+found", ".gitkeep", ".gitignore", ".keep"})
_STORE_HINT = ("point [store] path at a new directory (digest creates it) or an empty one: "
               "digest keeps the store's directory to its owner (mode 0700)")


def _ours(name: str) -> bool:
    return name in STORE_NAMES or name in NOT_COUNTED or bool(_SEND_LOCK.fullmatch(name))


def _prepare_dir(path: Path) -> None:
    """Create the store directory, or check that an existing one can be the store's.

    A directory digest creates is made 0700. An existing one is adopted only when it is empty
    or holds nothing but digest's files (`STORE_NAMES`): one with other files is refused,
    since the store's directory is closed to its owner and a shared directory (`[store] path
    = "/tmp"` as root) must not be. So is one every user may write in (mode o+w: /tmp, a
    volume made 0777), even when empty, as /tmp is at boot. The mode of an existing
    directory is changed only once it is a store (holds `stories.json` and only digest's
    files): an older digest made its store with the umask's mode; an empty directory adopted
    keeps its mode until then."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # the umask only removes bits
        return
    foreign = sorted(n for n in names if not _ours(n))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more"
                                          if len(foreign) > 3 else "")
        raise StoreError(f"{path}: the store directory holds files that are not digest's "
                         f"({shown})", _STORE_HINT)
    st = os.stat(path)
    if st.st_mode & stat.S_IWOTH:
        raise StoreError(f"{path}: every user may write in this directory (mode "
                         f"{stat.S_IMODE(st.st_mode):o}): it cannot hold the store",
                         _STORE_HINT)
    if "stories.json" in names and st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(path, DIR_MODE)  # a store an older digest (or a loose umask) left open


def _open_error(path: Path, e: OSError) -> StoreError:
    """Why the store could not be opened: a directory that exists but is another user's (or
    not writable) is not one we failed to create."""
    try:
        st = path.stat()
    except OSError:
        return StoreError(f"{path}: cannot create the store directory ({e.strerror})",
                          "set [store] path in config.toml to a writable directory")
    if st.st_uid != os.getuid():
        return StoreError(f"{path}: the store directory belongs to another user (uid "
                          f"{st.st_uid}); cannot write in it ({e.strerror})",
                          "run digest as the user who owns the store, or set [store] path "
                          "to a directory of your own")
    where = e.filename or path
    return StoreError(f"{where}: cannot write in the store directory ({e.strerror})",
                      "check the permissions of the store directory, or set [store] path "
                      "to a writable directory")


class Store:
    """The store directory: see docs/ARCHITECTURE.md for the layout and the API."""

    kind = "embedded"

    def __init__(self, path: Path, shards: int | None = None, lock_timeout: float = LOCK_TIMEOUT):
        self.path = Path(path)
        self.tmpdir = self.path / ".tmp"
        try:
            _prepare_dir(self.path)
            for d in (self.tmpdir, self.path / "index", self.path / "bodies",
                      self.path / "subscribers"):
                d.mkdir(mode=DIR_MODE, exist_ok=True)
        except OSError as e:
            raise _open_error(self.path, e) from e
        self._mutex = threading.RLock()
        self._lock_timeout = lock_timeout
        self._depth = 0
        self._held = 0
        self.epoch = 0
        self._sharded_epoch = -1  # the transaction that copied subscribers.json
        self._nshards = int(shards or DEFAULT_SHARDS)
        self._main = AtomicJSONStorage(self.path / "stories.json", self)
        self._subscribers = SubscriberTable(self.path, self, self.transaction, self._mutex)
        self._shards: dict[int, AtomicJSONStorage] = {}
        self._story_idx: dict[int, tuple[int, dict[str, int]]] = {}
        self._pending_bodies: dict[Path, bytes] = {}
        # journal/ (segments, checkpoint, archive); a schema-1 deliveries.jsonl is upgraded
        # by migrations.UPGRADES[1] below (or by the journal itself if it finds one).
        self.journal = DeliveryJournal(self.path, self._locked, tmpdir=self.tmpdir)
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
        return [*self._shards.values(), *self._subscribers.storages(), self._main]

    def _commit(self) -> None:
        self._write_bodies()
        self._pending_bodies.clear()
        changed = [n for n, s in self._shards.items() if s.dirty]
        for s in self._storages():
            s.flush()
        if changed:
            self._save_counts(changed)

    def _save_counts(self, shards: list[int]) -> None:
        """Record the story counts of the shards this commit wrote, beside the valid ones
        already recorded (after the shards are on disk: a kill in between leaves a count
        whose stat no longer matches, i.e. a recount). A cache: not fsynced, never fatal."""
        counts = self._counts()
        for n in shards:
            s = self._shards[n]
            if s._sig is not None and s._data is not None:
                counts[f"{n:02x}.json"] = [*s._sig[1:], len(s._data.get("stories", {}))]
        try:
            tmp = self.tmpdir / COUNTS_FILE
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                f.write(codec.dumps(counts))
            os.replace(tmp, self.path / COUNTS_FILE)
        except OSError:
            pass  # the next story_count parses the shards instead

    def _counts(self, stats: dict[str, tuple[int, int, int]] | None = None
                ) -> dict[str, list[int]]:
        """The recorded counts whose shard file still has the recorded stat."""
        try:
            raw = codec.loads((self.path / COUNTS_FILE).read_bytes())
        except (OSError, codec.DecodeError):
            return {}
        if not isinstance(raw, dict):
            return {}
        stats = self._shard_stats() if stats is None else stats
        # (mtime_ns, size), not the inode: a copy or a restore (copy2 keeps mtimes) keeps them
        return {name: v for name, v in raw.items() if isinstance(v, list) and len(v) == 3
                and name in stats and tuple(v[:2]) == stats[name][1:]}

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
        if self._schema_version() != SCHEMA_VERSION or self._subscribers.legacy_path.exists():
            # The lock spans the commit and the removal of subscribers.json after it: a kill
            # in between leaves the old file, and the next open rebuilds the shards from it.
            with self._locked():
                with self.transaction():
                    version = self._schema_version()  # another process may have done it
                    if version is None:
                        self._meta_put("schema_version", SCHEMA_VERSION)
                        self._meta_put("index_shards", self._nshards)
                        self._meta_put("subscriber_shards", DEFAULT_SUBSCRIBER_SHARDS)
                    else:
                        upgrade(self, version, str(self._main.path))
                        self.shard_subscribers()
                self._subscribers.remove_legacy()
        self._nshards = int(self.meta_get("index_shards") or DEFAULT_SHARDS)
        self._subscribers.nshards = int(self.meta_get("subscriber_shards")
                                        or DEFAULT_SUBSCRIBER_SHARDS)

    def shard_subscribers(self) -> None:
        """Schema 1 → 2 (and the redo after a kill): copy `subscribers.json` into the
        `subscribers/NN.json` shards in the open transaction; `_open` removes the old file
        after the commit. Does nothing when there is no old file or this transaction did it."""
        if self._sharded_epoch == self.epoch:
            return
        self._sharded_epoch = self.epoch
        n = self.meta_get("subscriber_shards")
        if n is None:
            n = DEFAULT_SUBSCRIBER_SHARDS
            self._meta_put("subscriber_shards", n)
        self._subscribers.nshards = int(n)
        self._subscribers.adopt_legacy()

    def _schema_version(self) -> int | None:
        """None for a fresh store; 0 for files without a version (no digest writes those)."""
        data = self._main.read()
        v = self.meta_get("schema_version")
        if v is not None:
            if not isinstance(v, int):
                raise StoreError(f"{self._main.path}: meta schema_version is {v!r}",
                                 "restore the file from a backup")
            return v
        return 0 if (data or self._subscribers.legacy_path.exists()) else None

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

    def meta_items(self) -> dict[str, Any]:
        """Every meta key and value (for `store copy`)."""
        with self._mutex:
            docs = tinydb(self._main).table("meta").all()
        return {d["key"]: d["value"] for d in sorted(docs, key=lambda d: d["key"])}

    def quarantine_items(self) -> list[dict]:
        """Every quarantine entry by path (for `store copy`)."""
        with self._mutex:
            docs = tinydb(self._main).table("quarantine").all()
        return sorted((dict(d) for d in docs), key=lambda d: d["path"])

    def signature(self) -> str:
        """Identity of the index files (inode, mtime, size): every story write replaces a
        shard, so an equal signature means the same stories."""
        rows = []
        with os.scandir(self.path / "index") as it:
            for e in it:
                if e.name.endswith(".json"):
                    st = e.stat()
                    rows.append(f"{e.name}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
        return hashlib.sha256("|".join(sorted(rows)).encode()).hexdigest()[:32]

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

    def upsert_stories(self, stories: Iterable[Story], force: Collection[str] = (),
                       encoded: Mapping[str, tuple[str, bytes]] | None = None
                       ) -> list[tuple[str, str]]:
        """Add or update stories; unchanged ones (same content hash) touch no file, except
        the ids in `force` (new times for the same text: `ingest --as-of`). `encoded`: story
        id → `encode_story(story)` of that very story, computed elsewhere (ingest's workers);
        the others are computed here."""
        results: list[tuple[str, str]] = []
        with self.transaction():
            # Changes per shard: doc id (None = new) and the index record.
            plans: dict[int, dict[str, tuple[int | None, dict]]] = {}
            for story in stories:
                n = self._shard_of(story.id)
                idx, plan = self._index_of(n), plans.setdefault(n, {})
                pre = encoded.get(story.id) if encoded else None
                if pre is not None:
                    h, d = pre[0], None
                else:
                    h, d = _hash_and_dict(story)
                if story.id in plan:
                    doc_id, cur = plan[story.id][0], plan[story.id][1]["hash"]
                elif story.id in idx:
                    doc_id = idx[story.id]
                    cur = self._shard(n).read()["stories"][str(doc_id)].get("hash")
                else:
                    doc_id, cur = None, None
                if cur == h and story.id not in force and self._body_sound(story.id):
                    results.append((story.id, "unchanged"))
                    continue
                # Same hash but a missing or damaged body file: rewrite it, so "ingest the
                # story file again" (the hint of get_story) repairs the store.
                results.append((story.id, "added" if cur is None else "updated"))
                plan[story.id] = (doc_id, _index_record(story, h))
                self._pending_bodies[self.body_path(story.id)] = pre[1] if pre is not None \
                    else encode(d, f"story {story.id}")
            for n, plan in plans.items():
                self._apply_plan(n, plan)
        return results

    def _write_bodies(self) -> None:
        """Write the transaction's body files, durably, before its index is (a kill at any
        moment leaves no index record naming a missing or partial body). A few: each by
        `atomic_write_many` (fsynced). Many (an ingest batch): a body whose file does not
        exist is written in place (no index record names it before this commit, or it was
        already missing), a replaced one is staged in .tmp/; none is fsynced; one syncfs,
        the renames of the staged ones, and a second syncfs (only when there were renames)
        make all of them durable, instead of an fsync per file and per directory."""
        bodies = self._pending_bodies
        many = len(bodies) > SYNCFS_OVER
        for parent in {p.parent for p in bodies}:
            if not parent.is_dir():
                parent.mkdir(mode=DIR_MODE)
                if not many:
                    fsync_path(parent.parent, directory=True)
        if not many:
            atomic_write_many(bodies, self.tmpdir, mode=FILE_MODE)
            return
        tmpdir, pid = self.tmpdir, os.getpid()

        def write(part: list[tuple[Path, bytes]]) -> list[tuple[Path, Path]]:
            staged = []
            for path, data in part:
                try:
                    try:
                        write_file(path, data, mode=FILE_MODE, sync=False)
                    except FileExistsError:
                        tmp = tmpdir / f"{path.name}.{pid}.tmp"
                        write_file(tmp, data, mode=FILE_MODE, sync=False)
                        staged.append((tmp, path))
                except OSError as e:
                    raise write_error(path, e) from e
            return staged

        # Threads, each a share of the files: creating a file may wait on the file system's
        # journal (~0.4 ms each here while other processes sync), and those waits overlap.
        items = list(bodies.items())
        with ThreadPoolExecutor(max_workers=8) as pool:
            staged = [s for part in pool.map(write, [items[k::8] for k in range(8)]) for s in part]
        path = self.path
        try:
            _syncfs(self.path)
            if staged:
                for tmp, path in staged:
                    os.replace(tmp, path)
                _syncfs(self.path)
        except OSError as e:
            raise write_error(path, e) from e

    def _body_sound(self, story_id: str) -> bool:
        """True when the story's body file (or the one pending in this transaction) decodes
        as that story; costs one small read per unchanged story at ingest."""
        path = self.body_path(story_id)
        raw = self._pending_bodies.get(path)
        try:
            if raw is None:
                raw = path.read_bytes()
            return Story.from_dict(codec.loads(raw)).id == story_id
        except (OSError, KeyError, ValueError, TypeError, AttributeError):
            return False

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
                    raise DamagedBody(story_id,
                                      f"{path}: body file of story {story_id} is missing",
                                      "ingest the story file again to rewrite it") from e
            try:
                return Story.from_dict(codec.loads(raw))
            except (KeyError, ValueError, TypeError) as e:  # codec.DecodeError is a ValueError
                raise DamagedBody(story_id, f"{path}: corrupt story body ({e})",
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

    def story_hashes(self) -> dict[str, str | None]:
        """story id → stored content hash, for every story: `story_hash` of each in one pass
        over the index (the publisher asks for all 10k at once)."""
        with self._mutex:
            return {rec["id"]: rec.get("hash") for n in range(self.shard_count)
                    for rec in self._shard(n).read().get("stories", {}).values()}

    def story_count(self) -> int:
        """How many stories the index holds: from the recorded per-shard counts where the
        shard is unchanged since (a stat each), parsing only the other shards."""
        with self._mutex:
            if self.in_transaction:  # uncommitted records count
                return sum(len(self._shard(n).read().get("stories", {}))
                           for n in range(self.shard_count))
            stats = self._shard_stats()
            counts = self._counts(stats)
            total = 0
            for n in range(self.shard_count):
                name = f"{n:02x}.json"
                if name in counts:
                    total += counts[name][2]
                elif name in stats:  # no file: no stories in that shard
                    total += len(self._shard(n).read().get("stories", {}))
            return total

    # --- the index by shard, for the incremental publisher (digest.publish.keys) --------

    def _shard_stats(self) -> dict[str, tuple[int, int, int]]:
        """Index shard file name → (inode, mtime_ns, size). Every story write replaces its
        shard's file, so a shard whose stat is unchanged holds the same records."""
        out: dict[str, tuple[int, int, int]] = {}
        with os.scandir(self.path / "index") as it:
            for e in it:
                if e.name.endswith(".json"):
                    st = e.stat()
                    out[e.name] = (st.st_ino, st.st_mtime_ns, st.st_size)
        return out

    def index_stats(self) -> dict[str, tuple[int, int, int]]:
        """Index shard file name → (inode, mtime_ns, size), for the incremental publisher."""
        return self._shard_stats()

    def shard_name(self, story_id: str) -> str:
        """The index shard file (a key of `index_stats`) holding `story_id`."""
        return f"{self._shard_of(story_id):02x}.json"

    def shard_records(self, names: Iterable[str]) -> dict[str, list[dict]]:
        """The index records of the named shard files (a missing shard: none)."""
        with self._mutex:
            return {name: list(self._shard(int(name[:-5], 16)).read().get("stories", {}).values())
                    for name in names}

    # --- subscribers (subscribers/NN.json shards, see subscribers.py) ------------------

    def get_subscriber(self, email: str) -> Subscriber | None:
        return self._subscribers.get(email)

    def list_subscribers(self, status: str | None = None) -> list[Subscriber]:
        """Subscribers in email order, optionally of one status (prefer iter_subscribers)."""
        return self._subscribers.select(status)

    def iter_subscribers(self, status: str | None = None) -> Iterator[Subscriber]:
        """The same rows streamed in email order: one Subscriber built at a time."""
        return self._subscribers.iterate(status)

    def expire_pending(self, older_than: datetime, email: str | None = None) -> int:
        """Drop `pending` subscribers created before `older_than`; returns how many. With
        `email` (the web's subscribe) only that address's shard is swept, and rewritten even
        when nothing expired, so known and unknown addresses cost the same."""
        return self._subscribers.expire_pending(older_than, email)

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

    def close(self) -> None:
        """Nothing to release: files are opened per read and write, locks per call."""

    # --- coordination between processes (the protocol's send_lock and leader) -----------

    @contextmanager
    def send_lock(self, digest: str) -> Iterator[None]:
        """One sender per digest at a time across processes (the daemon and a manual `digest
        send`): a file lock, so a killed sender leaves none behind. A second sender gets a
        DeliveryError at once rather than waiting behind a long send."""
        from digest.errors import SendBusy

        with locked(self.path / f"send-{digest.encode().hex()[:64]}.lock", timeout=0,
                    what=f"digest {digest!r}", error=SendBusy, mode=FILE_MODE,
                    hint="another `digest send` is sending it: wait for it to finish; a rerun "
                         "then sends only what is missing"):
            yield

    @contextmanager
    def leader(self, job: str) -> Iterator[bool]:
        """An embedded store lives on one machine: every process may run `job` (the store
        lock already keeps writers apart)."""
        yield True
