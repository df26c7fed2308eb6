"""The ingest command: read story files, parse them, store the good, quarantine the bad.

Nothing here prints: every line the run has to say is in its IngestReport, and callers
decide where it goes (the CLI prints it, the daemon logs it). A caller that draws progress
passes a `progress(n, total)` callback.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from digest.config import Config
from digest.errors import DigestError, ParseError
from digest.ingest import MAX_BYTES, Parsed, decode_story_bytes, parse_file
from digest.ingest.text import FUTURE_SLACK, derive_id, source_id
from digest.models import Story, iso
from digest.pipeline.status import LAST_INGEST, record_run
from digest.store import DamagedBody, Store, open_store
from digest.store.embedded import encode_story

STORY_SUFFIXES = (".txt", ".json", ".md")
# Store meta: resolved path of a file whose story id is a title hash → the id it produced,
# so editing the title updates that story instead of adding a second one.
ORIGIN_IDS_KEY = "origin_ids"

Progress = Callable[[int, int], None]  # (n, total) as the n-th of `total` files is read


@dataclass(frozen=True)
class IngestEvent:
    """One line of the report about one file or story, in the order the run met them.

    `kind` is "rejected" (`text` is `FILE:LINE: reason`, with a `hint` for the operator),
    "skipped" (a quarantined file, unchanged since), or the story's "added", "updated" or
    "unchanged" (`text` names its id and title)."""

    kind: str
    text: str
    hint: str = ""


@dataclass
class IngestReport:
    """What one ingest run did, every line of it in `events`."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # quarantined and unchanged since
    events: list[IngestEvent] = field(default_factory=list)
    files: int = 0

    @property
    def rejections(self) -> list[IngestEvent]:
        return [e for e in self.events if e.kind == "rejected"]

    @property
    def rejected(self) -> list[str]:
        """One `FILE:LINE: reason` per bad file."""
        return [e.text for e in self.rejections]

    def lines(self) -> list[str]:
        """The report for stdout: skipped files, each story's fate, then the summary
        (rejections, for stderr, are `rejections`)."""
        return [e.text for e in self.events if e.kind != "rejected"] + [self.summary()]

    def summary(self) -> str:
        n = len(self.added) + len(self.updated) + len(self.unchanged)
        rejected = len(self.rejections)
        line = (f"{n} {'story' if n == 1 else 'stories'} from {self.files} "
                f"{'file' if self.files == 1 else 'files'}: {len(self.added)} added, "
                f"{len(self.updated)} updated, {len(self.unchanged)} unchanged, "
                f"{rejected} rejected")
        if self.skipped:
            line += f", {len(self.skipped)} skipped (quarantined)"
        return line


