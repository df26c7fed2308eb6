"""The embedded store's subscribers: TinyDB shards `subscribers/NN.json` keyed by a hash of
`email_key`, so one subscribe, confirm or unsubscribe rewrites one shard, not every row.

Stores written before schema 2 kept every row in one `subscribers.json`; `adopt_legacy`
copies it into the shards (the store removes the old file only after that commit, and redoes
the copy on any open that still finds it, so a kill midway loses nothing)."""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from digest import codec
from digest.errors import StoreError
from digest.fileio import fsync_path
from digest.models import Subscriber, parse_iso
from digest.store.base import email_key
from digest.store.storage import AtomicJSONStorage, Owner, tinydb

# Shards for a new store (the count used is kept in meta `subscriber_shards`). At 100,000
# subscribers one shard is ~1,600 rows (~300 KB): a change rewrites that, not 20 MB.
DEFAULT_SUBSCRIBER_SHARDS = 64
LEGACY_FILE = "subscribers.json"
TABLE = "subscribers"


def shard_of(email: str, nshards: int) -> int:
    """The shard holding `email` (stable across processes and versions: blake2b of the key)."""
    h = hashlib.blake2b(email_key(email).encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(h, "big") % nshards


class SubscriberTable:
    """Subscribers of one store; writes go through the store's `transaction`. Each shard's
    email → document id index is rebuilt whenever that shard was reloaded (another process
    wrote it)."""

    def __init__(self, root: Path, owner: Owner,
                 transaction: Callable[[], AbstractContextManager[Any]],
                 mutex: threading.RLock, nshards: int = DEFAULT_SUBSCRIBER_SHARDS) -> None:
        self.root = Path(root)  # the store directory
        self.dir = self.root / "subscribers"
        self.legacy_path = self.root / LEGACY_FILE
        self._owner = owner
        self.transaction = transaction
        self._mutex = mutex
        self.nshards = nshards
        self._shards: dict[int, AtomicJSONStorage] = {}
        self._idx: dict[int, tuple[int, dict[str, int]]] = {}

    # --- shards ---------------------------------------------------------------------------

    def storages(self) -> list[AtomicJSONStorage]:
        """The shard storages opened so far (the store flushes the dirty ones at commit)."""
        return list(self._shards.values())

    def storage(self, n: int) -> AtomicJSONStorage:
        s = self._shards.get(n)
        if s is None:
            s = self._shards[n] = AtomicJSONStorage(self.dir / f"{n:02x}.json", self._owner)
        return s

    def _rows(self, n: int) -> dict[str, dict]:
        return self.storage(n).read().get(TABLE, {})

    def _index(self, n: int) -> dict[str, int]:
        storage = self.storage(n)
        rows = storage.read().get(TABLE, {})
        cached = self._idx.get(n)
        if cached is None or cached[0] != storage.generation:
            idx = {email_key(d["email"]): int(i) for i, d in rows.items()}
            cached = self._idx[n] = (storage.generation, idx)
        return cached[1]

    def _raw(self, email: str) -> tuple[int, int, dict] | None:
        """(shard, doc id, row) of `email`, or None."""
        n = shard_of(email, self.nshards)
        doc_id = self._index(n).get(email_key(email))
        if doc_id is None:
            return None
        return n, doc_id, self._rows(n)[str(doc_id)]

    # --- reads ----------------------------------------------------------------------------

    def get(self, email: str) -> Subscriber | None:
        with self._mutex:
            found = self._raw(email)
            return Subscriber.from_dict(found[2]) if found else None

    def iterate(self, status: str | None = None) -> Iterator[Subscriber]:
        """Subscribers in email order, optionally of one status: each shard's matching rows
        sorted by key, merged lazily, a Subscriber built only when it is reached.

        The merge needs every shard up front, so each is held as its sorted rows' compact
        JSON lines in one bytes object (~200 bytes a row, against ~1 KB as dicts), parsed
        one row at a time; a shard not cached already is read for this pass only, so a send
        to 100,000 subscribers does not keep every row as dicts in the shard caches for the
        store's life. A cached shard (this process read or changed it: uncommitted changes
        inside a transaction) is taken from its cache."""
        def lines(n: int) -> bytes:
            with self._mutex:
                rows = self.storage(n).peek().get(TABLE, {})
                keyed = sorted((email_key(d["email"]), i) for i, d in rows.items()
                               if status is None or d.get("status") == status)
                return b"\n".join([codec.dumps(rows[i]) for _, i in keyed])

        def shard(blob: bytes) -> Iterator[tuple[str, dict]]:
            start, end = 0, len(blob)
            while start < end:
                stop = blob.find(b"\n", start)
                if stop < 0:
                    stop = end
                doc = codec.loads(blob[start:stop])
                start = stop + 1
                yield email_key(doc["email"]), doc

        blobs = [lines(n) for n in range(self.nshards)]
        merged = heapq.merge(*(shard(b) for b in blobs if b), key=lambda kd: kd[0])
        del blobs  # each shard's bytes go with its generator
        for _, doc in merged:
            yield Subscriber.from_dict(doc)

    def select(self, status: str | None = None) -> list[Subscriber]:
        return list(self.iterate(status))

    # --- writes ---------------------------------------------------------------------------

    def add(self, sub: Subscriber) -> Subscriber:
        """Store a new subscriber (email lowercased); StoreError if it already exists."""
        sub = dataclasses.replace(sub, email=email_key(sub.email))
        with self.transaction():
            if self._raw(sub.email):
                raise StoreError(f"subscriber {sub.email} already exists",
                                 "use `digest subscribers remove` first, or import to update")
            n = shard_of(sub.email, self.nshards)
            doc_id = tinydb(self.storage(n)).table(TABLE).insert(sub.to_dict())
            self._index(n)[sub.email] = doc_id
        return sub

    def upsert(self, subs: Iterable[Subscriber]) -> tuple[int, int]:
        """Add or replace many subscribers, one write per touched shard; returns (added,
        updated). An existing row keeps its `created` time."""
        new: dict[int, dict[str, dict]] = {}
        changed: dict[int, dict[int, dict]] = {}
        with self.transaction():
            for sub in subs:
                rec = sub.to_dict()
                key = rec["email"] = email_key(sub.email)
                n = shard_of(key, self.nshards)
                doc_id = self._index(n).get(key)
                if doc_id is None:
                    new.setdefault(n, {})[key] = rec  # a repeated email: the last one wins
                    continue
                mine = changed.setdefault(n, {})
                old = mine.get(doc_id) or self._rows(n)[str(doc_id)]
                rec["created"] = old.get("created") or rec["created"]
                if rec != old:
                    mine[doc_id] = rec
            for n in sorted(set(new) | set(changed)):
                t = tinydb(self.storage(n)).table(TABLE)
                idx = self._index(n)
                fresh = new.get(n)
                if fresh:
                    for doc_id, key in zip(t.insert_multiple(fresh.values()), fresh, strict=True):
                        idx[key] = doc_id
                repl = changed.get(n)
                if repl:
                    t.update(_replacer({r["email"]: r for r in repl.values()}),
                             doc_ids=list(repl))
        return sum(map(len, new.values())), sum(map(len, changed.values()))

    def update(self, email: str, **changes: Any) -> Subscriber:
        """Change fields of a subscriber (Subscriber field names); StoreError if unknown."""
        with self.transaction():
            found = self._raw(email)
            if found is None:
                raise StoreError(f"no subscriber {email_key(email)}",
                                 "list them with `digest subscribers list`")
            n, doc_id, doc = found
            try:
                sub = dataclasses.replace(Subscriber.from_dict(doc), **changes)
            except TypeError as e:
                raise StoreError(f"cannot update subscriber {email}: {e}",
                                 "use fields of digest.models.Subscriber") from e
            sub.email = email_key(sub.email)
            if sub.email != email_key(email) and self._raw(sub.email):
                raise StoreError(f"subscriber {sub.email} already exists",
                                 "remove one of the two addresses first")
            rec = sub.to_dict()
            if rec == doc:
                return sub
            m = shard_of(sub.email, self.nshards)
            if m == n:
                tinydb(self.storage(n)).table(TABLE).update(
                    lambda d: (d.clear(), d.update(rec)), doc_ids=[doc_id])
                idx = self._index(n)
                idx.pop(email_key(email), None)
                idx[sub.email] = doc_id
            else:  # a new address that hashes elsewhere: the row moves shard
                tinydb(self.storage(n)).table(TABLE).remove(doc_ids=[doc_id])
                self._index(n).pop(email_key(email), None)
                self._index(m)[sub.email] = tinydb(self.storage(m)).table(TABLE).insert(rec)
        return sub

    def remove(self, email: str) -> bool:
        with self.transaction():
            found = self._raw(email)
            if found is None:
                return False
            n, doc_id, _ = found
            tinydb(self.storage(n)).table(TABLE).remove(doc_ids=[doc_id])
            self._index(n).pop(email_key(email), None)
        return True

    def expire_pending(self, older_than: datetime, email: str | None = None) -> int:
        """Expire `pending` rows created before `older_than`; returns how many. A row is
        dropped, unless it is a re-subscribe that suppressed a gone status: that status is
        restored (its `suppressed` field, set by `subscribers.subscribed`), so an unconfirmed
        request never erases an unsubscribe or a complaint.

        With `email`, only the shard holding that address is swept, and it is rewritten even
        when nothing expired: a web subscribe then does the same file work (one shard read,
        one shard write) whether the address is stored or not."""
        shards = range(self.nshards) if email is None else [shard_of(email, self.nshards)]
        count = 0
        with self.transaction():
            for n in shards:
                storage = self.storage(n)
                # The sweep of a send peeks (storage.peek): a shard with nothing to expire
                # is not left in the cache, so the send's pass over every subscriber
                # (`iterate`) does not meet all rows held as dicts.
                rows = (storage.read() if email is not None else storage.peek()).get(TABLE, {})
                drop: dict[int, str] = {}
                restore: dict[int, dict] = {}
                for i, d in rows.items():
                    if d.get("status") != "pending" or not _created_before(d, older_than):
                        continue
                    if d.get("suppressed"):
                        rec = {**d, "status": d["suppressed"], "email": email_key(d["email"])}
                        del rec["suppressed"]
                        restore[int(i)] = rec
                    else:
                        drop[int(i)] = email_key(d["email"])
                if not drop and not restore and email is None:
                    continue
                table = tinydb(storage).table(TABLE)
                if drop:
                    idx = self._index(n)
                    table.remove(doc_ids=list(drop))
                    for key in drop.values():
                        idx.pop(key, None)
                if restore:
                    table.update(_replacer({r["email"]: r for r in restore.values()}),
                                 doc_ids=list(restore))
                if not drop and not restore and email is not None:
                    storage.write(storage.read())  # the equal-work write (see above)
                count += len(drop) + len(restore)
        return count

    # --- the pre-shard file (schema 1) ----------------------------------------------------

    def adopt_legacy(self) -> int:
        """Rebuild every shard from `subscribers.json` when it exists (inside the caller's
        transaction); returns the rows copied. Idempotent: the shards are replaced, not
        merged, so redoing it after a kill gives the same result."""
        legacy = AtomicJSONStorage(self.legacy_path, self._owner)
        if not self.legacy_path.exists():
            return 0
        parts: list[dict[str, dict]] = [{} for _ in range(self.nshards)]
        seen: dict[str, int] = {}
        for doc in legacy.read().get(TABLE, {}).values():
            key = email_key(doc["email"])
            n = shard_of(key, self.nshards)
            rows = parts[n]
            if key in seen:  # cannot happen in a file digest wrote; the later row wins
                rows.pop(str(seen[key]), None)
            seen[key] = doc_id = len(rows) + 1
            while str(doc_id) in rows:
                doc_id += 1
            seen[key] = doc_id
            rows[str(doc_id)] = {**doc, "email": key}
        for n, rows in enumerate(parts):
            self.storage(n).write({TABLE: rows})
        return len(seen)

    def remove_legacy(self) -> None:
        """Delete `subscribers.json` once the shards made from it are committed."""
        try:
            os.unlink(self.legacy_path)
        except FileNotFoundError:
            return
        fsync_path(self.root, directory=True)


def _replacer(by_key: dict[str, dict]) -> Callable[[dict], None]:
    """A TinyDB update that replaces each row with its new version (keyed by email)."""
    def replace(doc: dict) -> None:
        rec = by_key[email_key(doc["email"])]
        doc.clear()
        doc.update(rec)
    return replace


def _created_before(doc: dict, when: datetime) -> bool:
    raw = doc.get("created")
    if not raw:
        return False
    try:
        return parse_iso(raw) < when
    except (TypeError, ValueError):
        return False
