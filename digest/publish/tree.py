"""Atomic compare-then-replace writer for the published tree, with a manifest of what it wrote.

The manifest (`.digest-manifest.json`) lists every file digest wrote (only those are ever
pruned) and, per file, the build key it was made from plus its size and mtime_ns after the
write. That makes the output dir its own build cache: a file whose key is unchanged and
whose stat still matches is neither rebuilt nor read (`Tree.fresh`), the make/rsync rule.
A file someone else changed or deleted fails the stat check and is rebuilt.

Durability: changed files are staged as temp files in `.digest-tmp/` (same file system, so
the rename is atomic), made durable by one `syncfs` of the output's file system instead of
one fsync per file (10k fsyncs cost ~30 s here), then renamed into place; a second `syncfs`
makes the renames durable. Temp files a killed writer left are removed under the lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from digest import codec
from digest.errors import StoreError
from digest.fileio import fsync_path, locked, write_file

MANIFEST = ".digest-manifest.json"
LOCK = ".digest-lock"
STAGING = ".digest-tmp"
TMP_PREFIX, TMP_SUFFIX = ".tmp-", ".part"
# Paths a run is about to create, written before its renames (in STAGING): a run killed
# before its final manifest leaves files that the next run must know it may prune.
PENDING = f"{TMP_PREFIX}pending{TMP_SUFFIX}"
SYNCFS_OVER = 64  # more staged files than this: one syncfs instead of one fsync each


@dataclass
class WriteReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class Staged(NamedTuple):
    """A temp file holding a changed file's new bytes, with its size and mtime."""

    tmp: str
    size: int
    mtime_ns: int


class Entry(NamedTuple):
    """What the manifest knows of one file: its build key (None = unknown) and its stat.
    (A tuple: 10k of them are built on every publish.)"""

    key: str | None
    size: int
    mtime_ns: int


# The common case, checked without pathlib: plain names, no dot-leading part (so no `..`,
# no dotfiles such as the manifest, the lock or the staging dir).
_PLAIN_REL = re.compile(r"[A-Za-z0-9_~@+=,-][A-Za-z0-9._~@+=,-]*(?:/[A-Za-z0-9_~@+=,-][A-Za-z0-9._~@+=,-]*)*")


def _check_relpath(rel: str) -> str:
    if _PLAIN_REL.fullmatch(rel):
        return rel
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or rel in (MANIFEST, LOCK) or "\\" in rel \
            or p.parts[0] == STAGING:
        raise ValueError(f"refusing to write outside the output dir: {rel!r}")
    return p.as_posix()


