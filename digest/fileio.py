"""File primitives for store, output tree and sender: full writes, fsync, atomic replace, locks."""

from __future__ import annotations

import errno
import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from digest.errors import DigestError, StoreError

# A held lock is polled at this interval until the timeout (flock itself cannot time out).
LOCK_POLL = 0.005
_DISK_HINT = "free disk space (or fix permissions) and run the command again; the previous " \
             "version of the file is intact"


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """fsync a file or directory by path; `directory` insists that it is one (O_DIRECTORY)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path | str, data: bytes, *, mode: int = 0o600, sync: bool = True,
               chmod: bool = False, exclusive: bool = True) -> os.stat_result:
    """Create `path` holding `data` (the temp-file half of an atomic replace) and return its
    stat. `exclusive` refuses an existing file; `sync` fsyncs it; `chmod` sets `mode` even
    where the umask would strip bits. On error the partial file is removed, the OSError raised."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        if chmod:
            os.fchmod(fd, mode)
        write_all(fd, data)
        if sync:
            os.fsync(fd)
        st = os.fstat(fd)  # a rename keeps size and mtime
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    os.close(fd)
    return st


def write_error(path: Path, e: OSError) -> StoreError:
    """The StoreError for a failed atomic write of `path` (the old file is untouched)."""
    what = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return StoreError(f"{path}: could not write ({what}); nothing was changed", _DISK_HINT)


def _write_temp(path: Path, data: bytes, tmpdir: Path, mode: int) -> Path:
    """A fresh, fsynced temp file for `path` in `tmpdir` (same file system as `path`)."""
    tmp = tmpdir / f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write_file(tmp, data, mode=mode)
    except OSError as e:
        raise write_error(path, e) from e
    return tmp


def atomic_write(path: Path, data: bytes, tmpdir: Path, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` so a kill at any instant leaves the old or the new file.

    The temp file lives in `tmpdir`, which the caller cleans of a killed writer's leftovers
    (under its lock). Raises StoreError (disk full, permissions)."""
    atomic_write_many({path: data}, tmpdir, mode=mode)


def atomic_write_many(files: dict[Path, bytes], tmpdir: Path, *, mode: int = 0o600) -> None:
    """Atomically replace many files: temp files written and fsynced in parallel (the
    file system folds concurrent fsyncs into one journal commit), then renamed, then each
    directory fsynced once so the renames are durable."""
    if len(files) > 8:
        with ThreadPoolExecutor(max_workers=8) as pool:
            temps = list(pool.map(lambda kv: _write_temp(kv[0], kv[1], tmpdir, mode),
                                  files.items()))
    else:
        temps = [_write_temp(p, d, tmpdir, mode) for p, d in files.items()]
    dirs: set[Path] = set()
    for path, tmp in zip(files, temps, strict=True):
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise write_error(path, e) from e
        dirs.add(path.parent)
    for d in dirs:
        fsync_path(d, directory=True)


@contextmanager
def locked(path: Path, *, timeout: float | None = None, what: str = "this file",
           hint: str = "wait for the other digest command to finish, or look for a stuck one",
           error: type[DigestError] = StoreError, mode: int = 0o600) -> Iterator[None]:
    """Hold an exclusive kernel lock (flock) on `path`, created if missing.

    A flock dies with its process, so a kill -9 leaves no stale lock. `timeout` None waits
    for ever, 0 tries once; when it runs out, `error` names `path` and `what` with `hint`.
    An OSError opening the file propagates. Not re-entrant: the store counts its own depth."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError as e:
                    if time.monotonic() >= deadline:
                        waited = f" for over {timeout:.0f} s" if timeout else ""
                        raise error(f"{path}: {what} is locked by another process{waited}",
                                    hint) from e
                time.sleep(LOCK_POLL)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def held_by_another(path: Path) -> bool:
    """Whether some process holds `locked(path)` now: asks the kernel with a shared,
    non-blocking flock taken and released at once (never creates `path`). An OSError
    opening or locking it propagates."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False
