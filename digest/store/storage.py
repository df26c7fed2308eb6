"""The embedded store's files on disk: modes, JSON encoding, and the atomic TinyDB storage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from tinydb import TinyDB
from tinydb.storages import Storage

from digest import codec
from digest.errors import StoreError
from digest.fileio import atomic_write

# The store holds the site secret (stories.json meta) and subscribers' addresses: only the
# owner may read it, whatever the umask.
DIR_MODE = 0o700
FILE_MODE = 0o600


def encode(obj: Any, what: str) -> bytes:
    """Compact JSON bytes, or a StoreError naming `what` (text that is not valid Unicode)."""
    try:
        return codec.dumps(obj)
    except TypeError as e:  # codec.EncodeError is a TypeError
        raise StoreError(f"{what}: cannot be stored as JSON ({e})",
                         "the story or subscriber holds text that is not valid Unicode; fix "
                         "the input file") from e


class Owner(Protocol):
    """What a storage needs of its store: whether a transaction is open, which one, and
    where temp files go."""

    @property
    def in_transaction(self) -> bool: ...

    epoch: int
    tmpdir: Path


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class AtomicJSONStorage(Storage):
    """TinyDB storage: an in-memory cache (TinyDB calls read() on every operation), writes
    deferred to the transaction's end and done by atomic replace (TinyDB's own JSONStorage
    rewrites in place: a crash mid-write would lose the file)."""

    def __init__(self, path: Path, owner: Owner) -> None:
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
        self._data, self._sig = self._parse(raw), sig
        self.generation += 1

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            data = codec.loads(raw) if raw.strip() else {}
        except codec.DecodeError as e:
            raise StoreError(f"{self.path}: corrupt JSON ({e})",
                             "restore this file from a backup or repair it by hand; digest "
                             "will not reset it, so nothing is lost") from e
        if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
            raise StoreError(f"{self.path}: not a TinyDB file (expected an object of tables)",
                             "restore this file from a backup or move it out of the store")
        return data

    @property
    def cached(self) -> bool:
        """Whether a copy of the file (or uncommitted changes) is held in memory."""
        return self._data is not None

    def peek(self) -> dict[str, Any]:
        """What read() returns, without keeping it: the cache when one is held (so
        uncommitted changes win), else the file parsed for the caller alone (a one-pass
        scan over many files then holds one at a time, not all of them)."""
        if self._data is not None:
            return self.read()
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise StoreError(f"{self.path}: cannot read ({e.strerror})",
                             "check the store directory's permissions") from e
        return self._parse(raw)

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
            raise RuntimeError("store write outside a transaction")  # a bug in the store
        self._data = data
        self._dirty = True

    @property
    def dirty(self) -> bool:
        return self._dirty

    def flush(self) -> None:
        """Write the cache to disk if it changed (called at commit, under the lock)."""
        if not self._dirty:
            return
        atomic_write(self.path, encode(self._data, str(self.path)), self._owner.tmpdir,
                     mode=FILE_MODE)
        self._sig = _signature(os.stat(self.path))
        self._dirty = False

    def discard(self) -> None:
        """Forget the cache (rollback): the next read loads the committed file."""
        self._data, self._sig, self._dirty = None, None, False
        self._checked_epoch = -1
        self.generation += 1

    def close(self) -> None:
        pass


def tinydb(storage: AtomicJSONStorage) -> TinyDB:
    """A TinyDB over `storage`."""
    # A fresh TinyDB per use: Table caches its next document id, which goes stale when
    # another process changed the file; building one costs microseconds.
    return TinyDB(storage=lambda: storage)
