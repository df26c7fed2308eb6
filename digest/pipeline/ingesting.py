"""The ingest command: read story files, parse them, store the good, quarantine the bad.

Nothing here prints: every line the run has to say is in its IngestReport, and callers
decide where it goes (the CLI prints it, the daemon logs it). A caller that draws progress
passes a `progress(n, total)` callback.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from digest.config import Config
from digest.errors import ParseError
from digest.ingest import MAX_BYTES, Parsed, decode_story_bytes, parse_file
from digest.ingest.text import FUTURE_SLACK, derive_id, source_id
from digest.models import Story
from digest.store import Store

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
    files: list[Path] = []
    missing: list[str] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
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
            missing += [f"{c}: is a symlink; not followed inside an inbox directory" for c in links]
            found = [c for c in found if not c.is_symlink()]
        elif p.exists():
            found = [p]
        else:
            missing.append(f"{p}: no such file or directory")
            continue
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, missing


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


def ingest_paths(config: Config, paths: Iterable[Path] | None = None, as_of: datetime | None = None,
                 *, progress: Progress | None = None,
                 echo: Callable[[str], None] | None = None) -> IngestReport:
    """Ingest files and directories (default `[ingest] paths`) into the store.

    Returns the report; nothing is printed. `progress(n, total)` is called as the n-th
    file is read; `echo`, if given, gets each line of `report.lines()` as the run reaches it (skips
    while reading, stories after the commit, the summary last).

    Parsing happens before the store lock is taken; then every upsert and quarantine change
    is written in ONE transaction. Times: `as_of` (default: each file's mtime) resolves
    relative ages. A story already stored keeps its stored `published` when the new one is
    derived (ages, or an article's as_of): re-reading the same card later must not move it,
    while a time the file states exactly (JSON `published`, a dated header) wins."""
    report = IngestReport()
    files, missing = story_files(list(paths) if paths else list(config.ingest.paths))
    report.files = len(files)
    for msg in missing:
        _reject(report, msg, "check the path, or [ingest] paths in config.toml")
    store = Store(config.store.path)

    good: list[Parsed] = []
    origins = _origin_ids(store)
    new_origins: dict[str, str] = {}  # resolved path → title-hash id, recorded on commit
    owner: dict[str, str] = {}  # story id → file that defined it in this run
    quarantine: list[tuple[str, str, str]] = []  # (key, fingerprint, reason)
    release: list[str] = []
    for i, path in enumerate(files, 1):
        if progress is not None:
            progress(i, len(files))
        shown, key = str(path), str(path.resolve())
        data, fp, err = _read(path, shown)
        old = store.quarantine_get(key) if fp else None
        if old is not None and old.get("fingerprint") == fp:
            report.skipped.append(shown)
            _note(report, echo, "skipped", f"{shown}: skipped (quarantined: "
                  f"{old.get('reason', '')}; edit the file to retry)")
            continue
        try:
            if err is not None:
                raise err
            assert data is not None
            when = as_of or datetime.fromtimestamp(path.stat().st_mtime, UTC)
            # With --as-of the operator states the time; else the mtime is only a guess at
            # it, and a file copied with its old mtime may still state a time up to now.
            latest = None if as_of else max(when, datetime.now(UTC)) + FUTURE_SLACK
            parsed = parse_file(decode_story_bytes(data, shown), shown, when,
                                not_after=latest)
        except ParseError as e:
            _reject(report, str(e.message), e.hint)
            if fp:
                quarantine.append((key, fp, f"line {e.line}: {e.reason}"))
            continue
        except (RecursionError, ValueError, KeyError, TypeError, IndexError) as e:
            # A parser bug must not sink the whole run; not quarantined, so a fixed parser
            # picks the file up again without anyone touching it.
            _reject(report, f"{shown}:1: could not parse ({type(e).__name__}: {e})",
                    "this is a digest bug; please report it with the file")
            continue
        tracked = _title_hashed(parsed, shown)
        if tracked is not None:
            prev = origins.get(key)
            if (prev and prev != tracked.id and prev not in owner
                    and store.story_hash(prev) is not None):
                tracked.id = prev  # same file, edited title: the same story, updated
            new_origins[key] = tracked.id
        dup = next((p.story.id for p in parsed if p.story.id in owner), None)
        if dup is not None:
            _reject(report, f"{shown}:1: story id {dup} is also in {owner[dup]}",
                    "two files describe one story: remove or rename one of them")
            continue
        for p in parsed:
            owner[p.story.id] = shown
        good.extend(parsed)
        if old is not None:
            release.append(key)

    with store.transaction():
        for p in good:
            _keep_published(store, p)
        results = store.upsert_stories([p.story for p in good])
        for key, fp, reason in quarantine:
            store.quarantine_put(key, fp, reason)
        for key in release:
            store.quarantine_clear(key)
        if new_origins:
            merged = _origin_ids(store)  # re-read under the lock: another ingest may have run
            if any(merged.get(k) != v for k, v in new_origins.items()):
                store.meta_set(ORIGIN_IDS_KEY, merged | new_origins)
    titles = {p.story.id: p.story.title[p.story.languages[0]] for p in good}
    for sid, status in results:
        getattr(report, status).append(sid)
        title = titles[sid]
        _note(report, echo, status, f"{status} {sid}  {title[:100] + '…' if len(title) > 100 else title}")
    if echo is not None:
        echo(report.summary())
    return report


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


def _keep_published(store: Store, p: Parsed) -> None:
    """For a changed, already stored story with derived times, keep the stored `published`."""
    s = p.story
    stored_hash = store.story_hash(s.id)
    if stored_hash is None or stored_hash == s.content_hash() or p.exact_times:
        return
    old = store.get_story(s.id)
    if old is not None:
        s.published = old.published
        s.updated = max(s.updated, s.published)
