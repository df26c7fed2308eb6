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

The manifest is sharded so that a publish costs what it changes, not the archive: the top
file holds the build key, the meta and a map of shard name → shard file (in
`.digest-manifest.d/`); a shard holds the entries of the files whose relpath maps to it (the
top directory; `stories/` hashed into `_BUCKETS` buckets). Shards are read lazily (a lookup
reads one shard; the list of all files reads every shard). A commit writes only the shards
whose entries changed, each to a new uniquely named file, makes them durable, then replaces
the top file (the commit point) and only then removes the shard files it replaced: a kill
at any point leaves a top file whose shards all exist. Shard files no top file names (a
killed commit's) are removed under the lock. An older single-file manifest (`files` and
`entries` in the top file) is read whole and written as shards by the next commit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import secrets
import threading
import zlib
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
# The publisher's plan state (digest.publish.keys.plan_state): a cache, valid only with the
# manifest whose meta `state` names its token; lost or damaged, the next publish plans all.
STATE = ".digest-state.json"
LOCK = ".digest-lock"
SHARDS = ".digest-manifest.d"  # the manifest's shard files (named in the top file)
# Top directories whose files are spread over this many shards (by a hash of the relpath);
# every other top directory is one shard, and the files at the top one more.
_BUCKETS = {"stories": 256}
_SHARD_FILE = re.compile(r"[0-9a-f]{16}\.json")
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
            or p.parts[0] in (STAGING, SHARDS):
        raise ValueError(f"refusing to write outside the output dir: {rel!r}")
    return p.as_posix()


def _same(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False


def shard_of(rel: str) -> str:
    """The manifest shard holding `rel`'s entry: "" for files at the top, "dir/" for a top
    directory, "dir/xx" for a bucket of a hashed one."""
    top, sep, _ = rel.partition("/")
    if not sep:
        return ""
    n = _BUCKETS.get(top)
    return f"{top}/{zlib.crc32(rel.encode()) % n:02x}" if n else f"{top}/"


def _read_manifest(outdir: Path) -> dict[str, Any]:
    """The top file: {"shards": {name: file}, "build": str|None, "meta": {...}}, or an
    older manifest {"files": [...], "entries": {rel: [key, size, mtime_ns]}, ...}."""
    try:
        data = codec.loads((outdir / MANIFEST).read_bytes())
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if isinstance(data.get("shards"), dict):
            shards = {str(k): v for k, v in data["shards"].items()
                      if isinstance(v, str) and _SHARD_FILE.fullmatch(v)}
            return {**data, "shards": shards}
        files = [str(p) for p in data.get("files", [])]
        entries = data.get("entries") if isinstance(data.get("entries"), dict) else {}
        return {**data, "files": files, "entries": entries}
    except (FileNotFoundError, NotADirectoryError, ValueError, AttributeError, TypeError):
        # A lost or damaged manifest only means stale files are not pruned this time and
        # every file is rebuilt and compared by its bytes.
        return {"files": [], "entries": {}}


def _read_shard(outdir: Path, fname: str) -> dict[str, Any]:
    """A shard's entries {rel: [key, size, mtime_ns] | None}, raw (checked when used); a
    lost or damaged shard is empty (its files are rebuilt and not pruned, as above)."""
    try:
        data = codec.loads((outdir / SHARDS / fname).read_bytes())
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}


def _entry(raw: Any) -> Entry | None:
    if raw is None or isinstance(raw, Entry):
        return raw
    try:
        key, size, mtime = raw
        return Entry(key if isinstance(key, str) else None, int(size), int(mtime))
    except (TypeError, ValueError):
        return None


def _raw(e: Any) -> list | None:
    e = _entry(e)
    return list(e) if e is not None else None