def _same(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False


def _read_manifest(outdir: Path) -> dict[str, Any]:
    """{"files": [...], "entries": {rel: [key, size, mtime_ns]}, "build": str|None, ...}"""
    try:
        data = codec.loads((outdir / MANIFEST).read_bytes())
        if not isinstance(data, dict):
            raise ValueError("not an object")
        files = [str(p) for p in data.get("files", [])]
        entries = data.get("entries") if isinstance(data.get("entries"), dict) else {}
        return {**data, "files": files, "entries": entries}
    except (FileNotFoundError, NotADirectoryError, ValueError, AttributeError, TypeError):
        # A lost or damaged manifest only means stale files are not pruned this time and
        # every file is rebuilt and compared by its bytes.
        return {"files": [], "entries": {}}


_libc: Any = None


def _umask_strips_644() -> bool:
    """Whether the process umask would take read bits off a 0644 file (read from /proc:
    setting the umask to read it would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return bool(int(line.split()[1], 8) & 0o644)
    except (OSError, ValueError, IndexError):
        pass
    return True  # unknown: always chmod


_UMASK_STRIPS_644 = _umask_strips_644()


def _syncfs(path: Path) -> None:
    """Flush the file system holding `path` (one journal commit for all staged files)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            _libc.syncfs  # noqa: B018 - probe: not every libc has it
        except (OSError, AttributeError):
            _libc = False
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc and _libc.syncfs(fd) == 0:
            return
        os.sync()  # no syncfs (not Linux): the portable, broader flush
    finally:
        os.close(fd)


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


class Tree:
    """An output dir opened under its lock (see `open_tree`)."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self._root = os.path.join(outdir, "")
        m = _read_manifest(outdir)
        self.previous: list[str] = m["files"]
        self.build: str | None = m.get("build") if isinstance(m.get("build"), str) else None
        self.meta: dict[str, Any] = m.get("meta") if isinstance(m.get("meta"), dict) else {}
        self.entries: dict[str, Entry] = {}
        for rel, e in m["entries"].items():
            try:
                key, size, mtime = e
                self.entries[str(rel)] = Entry(key if isinstance(key, str) else None, int(size), int(mtime))
            except (TypeError, ValueError):
                continue
        self._staged: dict[str, Staged] = {}
        self._dirs: dict[str, bool] = {}  # relative dir → existed when first asked
        self._need_dir = True
        self._tmpdir = outdir / STAGING
        self._seq = 0
        self._seq_lock = threading.Lock()

    # --- reading the manifest ----------------------------------------------------------

    def fresh(self, rel: str, key: str) -> bool:
        """True when `rel` was written from build `key` and still has the size and mtime it
        had then (so it holds those bytes; nobody needs to rebuild or read it)."""
        e = self.entries.get(rel)
        if e is None or e.key != key:
            return False
        try:
            st = os.stat(self._root + rel)  # a str join: pathlib costs more than the stat
        except OSError:
            return False
        return st.st_size == e.size and st.st_mtime_ns == e.mtime_ns

    def all_fresh(self) -> bool:
        """Every file of the last run is still as it was written (stat check only)."""
        return bool(self.previous) and all(
            rel in self.entries and self.fresh(rel, self.entries[rel].key or "")
            for rel in self.previous)

    # --- staging ------------------------------------------------------------------------

    def _tmp_path(self) -> Path:
        with self._seq_lock:
            self._seq += 1
            n = self._seq
        return self._tmpdir / f"{TMP_PREFIX}{os.getpid()}-{n}{TMP_SUFFIX}"

    def _stage_one(self, data: bytes) -> Staged:
        tmp = self._tmp_path()
        # No fsync here: commit makes all staged files durable at once. A web server must
        # read these, whatever the umask. A rename keeps size and mtime: the manifest's stat.
        st = write_file(tmp, data, mode=0o644, sync=False, chmod=_UMASK_STRIPS_644)
        return Staged(str(tmp), st.st_size, st.st_mtime_ns)

    def stage(self, rel: str, data: bytes) -> None:
        """Write a temp file for `rel` (renamed into place by `commit`). The caller has
        decided the bytes differ from the file's (see `differs`)."""
        rel = _check_relpath(rel)
        if self._need_dir:
            self._tmpdir.mkdir(exist_ok=True)
            self._need_dir = False
        try:
            staged = self._stage_one(data)
        except OSError as e:
            raise _os_error(self.outdir, e, None) from e
        self.adopt(rel, staged)

    def adopt(self, rel: str, staged: Staged) -> None:
        """Take a staged temp file (from `stage`, here or in a forked worker) for `rel`."""
        old = self._staged.pop(_check_relpath(rel), None)
        self._staged[rel] = Staged(*staged)
        if old is not None:  # staged twice: the last bytes win, the first temp goes
            _unlink(Path(old.tmp))

    def take_staged(self) -> list[tuple[str, Staged]]:
        """Hand this process's staged files over (a forked worker; the parent `adopt`s
        them) and forget them here."""
        out = list(self._staged.items())
        self._staged.clear()
        return out

    def differs(self, rel: str, data: bytes) -> bool:
        """Whether `data` differs from the file now at `rel` (compares bytes). In a
        directory that did not exist when first asked (a first publish) nothing is looked up."""
        parent = rel.rpartition("/")[0]
        there = self._dirs.get(parent)
        if there is None:
            there = self._dirs[parent] = (self.outdir / parent).is_dir()
        return not there or not _same(self.outdir / rel, data)

    def _drop_staged(self) -> None:
        for staged in self._staged.values():
            _unlink(Path(staged.tmp))
        self._staged.clear()

    def close(self) -> None:
        self._drop_staged()

    # --- committing -----------------------------------------------------------------------

    def commit(self, keep: Iterable[str] = (), keys: dict[str, str] | None = None,
               unchanged: Iterable[str] = (), build: str | None = None,
               meta: dict[str, Any] | None = None) -> WriteReport:
        """Rename every staged file into place, prune what the last run wrote and this one
        does not want, and write the manifest.

        The wanted set is the staged files + `unchanged` (rendered, same bytes) + `keep`
        (fresh per the manifest, not rebuilt). `keys` gives each file's build key."""
        keys = keys or {}
        report = WriteReport()
        staged_rels = sorted(self._staged)
        kept = {_check_relpath(r) for r in keep}
        same = {_check_relpath(r) for r in unchanged}
        wanted = set(staged_rels) | kept | same
        report.unchanged = sorted(kept | same)
        new = wanted - set(self.previous)
        entries = dict(self.entries)
        try:
            temps = [(self._staged[rel], rel) for rel in staged_rels]
            pending = self._tmpdir / PENDING
            if new:
                # Record new paths before they exist: a kill between rename and the final
                # manifest write must not leave files that no later run knows it may prune.
                self._tmpdir.mkdir(exist_ok=True)
                pending.write_bytes(codec.dumps(sorted(new)))
            many = len(temps) > SYNCFS_OVER
            # Staged bytes (and the pending list) durable before any rename: a crash never
            # leaves a renamed, empty file behind.
            self._durable([Path(t.tmp) for t, _ in temps] + ([pending] if new else []), many)
            made: set[Path] = set()
            for staged, rel in temps:
                target = self.outdir / rel
                if target.parent not in made:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made.add(target.parent)
                os.replace(staged.tmp, target)
                del self._staged[rel]
                report.written.append(rel)
                entries[rel] = Entry(keys.get(rel), staged.size, staged.mtime_ns)
            for rel in same | kept:
                e = entries.get(rel)
                k = keys.get(rel)
                if k is not None and (e is None or e.key != k):
                    # Rebuilt to the same bytes: remember the new key with the file's stat.
                    st = os.stat(self.outdir / rel)
                    entries[rel] = Entry(k, st.st_size, st.st_mtime_ns)

            for rel in self.previous:
                if rel in wanted:
                    continue
                try:
                    rel = _check_relpath(rel)
                except ValueError:
                    continue  # a tampered manifest must not make us delete outside outdir
                path = self.outdir / rel
                if path.is_file() or path.is_symlink():
                    path.unlink()
                    report.removed.append(rel)
            _prune_dirs(self.outdir, report.removed)
            wrote = self._write_manifest(wanted, {r: e for r, e in entries.items() if r in wanted},
                                         build, meta or {}, sync=not many)
            # The renames (and the manifest's) durable. A directory created here may still
            # be lost in a power cut; the next publish then finds its files missing (stat)
            # and writes them again.
            self._durable(sorted(made | ({self.outdir} if wrote or report.removed else set())),
                          many)
            _unlink(pending)
        except OSError as e:
            raise _os_error(self.outdir, e, report) from e
        finally:
            self._drop_staged()
        return report

    def _durable(self, paths: list[Path], many: bool) -> None:
        """fsync `paths` (files or directories), or flush the whole file system once when
        there are many: 10k fsyncs cost ~30 s here, one syncfs well under a second."""
        if many:
            _syncfs(self.outdir)
        elif len(paths) == 1:
            fsync_path(paths[0])
        elif paths:
            # Concurrent fsyncs share journal commits.
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(fsync_path, paths))

    def _write_manifest(self, paths: set[str], entries: dict[str, Entry], build: str | None,
                        meta: dict[str, Any], sync: bool) -> bool:
        """Write the manifest if it changed; True if it did."""
        doc: dict[str, Any] = {"files": sorted(paths)}
        if build is not None:
            doc["build"] = build
        if meta:
            doc["meta"] = meta
        doc["entries"] = {r: list(e) for r, e in entries.items()}
        blob = codec.dumps(doc, indent=True, sort_keys=True) + b"\n"
        mpath = self.outdir / MANIFEST
        if not _same(mpath, blob):
            tmp = self._tmpdir / f"{TMP_PREFIX}manifest-{os.getpid()}{TMP_SUFFIX}"
            self._tmpdir.mkdir(exist_ok=True)
            write_file(tmp, blob, mode=0o644, sync=sync, exclusive=False)
            os.replace(tmp, mpath)
            return True
        return False


