"""Atomic compare-then-replace writer for the published tree, with a manifest of what it wrote."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from digest.errors import StoreError

MANIFEST = ".digest-manifest.json"
LOCK = ".digest-lock"
TMP_PREFIX, TMP_SUFFIX = ".tmp-", ".part"


@dataclass
class WriteReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _check_relpath(rel: str) -> str:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or rel in (MANIFEST, LOCK) or "\\" in rel:
        raise ValueError(f"refusing to write outside the output dir: {rel!r}")
    return p.as_posix()


def _same(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False


def _read_manifest(outdir: Path) -> list[str]:
    try:
        data = json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
        return [str(p) for p in data.get("files", [])]
    except (FileNotFoundError, ValueError, AttributeError):
        # A lost or damaged manifest only means stale files are not pruned this time.
        return []


def _stage(outdir: Path, rel: str, data: bytes) -> Path:
    """Write `data` to a temp file beside its target (same dir, so rename is atomic)."""
    target = outdir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX, suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a web server must read these
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


@contextmanager
def _locked(outdir: Path) -> Iterator[None]:
    """One publisher at a time per output dir (the daemon and a CLI run may overlap)."""
    fd = os.open(outdir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _clean_temp(outdir: Path) -> None:
    """Temp files left by a publisher killed mid-write; safe to delete under the lock."""
    for p in outdir.rglob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        p.unlink(missing_ok=True)


def write_tree(outdir: Path, files: dict[str, bytes],
               managed_prefixes: Iterable[str] | None = None) -> WriteReport:
    """Make `outdir` hold `files`: write only files whose bytes differ, leave identical ones
    untouched (same mtime), and delete files a previous run wrote that are no longer wanted
    (only those in the manifest and, if given, under `managed_prefixes`; never anything else).

    All changed files are staged as temp files first and only then renamed into place, so a
    full disk fails before any old file is replaced. Raises StoreError on OSError.
    """
    outdir = Path(outdir)
    wanted = {_check_relpath(r): b for r, b in files.items()}
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        with _locked(outdir):
            return _write_locked(outdir, wanted, managed_prefixes)
    except OSError as e:
        raise _os_error(outdir, e, None) from e


def _write_locked(outdir: Path, wanted: dict[str, bytes],
                  managed_prefixes: Iterable[str] | None) -> WriteReport:
    report = WriteReport()
    try:
        _clean_temp(outdir)
        previous = _read_manifest(outdir)
        changed = []
        for rel in sorted(wanted):
            (changed if not _same(outdir / rel, wanted[rel]) else report.unchanged).append(rel)
        new = set(wanted) - set(previous)
        if new and previous:
            # Record new paths before they exist: a kill between rename and the final
            # manifest write must not leave files that no later run knows it may prune.
            _write_manifest(outdir, set(previous) | new)
        staged: list[tuple[Path, str]] = []
        try:
            for rel in changed:
                staged.append((_stage(outdir, rel, wanted[rel]), rel))
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        for tmp, rel in staged:
            os.replace(tmp, outdir / rel)
            report.written.append(rel)
        for d in {(outdir / rel).parent for rel in changed}:
            _fsync_dir(d)

        prefixes = tuple(managed_prefixes) if managed_prefixes is not None else None
        keep: list[str] = []
        for rel in previous:
            if rel in wanted:
                continue
            try:
                rel = _check_relpath(rel)
            except ValueError:
                continue  # a tampered manifest must not make us delete outside outdir
            if prefixes is not None and not rel.startswith(prefixes):
                keep.append(rel)  # not ours to manage this time: remember, do not delete
                continue
            path = outdir / rel
            if path.is_file() or path.is_symlink():
                path.unlink()
                report.removed.append(rel)
        _prune_dirs(outdir, report.removed)

        _write_manifest(outdir, set(wanted) | set(keep))
    except OSError as e:
        raise _os_error(outdir, e, report) from e
    return report


def _write_manifest(outdir: Path, paths: set[str]) -> None:
    manifest = (json.dumps({"files": sorted(paths)}, indent=1) + "\n").encode()
    mpath = outdir / MANIFEST
    if not _same(mpath, manifest):
        os.replace(_stage(outdir, MANIFEST, manifest), mpath)


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