def manifest_entries(outdir: Path) -> dict[str, Entry | None]:
    """Every file the manifest lists with its entry (None: listed, nothing known), whatever
    its format (for tests and tools)."""
    m = _read_manifest(Path(outdir))
    if "shards" in m:
        raw = {r: v for f in m["shards"].values() for r, v in _read_shard(Path(outdir), f).items()}
    else:
        raw = {r: m["entries"].get(r) for r in m["files"]}
    return {r: _entry(v) for r, v in sorted(raw.items())}


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
        self.build: str | None = m.get("build") if isinstance(m.get("build"), str) else None
        self.meta: dict[str, Any] = m.get("meta") if isinstance(m.get("meta"), dict) else {}
        # shard name → its file (as the top file names them) and, once read, its entries
        self._files: dict[str, str] = m.get("shards", {})
        self._loaded: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()  # shards to write whatever their entries (damaged, old)
        self.legacy = "shards" not in m
        self.damaged = False  # a shard file was lost or unreadable: its files are unknown
        self.legacy_entries = bool(m.get("entries"))
        if self.legacy:  # an older single-file manifest: every shard, all to be written
            for rel in m["files"]:
                self._loaded.setdefault(shard_of(rel), {})[rel] = m["entries"].get(rel)
            self._dirty.update(self._loaded)
        self.pending: set[str] = set()  # paths a killed run may have created (may prune)
        self._replaced: set[str] = set()  # shard files the last commit's top file dropped
        self._previous: list[str] | None = None
        self._staged: dict[str, Staged] = {}
        self._dirs: dict[str, bool] = {}  # relative dir → existed when first asked
        self._need_dir = True
        self._tmpdir = outdir / STAGING
        self._seq = 0
        self._seq_lock = threading.Lock()

    # --- reading the manifest ----------------------------------------------------------

    def _shard(self, name: str) -> dict[str, Any]:
        got = self._loaded.get(name)
        if got is None:
            fname = self._files.get(name)
            got = self._loaded[name] = _read_shard(self.outdir, fname) if fname else {}
            self._previous = None
            if fname and not got:
                self._dirty.add(name)  # damaged: written again by the next commit
                self.damaged = True
        return got

    def _load_all(self, but: str | None = None) -> None:
        """Read every shard (those of top directory `but` excepted)."""
        for name in self._files:
            if but is None or not name.startswith(but + "/"):
                self._shard(name)

    def referenced(self) -> set[str]:
        """The shard files the top file names."""
        return set(self._files.values())

    def entry(self, rel: str) -> Entry | None:
        """What the manifest knows of `rel` (reads its shard only)."""
        return _entry(self._shard(shard_of(rel)).get(rel))

    @property
    def previous(self) -> list[str]:
        """Every file the last run wrote (and those a killed run may have); reads every shard."""
        self._load_all()
        if self._previous is None:
            out = {r for sh in self._loaded.values() for r in sh}
            out.update(self.pending)
            self._previous = sorted(out)
        return self._previous

    def fresh(self, rel: str, key: str) -> bool:
        """True when `rel` was written from build `key` and still has the size and mtime it
        had then (so it holds those bytes; nobody needs to rebuild or read it)."""
        e = self.entry(rel)
        if e is None or e.key != key:
            return False
        try:
            st = os.stat(self._root + rel)  # a str join: pathlib costs more than the stat
        except OSError:
            return False
        return st.st_size == e.size and st.st_mtime_ns == e.mtime_ns

    def all_fresh(self) -> bool:
        """Every file of the last run is still as it was written (stat check only)."""
        self._load_all()
        if self.damaged or self.pending or not any(self._loaded.values()):
            return False
        root = self._root
        for sh in self._loaded.values():  # raw entries: ~100k of them, no Entry built
            for rel, raw in sh.items():
                try:
                    key, size, mtime = raw
                    st = os.stat(root + rel)
                except (TypeError, ValueError, OSError):
                    return False  # no entry, a damaged one, or no file
                if not isinstance(key, str) or st.st_size != size or st.st_mtime_ns != mtime:
                    return False
        return True

    def read_state(self) -> dict[str, Any] | None:
        """The plan state the last publish left, if it belongs to this manifest."""
        token = self.meta.get("state")
        if not isinstance(token, str):
            return None
        try:
            data = codec.loads((self.outdir / STATE).read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("token") == token else None

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the plan state (after `commit`, whose meta names `state["token"]`). Not
        synced: a torn or lost state only costs the next publish a full plan."""
        tmp = self._tmpdir / f"{TMP_PREFIX}state-{os.getpid()}{TMP_SUFFIX}"
        try:
            self._tmpdir.mkdir(exist_ok=True)
            write_file(tmp, codec.dumps(state), mode=0o600, sync=False, exclusive=False)
            os.replace(tmp, self.outdir / STATE)
        except OSError as e:
            _unlink(tmp)
            raise _os_error(self.outdir, e, None) from e

    def drop_state(self) -> None:
        """Remove the plan state (a publish that keeps none)."""
        _unlink(self.outdir / STATE)

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
               meta: dict[str, Any] | None = None, keep_dir: str | None = None) -> WriteReport:
        """Rename every staged file into place, prune what the last run wrote and this one
        does not want, and write the manifest.

        The wanted set is the staged files + `unchanged` (rendered, same bytes) + `keep`
        (fresh per the manifest, not rebuilt) + with `keep_dir`, every file the last run
        wrote in that top directory (neither listed in the report nor read from the
        manifest). `keys` gives each file's build key."""
        keys = keys or {}
        report = WriteReport()
        staged_rels = sorted(self._staged)
        kept = {_check_relpath(r) for r in keep}
        same = {_check_relpath(r) for r in unchanged}
        wanted = set(staged_rels) | kept | same
        report.unchanged = sorted(kept | same)
        implicit = (keep_dir + "/") if keep_dir else None
        # Every shard but those of `keep_dir` (whose files all stay): the files to prune.
        self._load_all(but=keep_dir)
        for rel in wanted | self.pending:
            self._shard(shard_of(rel))
        before = {n: dict(sh) for n, sh in self._loaded.items()}
        previous = {r for sh in self._loaded.values() for r in sh} | self.pending
        new = wanted - previous
        updates: dict[str, Entry | None] = {}
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
                updates[rel] = Entry(keys.get(rel), staged.size, staged.mtime_ns)
            for rel in same | kept:
                e = self.entry(rel)
                k = keys.get(rel)
                if k is not None and (e is None or e.key != k):
                    # Rebuilt to the same bytes: remember the new key with the file's stat.
                    st = os.stat(self.outdir / rel)
                    updates[rel] = Entry(k, st.st_size, st.st_mtime_ns)

            for rel in sorted(previous):
                if rel in wanted or (implicit and rel.startswith(implicit)):
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
            shards = self._next_shards(wanted, updates, implicit)
            wrote = self._write_manifest(before, shards, build, meta or {}, many)
            # The renames (and the manifest's) durable. A directory created here may still
            # be lost in a power cut; the next publish then finds its files missing (stat)
            # and writes them again.
            self._durable(sorted(made | ({self.outdir} if wrote or report.removed else set())),
                          many)
            _unlink(pending)
            self._drop_replaced()
        except OSError as e:
            raise _os_error(self.outdir, e, report) from e
        finally:
            self._drop_staged()
        return report

    def _next_shards(self, wanted: set[str], updates: dict[str, Entry | None],
                     implicit: str | None) -> dict[str, dict[str, Any]]:
        """The entries of every read shard after this commit: the wanted files (and, in
        `implicit`'s shards, every file listed or pending there), updated."""
        out: dict[str, dict[str, Any]] = {}
        for name, sh in self._loaded.items():
            if implicit and name.startswith(implicit):
                out[name] = dict(sh)
                for rel in self.pending:
                    if rel.startswith(implicit) and shard_of(rel) == name:
                        out[name].setdefault(rel, None)
            else:
                out[name] = {r: v for r, v in sh.items() if r in wanted}
        for rel in wanted:
            d = out.setdefault(shard_of(rel), {})
            if rel in updates:
                d[rel] = updates[rel]
            else:
                d.setdefault(rel, None)
        return out

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

    def _write_manifest(self, before: dict[str, dict[str, Any]], shards: dict[str, dict[str, Any]],
                        build: str | None, meta: dict[str, Any], many: bool) -> bool:
        """Write the shards whose entries changed (new files), make them durable, then
        replace the top file; True if anything was written. The shard files replaced are
        removed by `_drop_replaced` once the top file's rename is durable."""
        files = dict(self._files)
        written: list[Path] = []
        sdir = self.outdir / SHARDS
        for name, entries in sorted(shards.items()):
            if name not in self._dirty and name in files and before.get(name) == entries:
                continue
            if not entries:
                files.pop(name, None)
                continue
            fname = f"{secrets.token_hex(8)}.json"
            if not written:
                sdir.mkdir(exist_ok=True)
            blob = codec.dumps({r: _raw(e) for r, e in sorted(entries.items())}) + b"\n"
            write_file(sdir / fname, blob, mode=0o644, sync=False)
            written.append(sdir / fname)
            files[name] = fname
        doc: dict[str, Any] = {"v": 2, "shards": dict(sorted(files.items()))}
        if build is not None:
            doc["build"] = build
        if meta:
            doc["meta"] = meta
        blob = codec.dumps(doc, indent=True, sort_keys=True) + b"\n"
        mpath = self.outdir / MANIFEST
        if not written and _same(mpath, blob):
            return False
        tmp = self._tmpdir / f"{TMP_PREFIX}manifest-{os.getpid()}{TMP_SUFFIX}"
        self._tmpdir.mkdir(exist_ok=True)
        write_file(tmp, blob, mode=0o644, sync=False, exclusive=False)
        # The shards (and their directory entries) durable before the top file names them.
        self._durable(written + [tmp] + ([sdir] if written else []), many)
        os.replace(tmp, mpath)
        self._replaced = set(self._files.values()) - set(files.values())
        self._files = files
        self._loaded = {n: {r: v for r, v in sh.items()} for n, sh in shards.items() if sh}
        self._previous = None
        self._dirty.clear()
        self.legacy = False
        return True

    def _drop_replaced(self) -> None:
        """Remove the shard files the last top file named and the new one does not."""
        for fname in self._replaced:
            _unlink(self.outdir / SHARDS / fname)
        self._replaced = set()


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


def _clean_shards(outdir: Path, referenced: set[str]) -> None:
    """Shard files no top file names (a killed commit's new ones, or the old ones of a
    commit killed after its top file was replaced)."""
    try:
        for entry in os.scandir(outdir / SHARDS):
            if entry.name not in referenced:
                _unlink(Path(entry.path))
    except (FileNotFoundError, NotADirectoryError):
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
            tree.pending = pending  # (before anything lists `previous`)
            _clean_shards(outdir, tree.referenced())
            if tree.legacy and tree._loaded and not tree.legacy_entries:
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