def _prune_dirs(outdir: Path, rels: Iterable[str]) -> None:
    """Remove directories left empty by pruning (never `outdir` itself)."""
    dirs = {(outdir / r).parent for r in rels}
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        while d != outdir and outdir in d.parents:
            try:
                d.rmdir()
            except OSError:
                break
            d = d.parent


def _clean_temp(outdir: Path) -> None:
    """Temp files left by a publisher killed mid-write; safe to delete under the lock.
    Current writers stage only in `.digest-tmp/`; older ones staged beside each target, so
    those are looked for only when an older manifest (without entries) is found."""
    try:
        for entry in os.scandir(outdir / STAGING):
            _unlink(Path(entry.path))
    except FileNotFoundError:
        pass


def _read_pending(outdir: Path) -> set[str]:
    try:
        return {str(p) for p in codec.loads((outdir / STAGING / PENDING).read_bytes())}
    except (FileNotFoundError, NotADirectoryError, ValueError, TypeError):
        return set()


def _clean_legacy_temp(outdir: Path) -> None:
    for p in outdir.rglob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        p.unlink(missing_ok=True)


@contextmanager
def open_tree(outdir: Path) -> Iterator[Tree]:
    """Lock `outdir` (one publisher at a time: the daemon and a CLI run may overlap), clean
    a killed run's temp files, and read the manifest. Raises StoreError on OSError."""
    outdir = Path(outdir)
    with ExitStack() as stack:
        try:
            outdir.mkdir(parents=True, exist_ok=True)
            # No timeout: a publish waits for the one running (as it always has).
            stack.enter_context(locked(outdir / LOCK, what="the output dir", mode=0o644))
        except OSError as e:
            raise _os_error(outdir, e, None) from e
        try:
            pending = _read_pending(outdir)
            _clean_temp(outdir)
            tree = Tree(outdir)
            if pending:
                tree.previous = sorted(set(tree.previous) | pending)
            if tree.previous and not tree.entries:
                _clean_legacy_temp(outdir)
        except OSError as e:
            raise _os_error(outdir, e, None) from e
        stack.callback(tree.close)  # before the lock is released
        yield tree


def _os_error(outdir: Path, e: OSError, report: WriteReport | None) -> StoreError:
    if e.errno == errno.ENOSPC:
        done = ("no published file was replaced" if not (report and report.written) else
                f"{len(report.written)} files were replaced before it; the rest are the old ones")
        return StoreError(f"{outdir}: disk full while publishing; {done}",
                          f"free space on the disk holding {outdir} and run `digest publish` again")
    return StoreError(
        f"{outdir}: cannot write published files: {e.strerror or e}",
        "check that [feeds] output is a writable directory, then run `digest publish` again",
    )
