"""The embedded store's delivery journal: an append-only JSON-lines file, indexed as it grows."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from digest import codec
from digest.errors import StoreError
from digest.fileio import fsync_path, write_all, write_error
from digest.store.base import JOURNAL_STATES, email_key
from digest.store.storage import FILE_MODE, encode


class DeliveryJournal:
    """Append-only JSON-lines log of deliveries with an incrementally built index."""

    def __init__(self, path: Path, lock: Callable[[], AbstractContextManager[None]]) -> None:
        self.path = Path(path)
        self._lock = lock
        self._mutex = threading.Lock()
        self._reset()

    def _reset(self, ino: int = 0) -> None:
        self._ino, self._offset, self._lineno = ino, 0, 0
        self._latest: dict[tuple[str, str, str], dict] = {}
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
        data = b"".join(encode(r, str(self.path)) + b"\n" for r in records)
        with self._lock():
            created = not self.path.exists()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE)
            except OSError as e:
                raise write_error(self.path, e) from e
            try:
                size = os.fstat(fd).st_size
                good = _drop_torn_tail(fd, size)
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                except OSError as e:
                    os.ftruncate(fd, good)  # leave no half batch behind
                    raise write_error(self.path, e) from e
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
            rec = codec.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            return rec
        except ValueError as e:
            raise StoreError(f"{self.path}:{lineno}: corrupt journal line ({e})",
                             "fix or delete that line by hand; the other lines are intact") from e

    def _index(self, rec: dict) -> None:
        email = email_key(str(rec.get("email", "")))
        digest, edition = str(rec.get("digest", "")), str(rec.get("edition", ""))
        self._latest[(digest, edition, email)] = rec
        if rec.get("state") == "sent" and rec.get("stories"):
            self._sent.setdefault(email, set()).update(map(str, rec["stories"]))
            self._sent_frozen.pop(email, None)

    def state(self, digest: str, edition: str, email: str) -> dict | None:
        """The latest record for (digest, edition, email), or None."""
        with self._mutex:
            self._catch_up()
            rec = self._latest.get((digest, edition, email_key(email)))
            return dict(rec) if rec else None

    def sent_story_ids(self, email: str) -> frozenset[str]:
        """Ids of every story in a digest marked `sent` to `email` (cached: do not mutate)."""
        with self._mutex:
            self._catch_up()
            key = email_key(email)
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