def story_files(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """Expand files and directories (their *.txt, *.json, *.md, sorted, not recursive).

    Returns the files, deduplicated, and a message for each path that does not exist."""
    files, _, missing = _story_files(paths)
    return files, missing


def _story_files(paths: Iterable[Path]) -> tuple[list[Path], list[str], list[str]]:
    """`story_files`, plus each file's resolved path (the quarantine's and origin_ids' key)."""
    files: list[Path] = []
    keys: list[str] = []
    missing: list[str] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        real: Path | None = None  # the directory's resolved path
        if p.is_dir():
            try:
                found = sorted(c for c in p.iterdir() if c.suffix.lower() in STORY_SUFFIXES
                               and not c.name.startswith("."))
            except OSError as e:
                missing.append(f"{p}: cannot list the directory ({e.strerror})")
                continue
            # A symlink dropped into an inbox could publish any file the process can read
            # (/etc/passwd, a private key): inside a directory, only regular files count.
            # A file named on the command line is the operator's explicit choice.
            links = [c for c in found if c.is_symlink()]
            missing += [f"{c}:1: is a symlink; not followed inside an inbox directory"
                        for c in links]
            found = [c for c in found if not c.is_symlink()]
            # An entry of the listing that is no symlink resolves to the resolved directory
            # plus its name: one resolve per directory, not one per file (~10k lstat calls).
            real = p.resolve()
        elif p.exists():
            found = [p]
        else:
            missing.append(f"{p}: no such file or directory")
            continue
        for f in found:
            key = real / f.name if real is not None else f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
                keys.append(str(key))
    return files, keys, missing


def _reject(report: IngestReport, message: str, hint: str = "") -> None:
    report.events.append(IngestEvent("rejected", message, hint))


def _note(report: IngestReport, echo: Callable[[str], None] | None, kind: str, text: str) -> None:
    report.events.append(IngestEvent(kind, text))
    if echo is not None:
        echo(text)


def _read(path: Path, shown: str) -> tuple[bytes | None, str, ParseError | None]:
    """(bytes, fingerprint, error). Oversized files are fingerprinted by size and mtime
    rather than read: hashing a stray multi-GB file would stall every run."""
    try:
        st = path.stat()
    except OSError as e:
        return None, "", ParseError(shown, 1, f"cannot read: {e.strerror}", "check the path")
    if not stat.S_ISREG(st.st_mode):
        return None, "", ParseError(shown, 1, "not a regular file", "give story files or directories")
    if st.st_size > MAX_BYTES:
        fp = f"stat:{st.st_size}:{st.st_mtime_ns}"
        return None, fp, ParseError(shown, 1, f"file is {st.st_size} bytes, over the "
                                    f"{MAX_BYTES}-byte bound",
                                    "a story file is a few KB; split it or check it is the right file")
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, "", ParseError(shown, 1, f"cannot read: {e.strerror}", "check its permissions")
    return data, hashlib.sha256(data).hexdigest(), None


class _BadTime(ParseError):
    """A file whose modification time cannot date a story (out of range, or in the future)."""


def _file_time(path: Path, shown: str, now: datetime) -> datetime:
    """The file's mtime as the time its relative ages count from, never later than `now`.

    A time past what datetime holds (9999-12-31 on tmpfs, `@1e15`) or more than a day ahead
    (an ext4 file dated 2446 would top every feed for ever) rejects the file, alone."""
    hint = (f"set the file's time (touch {shown}), or give the time with "
            "`digest ingest --as-of ISO8601`")
    try:
        ns = path.stat().st_mtime_ns
    except OSError as e:
        raise _BadTime(shown, 1, f"cannot read its modification time: {e.strerror}",
                       "check the path") from e
    try:
        when = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    except (OverflowError, OSError, ValueError) as e:
        raise _BadTime(shown, 1, f"modification time ({ns // 1_000_000_000} s since 1970) "
                       "is outside the years 1-9999", hint) from e
    if when > now + FUTURE_SLACK:
        raise _BadTime(shown, 1, f"modification time {iso(when)} is in the future", hint)
    return min(when, now)


def check_as_of(as_of: datetime | None, now: datetime | None = None) -> datetime | None:
    """`--as-of` as an aware time; a time more than a day ahead is refused: every story
    the run derives a time for would be dated in the future (and 9999-12-31 overflows)."""
    if as_of is None:
        return None
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if as_of > now + FUTURE_SLACK:
        raise DigestError(f"--as-of {iso(as_of)} is in the future (now is {iso(now)})",
                          "give the time the story files were written, at most a day ahead")
    return as_of


# Runs of at least this many files parse in worker processes, one per core: parsing is pure
# and CPU-bound, and a fork costs ~10 ms a worker, which a few hundred files repay.
PARALLEL_MIN_FILES = 200
CHUNK_FILES = 50  # files per task sent to a worker
# Stories stored per transaction: a 10k-file run keeps ~1k parsed stories in memory, not 10k.
# Each batch is atomic; a run killed between batches has stored the earlier ones (a rerun
# reports them unchanged).
BATCH_STORIES = 1000
# Every commit rewrites the whole index (all its shards), so with a fixed batch a big run's
# cost grows with the square of the store (100k cards: 100 rewrites of up to 160 MB). A batch
# may grow to a quarter of the stories already stored, up to this many (~10 KB of memory a
# story while it waits): a bounded number of rewrites per doubling of the store.
BATCH_STORIES_MAX = 5000


def _batch_limit(stored: int) -> int:
    return max(BATCH_STORIES, min(stored // 4, BATCH_STORIES_MAX))


@dataclass
class _Prepared:
    """What reading and parsing one file gave (picklable: it may come from a worker)."""

    key: str  # the resolved path: the quarantine's and origin_ids' key
    fp: str  # the content fingerprint ("" when the file could not be read)
    parsed: list[Parsed] | None = None  # None when rejected, or skipped as quarantined
    error: tuple[str, str] | None = None  # (FILE:LINE: reason, hint)
    quarantine: str | None = None  # why to quarantine it (with `fp`), for a ParseError
    # Per parsed story, `encode_story` of it (content hash, body bytes) as a worker computed
    # it, so the storing process does not; None where not computed (in-process runs).
    encoded: list[tuple[str, bytes] | None] | None = None


def _prepare(path: Path, key: str, quarantined: Mapping[str, str],
             as_of: datetime | None) -> _Prepared:
    """Read and parse one file (`key`: its resolved path); pure but for reading it (safe in
    a worker process). A file quarantined with the same fingerprint is not parsed."""
    shown = str(path)
    data, fp, err = _read(path, shown)
    if fp and quarantined.get(key) == fp:
        return _Prepared(key, fp)
    try:
        if err is not None:
            raise err
        assert data is not None
        # With --as-of the operator states the time; else the mtime is only a guess at
        # it, and a file copied with its old mtime may still state a time up to now.
        now = datetime.now(UTC)
        when = as_of or _file_time(path, shown, now)
        latest = None if as_of else now + FUTURE_SLACK
        return _Prepared(key, fp, parsed=parse_file(decode_story_bytes(data, shown), shown,
                                                    when, not_after=latest))
    except _BadTime as e:
        # Not quarantined: the fix (touch, or --as-of) leaves the bytes unchanged.
        return _Prepared(key, fp, error=(str(e.message), e.hint))
    except ParseError as e:
        return _Prepared(key, fp, error=(str(e.message), e.hint),
                         quarantine=f"line {e.line}: {e.reason}" if fp else None)
    except (RecursionError, ValueError, KeyError, TypeError, IndexError,
            ArithmeticError) as e:
        # A parser bug must not sink the whole run; not quarantined, so a fixed parser
        # picks the file up again without anyone touching it.
        return _Prepared(key, fp, error=(f"{shown}:1: could not parse ({type(e).__name__}: {e})",
                                         "this is a digest bug; please report it with the file"))


_WORKER_QUARANTINED: Mapping[str, str] = {}


def _worker_init(quarantined: Mapping[str, str], parent: int) -> None:
    global _WORKER_QUARANTINED
    _WORKER_QUARANTINED = quarantined
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """A forked worker inherits the parent's open files, the store lock's among them, and
    waits on its queue for ever: if the parent is killed (SIGKILL during a run), an orphaned
    worker would hold the lock and hang every later ingest. On Linux the kernel kills the
    worker with its parent (PR_SET_PDEATHSIG); a parent already gone ends it at once.
    `parent` 0: a forkserver worker (the daemon's), whose parent is the fork server: it
    inherits none of our files, and dies with the fork server."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's exit still ends the pool
        pass
    if parent and os.getppid() != parent:
        os._exit(1)


def _encoded(story: Story) -> tuple[str, bytes] | None:
    try:
        return encode_story(story)
    except DigestError:  # not valid Unicode: the store raises it again, in the parent
        return None


def _prepare_chunk(paths: list[tuple[Path, str]], as_of: datetime | None) -> list[_Prepared]:
    """`_prepare` of each (path, key) in a worker, with each story's hash and body bytes."""
    out = [_prepare(p, key, _WORKER_QUARANTINED, as_of) for p, key in paths]
    for prep in out:
        if prep.parsed:
            prep.encoded = [_encoded(p.story) for p in prep.parsed]
    return out


def _workers(nfiles: int) -> int:
    """Worker processes for a run of `nfiles` files: 0 (parse in this process) for a small
    run or a one-core machine."""
    if nfiles < PARALLEL_MIN_FILES:
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, -(-nfiles // CHUNK_FILES)) if cores > 1 else 0


def _prepared(files: list[Path], keys: list[str], quarantined: Mapping[str, str],
              as_of: datetime | None) -> Iterator[_Prepared]:
    """`_prepare` of every file, in order: in this process for small runs, else in worker
    processes, with a bounded number of chunks in flight (memory stays flat when storing is
    slower than parsing: at most about two batches of parsed stories are held)."""
    n = _workers(len(files))
    if n == 0:
        for path, key in zip(files, keys, strict=True):
            yield _prepare(path, key, quarantined, as_of)
        return
    # fork shares the loaded code for free; a process with other threads (the daemon) uses
    # forkserver, since a fork copies locks other threads may hold.
    method = "fork" if threading.active_count() == 1 and "fork" in \
        multiprocessing.get_all_start_methods() else "forkserver"
    pairs = list(zip(files, keys, strict=True))
    chunks = [pairs[i:i + CHUNK_FILES] for i in range(0, len(pairs), CHUNK_FILES)]
    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context(method),
                             initializer=_worker_init,
                             initargs=(dict(quarantined), os.getpid() if method == "fork" else 0)
                             ) as pool:
        pending: deque[Future[list[_Prepared]]] = deque()
        todo = iter(chunks)
        # Enough chunks in flight that the workers keep parsing while this process commits
        # a batch (its body files wait on the disk): about one batch beyond what they hold.
        window = 2 * n + BATCH_STORIES // CHUNK_FILES
        try:
            for chunk in todo:
                pending.append(pool.submit(_prepare_chunk, chunk, as_of))
                if len(pending) >= window:
                    break
            while pending:
                done = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(_prepare_chunk, nxt, as_of))
                yield from done
        finally:
            for f in pending:
                f.cancel()


@dataclass
class _Batch:
    """What one transaction stores: stories, quarantine changes and origin ids."""

    good: list[Parsed] = field(default_factory=list)
    quarantine: list[tuple[str, str, str]] = field(default_factory=list)  # (key, fp, reason)
    release: list[str] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)  # resolved path → title-hash id
    encoded: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id → encode_story


def ingest_paths(config: Config, paths: Iterable[Path] | None = None, as_of: datetime | None = None,
                 *, progress: Progress | None = None,
                 echo: Callable[[str], None] | None = None) -> IngestReport:
    """Ingest files and directories (default `[ingest] paths`) into the store.

    Returns the report; nothing is printed. `progress(n, total)` is called as the n-th
    file is read; `echo`, if given, gets each line of `report.lines()` as the run reaches it (skips
    while reading, stories after each commit, the summary last).

    Parsing happens outside the store lock (in worker processes, one per core, for runs of
    `PARALLEL_MIN_FILES` files or more); the stories, quarantine changes and origin ids are
    then written in transactions of `BATCH_STORIES` stories (more in a big store, up to
    `BATCH_STORIES_MAX`: `_batch_limit`), the last one also
    recording the run. Events come in file order, a batch's stories after its commit; a
    story id defined by two files is rejected across the whole run. Times: `as_of` (default:
    each file's mtime) resolves relative ages. A story already stored keeps its stored
    `published` when the new one is derived (ages, or an article's as_of): re-reading the same
    card later must not move it, while a time the file states exactly (JSON `published`, a
    dated header) wins."""
    as_of = check_as_of(as_of)
    report = IngestReport()
    files, keys, missing = _story_files(list(paths) if paths else list(config.ingest.paths))
    report.files = len(files)
    for msg in missing:
        _reject(report, msg, "check the path, or [ingest] paths in config.toml")
    store = open_store(config.store)

    origins = _origin_ids(store)
    # The quarantine as the run starts (one read, not one query per file).
    entries = {d["path"]: d for d in store.quarantine_items()}
    quarantined = {k: d.get("fingerprint") for k, d in entries.items()}
    owner: dict[str, str] = {}  # story id → file that defined it in this run
    counts = dict.fromkeys(("added", "updated", "unchanged"), 0)
    batch = _Batch()
    # Only a run that will commit more than one batch asks the store's size (it reads the
    # whole index, which a one-file ingest into a big store does not).
    stored = store.story_count() if len(files) > BATCH_STORIES else 0
    limit = _batch_limit(stored)
    for i, (path, prep) in enumerate(zip(files, _prepared(files, keys, quarantined, as_of),
                                         strict=True), 1):
        if progress is not None:
            progress(i, len(files))
        shown, key = str(path), prep.key
        old = entries.get(key) if prep.fp else None
        if old is not None and old.get("fingerprint") == prep.fp:
            report.skipped.append(shown)
            _note(report, echo, "skipped", f"{shown}: skipped (quarantined: "
                  f"{old.get('reason', '')}; edit the file to retry)")
            continue
        if prep.error is not None:
            _reject(report, *prep.error)
            if prep.quarantine is not None:
                batch.quarantine.append((key, prep.fp, prep.quarantine))
            continue
        parsed = prep.parsed
        assert parsed is not None
        tracked = _title_hashed(parsed, shown)
        derived_id = tracked.id if tracked is not None else None
        if tracked is not None:
            prev = origins.get(key)
            if (prev and prev != tracked.id and prev not in owner
                    and store.story_hash(prev) is not None):
                tracked.id = prev  # same file, edited title: the same story, updated
            batch.origins[key] = tracked.id
        dup = next((p.story.id for p in parsed if p.story.id in owner), None)
        if dup is not None:
            _reject(report, f"{shown}:1: story id {dup} is also in {owner[dup]}",
                    "two files describe one story: remove or rename one of them")
            continue
        for p in parsed:
            owner[p.story.id] = shown
        if prep.encoded is not None:
            ids = Counter(p.story.id for p in parsed)
            for p, enc in zip(parsed, prep.encoded, strict=True):
                # Not for a story whose id was just pinned to its file's earlier one (its
                # hash and body name the id the worker saw), nor for an id a JSON array
                # repeats (the store sees both stories, each with its own values).
                if (enc is not None and not (p.story is tracked and p.story.id != derived_id)
                        and ids[p.story.id] == 1):
                    batch.encoded[p.story.id] = enc
        batch.good.extend(parsed)
        if old is not None:
            batch.release.append(key)
        if len(batch.good) >= limit:
            _store_batch(store, batch, as_of, report, echo, counts)
            stored += len(batch.good)
            limit = _batch_limit(stored)
            batch = _Batch()
    _store_batch(store, batch, as_of, report, echo, counts, last=True)
    if echo is not None:
        echo(report.summary())
    return report


def _store_batch(store: Store, batch: _Batch, as_of: datetime | None, report: IngestReport,
                 echo: Callable[[str], None] | None, counts: dict[str, int],
                 last: bool = False) -> None:
    """One transaction: the batch's stories, quarantine changes and origin ids (and, for the
    `last` batch, the run's record); then one event per story, in order."""
    good, encoded = batch.good, batch.encoded
    with store.transaction():
        for p in good:
            # An explicit --as-of restates when the files were written: their derived times
            # are resolved again (and reported as updated), not kept from the store.
            if as_of is None and _keep_published(store, p, encoded):
                encoded.pop(p.story.id, None)  # new times: the worker's body bytes are stale
        retimed = _retimed(store, good, encoded) if as_of is not None else set()
        results = store.upsert_stories([p.story for p in good], force=retimed,
                                       encoded=encoded) if good else []
        for key, fp, reason in batch.quarantine:
            store.quarantine_put(key, fp, reason)
        for key in batch.release:
            store.quarantine_clear(key)
        if batch.origins:
            merged = _origin_ids(store)  # re-read under the lock: another ingest may have run
            if any(merged.get(k) != v for k, v in batch.origins.items()):
                store.meta_set(ORIGIN_IDS_KEY, merged | batch.origins)
        for _, st in results:
            counts[st] += 1
        # Only a run that changed something is recorded: a no-op ingest (the daemon's usual
        # tick) must not rewrite the store.
        if last and (counts["added"] or counts["updated"] or report.rejections):
            record_run(store, LAST_INGEST, datetime.now(UTC), files=report.files, **counts,
                       rejected=len(report.rejections), skipped=len(report.skipped))
    titles = {p.story.id: p.story.title[p.story.languages[0]] for p in good}
    for sid, status in results:
        getattr(report, status).append(sid)
        title = titles[sid]
        _note(report, echo, status, f"{status} {sid}  {title[:100] + '…' if len(title) > 100 else title}")


def _origin_ids(store: Store) -> dict[str, str]:
    found = store.meta_get(ORIGIN_IDS_KEY)
    return dict(found) if isinstance(found, dict) else {}


def _title_hashed(parsed: list[Parsed], shown: str) -> Story | None:
    """The story of a one-story file whose id is a hash of its title (no id in the file
    name, none stated in JSON), else None: only such ids move when the title is edited."""
    if len(parsed) != 1 or source_id(shown) is not None:
        return None
    s = parsed[0].story
    if s.id != derive_id(shown, s.title[s.languages[0]]):
        return None
    return s


def _content_hash(s: Story, encoded: Mapping[str, tuple[str, bytes]]) -> str:
    pre = encoded.get(s.id)
    return pre[0] if pre is not None else s.content_hash()


def _retimed(store: Store, good: list[Parsed],
             encoded: Mapping[str, tuple[str, bytes]]) -> set[str]:
    """Ids of stored stories with the same text whose times an explicit --as-of changed."""
    out = set()
    for p in good:
        s = p.story
        stored_hash = store.story_hash(s.id)
        if stored_hash is not None and stored_hash == _content_hash(s, encoded):
            try:
                old = store.get_story(s.id)
            except DamagedBody:
                continue  # upsert_stories rewrites a damaged body anyway
            if old is not None and (old.published, old.updated) != (s.published, s.updated):
                out.add(s.id)
    return out


def _keep_published(store: Store, p: Parsed, encoded: Mapping[str, tuple[str, bytes]]) -> bool:
    """For a changed, already stored story with derived times, keep the stored `published`.
    True when it changed the story's times."""
    s = p.story
    if p.exact_times:
        return False
    stored_hash = store.story_hash(s.id)
    if stored_hash is None or stored_hash == _content_hash(s, encoded):
        return False
    try:
        old = store.get_story(s.id)
    except DamagedBody:
        return False  # the stored body cannot be read (this ingest rewrites it): keep the new times
    if old is None:
        return False
    before = (s.published, s.updated)
    s.published = old.published
    s.updated = max(s.updated, s.published)
    return (s.published, s.updated) != before
