"""The embedded store's delivery journal: a compact current state beside an append-only log.

Why: the journal of schema 1 was one `deliveries.jsonl` that every process read whole and
kept whole in memory (722k lines = 273 MB took a dry-run 12.4 s and 1.5 GB). A tick only
needs, per subscriber, the latest record of the due edition and the story ids sent recently;
history is for `digest store copy` and for people. So (like Postfix keeps its queue apart
from its logs) the two are kept apart:

    <store>/journal/log-YYYY-MM-DD.jsonl   append-only segments, one JSON record a line. An
                                           append goes to the segment of the UTC day it is
                                           made (never to one older than the newest), with
                                           one write + fsync per batch; a torn tail (kill
                                           mid-append) is cut before the next append and
                                           never read.
    <store>/journal/state.json             the checkpoint (journal_state.py): per (digest,
                                           email) the latest record of each of the newest
                                           KEEP_EDITIONS (8) editions; per email the story
                                           ids `sent` within SENT_WINDOW_HOURS (14 days,
                                           counted back from the newest `at` in the journal,
                                           so `--now` runs in the past keep theirs); and
                                           `covers`: the (segment, byte offset) up to which
                                           it holds every record. Written atomically.
    <store>/journal/archive/               segments older than the checkpoint's segment
                                           (no hot path reads them) and, after the upgrade,
                                           `deliveries-legacy.jsonl`.

Opening loads the checkpoint and replays only the log after `covers`; a process sees other
processes' appends incrementally (byte offsets) and reloads when another process replaced the
checkpoint. After an append (under the store lock) a new checkpoint is written when more than
CHECKPOINT_RECORDS records (or, for a state of more than LARGE_STATE keys, as many records as
it has keys) sit after the last one, or when a new day's segment started; the
segments it covers then move to archive/. So a tick costs O(subscribers x KEEP_EDITIONS +
ids in the window + CHECKPOINT_RECORDS), whatever the history.

The window: a story older than its digest's `max_age_hours` is never planned, so
`sent_story_ids` only needs the ids sent within the longest max_age_hours (72 h by default).
14 days leaves room for that and for clock differences; a config with max_age_hours above
336 passes `window_hours` (the checkpoint remembers the largest window it was given).
`state()` answers for every edition appended after the checkpoint and for the newest 8 per
(digest, email) before it: the planner only asks about the due edition.

Upgrade from schema 1 (`<store>/deliveries.jsonl`, run from migrations.py on open, and by any
journal that still finds the file): under the store lock, stream the file (never held
whole), build the state, write the checkpoint (covering the legacy file, and no segment yet),
then move the file to archive/deliveries-legacy.jsonl. A kill before the checkpoint leaves
only a temp file; a kill between checkpoint and move leaves the legacy file in place, and
the next open converts it again from scratch (idempotent: no segment is appended before the
move, as appends also upgrade first under the same lock).

`claim` and `import_records` run under the store lock (the embedded store has one sender per
digest anyway; `renew` is a no-op). An imported record older than its key's current one goes
to archive/IMPORTED_NAME, history only: it never replaces a newer record on replay. `import_records` (`digest store copy`, rare) scans the history once for an
8-byte hash of each record's (digest, edition, email, state, at): O(history) time and ~60 MB
per million records, off every hot path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from digest import codec
from digest.errors import StoreError
from digest.fileio import atomic_write, fsync_path, write_all, write_error
from digest.models import parse_iso
from digest.store.base import CLAIM_LEASE_SECONDS, check_records, email_key
from digest.store.journal_log import (
    LEGACY_ARCHIVED,
    LEGACY_NAME,
    drop_torn_tail,
    live_segments,
    read_lines,
    segment_name,
)
from digest.store.journal_state import SENT_WINDOW_HOURS, JournalState, canonical_at
from digest.store.storage import DIR_MODE, FILE_MODE, encode

log = logging.getLogger(__name__)

CHECKPOINT_RECORDS = 20_000  # log records after the checkpoint before a new one is written
LARGE_STATE = 40_000  # keys above which the checkpoint interval grows with the state
UPGRADE_PRUNE_EVERY = 50_000  # records between prunes while converting a legacy file
IMPORT_BATCH = 5_000
STATE_NAME = "state.json"
# Under archive/: imported records older than their key's current one (history only). Its
# name sorts with the legacy file's, so records() streams it before the segments.
IMPORTED_NAME = "deliveries-legacy-imported.jsonl"



def _record_hash(r: dict) -> int:
    key = codec.dumps([r.get("digest"), r.get("edition"), email_key(str(r.get("email", ""))),
                       r.get("state"), r.get("at")])
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class DeliveryJournal:
    """Checkpointed state + dated append-only segments (see the module docstring)."""

    def __init__(self, store_dir: Path, lock: Callable[[], AbstractContextManager[None]], *,
                 tmpdir: Path | None = None, window_hours: float | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.root = self.store_dir / "journal"
        self.archive = self.root / "archive"
        self.legacy = self.store_dir / LEGACY_NAME
        self.state_path = self.root / STATE_NAME
        self.tmpdir = Path(tmpdir) if tmpdir else self.store_dir / ".tmp"
        self.path = self.root  # what error messages name
        self._lock = lock
        self._mutex = threading.RLock()
        self._window = max(SENT_WINDOW_HOURS, float(window_hours or 0))
        self._st: JournalState | None = None
        self._ckpt: tuple[int, int, int] | None = None
        self._covers: dict = {}
        self._pos: tuple[str, int, int] = ("", 0, 0)  # segment ("" = before all), offset, line
        self._tail = 0  # records applied after the checkpoint
        self._ckpt_keys = 0  # (digest, email) keys the checkpoint held

    # --- reading --------------------------------------------------------------------------

    def _load(self) -> None:
        """(Re)load the checkpoint; upgrades a legacy file first (under the store lock)."""
        if self.legacy.exists():
            with self._lock():
                self.upgrade()
        while True:
            key = _stat_key(self.state_path)
            data: dict = {}
            if key is not None:
                try:
                    data = codec.loads(self.state_path.read_bytes())
                except FileNotFoundError:
                    continue  # replaced between stat and read: take the new one
                except ValueError as e:
                    raise StoreError(f"{self.state_path}: corrupt journal checkpoint ({e})",
                                     "delete it: the journal is rebuilt from journal/ and "
                                     "journal/archive/ on the next open") from e
                if _stat_key(self.state_path) != key:
                    continue
            break
        st = JournalState.load(data) if data else JournalState()
        st.window_hours = max(st.window_hours, self._window)
        covers = data.get("covers") or {}
        self._st, self._ckpt, self._covers = st, key, covers
        self._ckpt_keys = len(st.latest)
        self._pos = (str(covers.get("segment") or ""), int(covers.get("offset") or 0),
                     int(covers.get("lineno") or 0))
        self._tail = 0

    def _seg_path(self, name: str) -> Path:
        live = self.root / name
        if live.exists():
            return live
        return self.archive / name  # moved there by another process's checkpoint

    def _catch_up(self) -> JournalState:
        """Apply the records appended since the last call (complete lines only)."""
        if self._st is None or _stat_key(self.state_path) != self._ckpt:
            self._load()
        names = live_segments(self.root)
        while _stat_key(self.state_path) != self._ckpt:
            # Another process checkpointed (and archived the segments it covers) since the
            # check above: the listing may lack the rest of the segment we were reading.
            self._load()
            names = live_segments(self.root)
        st = self._st
        assert st is not None
        seg, off, ln = self._pos
        for name in names:
            if name < seg:
                continue
            if name > seg:
                seg, off, ln = name, 0, 0
                self._pos = (seg, off, ln)
            try:
                for rec, end, lineno in read_lines(self._seg_path(name), off, ln):
                    st.apply(rec)
                    self._tail += 1
                    self._pos = (seg, end, lineno)
            except FileNotFoundError:
                if _stat_key(self.state_path) != self._ckpt:  # archived and checkpointed
                    self._st = None
                    return self._catch_up()
                raise
        return st

    def state(self, digest: str, edition: str, email: str) -> dict | None:
        """The latest record for (digest, edition, email), or None."""
        return self.states(digest, [(edition, email)])[0]

    def states(self, digest: str, keys: Sequence[tuple[str, str]]) -> list[dict | None]:
        """`state` of each (edition, email), in order, after one catch-up of the log."""
        with self._mutex:
            st = self._catch_up()
            return [_copy(st.get(digest, edition, email)) for edition, email in keys]

    def sent_story_ids(self, email: str, digest: str | None = None) -> frozenset[str]:
        """Ids of the stories marked `sent` to `email` within the window, in any digest or
        only in `digest` (cached: do not mutate)."""
        return self.sent_story_ids_many([email], digest)[0]

    def sent_story_ids_many(self, emails: Sequence[str], digest: str | None = None
                            ) -> list[frozenset[str]]:
        """`sent_story_ids` of each email, in order, after one catch-up of the log."""
        with self._mutex:
            st = self._catch_up()
            return [st.sent_ids(email, digest) for email in emails]

    def _history(self) -> list[Path]:
        """Every file of the journal, oldest first."""
        files = [self.legacy] if self.legacy.exists() else []
        try:
            archived = sorted(os.listdir(self.archive))
        except FileNotFoundError:
            archived = []
        files += [self.archive / n for n in archived if n.startswith("deliveries-legacy")]
        names = sorted({n for n in archived if n.startswith("log-")} |
                       set(live_segments(self.root)))
        return files + [self._seg_path(n) for n in names]

    def records(self) -> Iterator[dict]:
        """Every complete record, oldest first: the legacy file, archived then live segments
        (a torn final line is skipped). Streamed, never held whole."""
        for path in self._history():
            try:
                for rec, _, _ in read_lines(path):
                    yield rec
            except FileNotFoundError:
                continue  # the legacy file, moved to archive/ by an upgrade meanwhile

    # --- writing --------------------------------------------------------------------------

    def append(self, records: list[dict]) -> None:
        """Append a batch with one write + fsync under the store lock."""
        if not records:
            return
        check_records(records, str(self.root))
        with self._mutex, self._lock():
            if self.legacy.exists():
                self.upgrade()
            self._append_locked(records)
            self._maintain()

    def _append_locked(self, records: list[dict]) -> None:
        if not records:
            return
        data = b"".join(encode(r, str(self.root)) + b"\n" for r in records)
        if not self.root.is_dir():
            self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fsync_path(self.store_dir, directory=True)
        segs = live_segments(self.root)
        target = segment_name(datetime.now(UTC).strftime("%Y-%m-%d"))
        if segs and segs[-1] >= target:
            target = segs[-1]  # the clock went back: never append behind the newest
        elif segs:
            self._cut_torn(self.root / segs[-1])  # the old day's segment is closed clean
        path = self.root / target
        created = not path.exists()
        _append_lines(path, data)
        if created:
            fsync_path(self.root, directory=True)

    @staticmethod
    def _cut_torn(path: Path) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            if drop_torn_tail(fd, os.fstat(fd).st_size) != os.fstat(fd).st_size:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _maintain(self) -> None:
        """Under the lock after an append: checkpoint when the tail is long or a new
        segment started (then older segments move to archive/). The batch is durable
        already: a corrupt line met here is left to the readers to report (`state()` names
        it), not raised from this append."""
        try:
            self._catch_up()
        except StoreError as e:
            log.warning("journal checkpoint skipped: %s", e)
            self._st = None
            return
        if self._tail >= _checkpoint_every(self._ckpt_keys) or \
                len(live_segments(self.root)) > 1:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Write state.json covering everything read so far; archive the older segments.
        The caller holds the store lock and has caught up."""
        st = self._st
        assert st is not None
        st.prune()
        seg, off, ln = self._pos
        covers = {"legacy": bool(self._covers.get("legacy")), "segment": seg, "offset": off,
                  "lineno": ln}
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.tmpdir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        atomic_write(self.state_path, st.dump_bytes(covers), self.tmpdir,  # type: ignore[arg-type]
                     mode=FILE_MODE)
        self._ckpt, self._covers, self._tail = _stat_key(self.state_path), covers, 0
        self._ckpt_keys = len(st.latest)
        old = [n for n in live_segments(self.root) if n < seg]
        if old:
            self.archive.mkdir(mode=DIR_MODE, exist_ok=True)
            for n in old:
                os.replace(self.root / n, self.archive / n)
            fsync_path(self.archive, directory=True)
            fsync_path(self.root, directory=True)

    def upgrade(self) -> bool:
        """Convert a schema-1 `deliveries.jsonl` (see the module docstring); the caller holds
        the store lock. Returns False when there was nothing to convert."""
        with self._mutex:
            if not self.legacy.exists():
                return False
            st = JournalState()
            st.window_hours = self._window
            n = 0
            for rec, _, _ in read_lines(self.legacy):
                st.apply(rec)
                n += 1
                if n % UPGRADE_PRUNE_EVERY == 0:
                    st.prune()
            self._st, self._covers = st, {"legacy": True}
            self._pos, self._tail = ("", 0, 0), 0
            _hook("checkpoint")
            self._checkpoint()  # covers the legacy file and no segment: written first
            _hook("move")
            self.archive.mkdir(mode=DIR_MODE, exist_ok=True)
            dest = self.archive / LEGACY_ARCHIVED
            k = 1
            while dest.exists():  # never overwrite history
                k += 1
                dest = self.archive / f"deliveries-legacy-{k}.jsonl"
            os.replace(self.legacy, dest)
            fsync_path(self.archive, directory=True)
            fsync_path(self.store_dir, directory=True)
            self._load()  # and replay any live segment
            return True

    def claim(self, records: list[dict], lease_seconds: float = CLAIM_LEASE_SECONDS) -> list[dict]:
        """Append, as `sending`, each record whose key is free (see Journal.claim); return
        those, in order."""
        if not records:
            return []
        check_records(records, str(self.root))
        with self._mutex, self._lock():
            if self.legacy.exists():
                self.upgrade()
            st = self._catch_up()
            claimed: list[dict] = []
            taken: set[tuple[str, str, str]] = set()
            for r in records:
                key = (r["digest"], r["edition"], email_key(r["email"]))
                if key in taken or not _free(st.get(*key), r, lease_seconds):
                    continue
                taken.add(key)
                claimed.append(r if r.get("state") == "sending" else {**r, "state": "sending"})
            self._append_locked(claimed)
            self._maintain()
            return claimed

    def renew(self, records: list[dict], lease_seconds: float = CLAIM_LEASE_SECONDS
              ) -> list[dict]:
        """The records as given: under the send lock no other sender takes them."""
        return list(records)

    def import_records(self, records: Iterable[dict]) -> int:
        """Append the records not already present (same digest, edition, email, state, at);
        returns how many were new."""
        with self._mutex, self._lock():
            if self.legacy.exists():
                self.upgrade()
            seen = {_record_hash(r) for r in self.records()}
            st = self._catch_up()
            latest: dict[tuple[str, str, str], str] = {}  # key -> `at` of its current record
            new = 0
            batch: list[dict] = []
            stale: list[dict] = []
            for r in records:
                check_records([r], str(self.root))
                h = _record_hash(r)
                if h in seen:
                    continue
                seen.add(h)
                new += 1
                key = (r["digest"], r["edition"], email_key(r["email"]))
                at = canonical_at(r.get("at"))
                if key not in latest:
                    cur = st.get(*key)
                    latest[key] = canonical_at(cur.get("at")) if cur else ""
                if at < latest[key]:
                    # Older than the key's current record (an imported `sending` after a
                    # newer `sent`): history only, so replaying the log never applies it.
                    stale.append(r)
                else:
                    latest[key] = at
                    batch.append(r)
                if len(batch) >= IMPORT_BATCH:
                    self._append_locked(batch)
                    batch = []
                if len(stale) >= IMPORT_BATCH:
                    self._append_history(stale)
                    stale = []
            self._append_locked(batch)
            self._append_history(stale)
            self._maintain()
            return new

    def _append_history(self, records: list[dict]) -> None:
        """Append records to archive/IMPORTED_NAME: streamed by records() (so a copy keeps
        them and a second import skips them), never replayed into the state."""
        if not records:
            return
        self.archive.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        path = self.archive / IMPORTED_NAME
        _append_lines(path, b"".join(encode(r, str(self.root)) + b"\n" for r in records))
        fsync_path(self.archive, directory=True)


def _checkpoint_every(keys: int) -> int:
    """Records after a checkpoint of `keys` keys before the next: CHECKPOINT_RECORDS, and
    for a checkpoint of more than LARGE_STATE keys as many records as it holds keys. A
    checkpoint rewrites the whole state, so one per 20,000 records made a 100,000-
    subscriber send (200,000 records) rewrite ~100,000 records ten times; this way the work
    stays linear, and a reader never replays a tail longer than the checkpoint it loads."""
    return max(CHECKPOINT_RECORDS, keys) if keys > LARGE_STATE else CHECKPOINT_RECORDS


def _copy(rec: dict | None) -> dict | None:
    """A record of the state as the caller's own: its story list is shared with the state."""
    if rec is None:
        return None
    out = dict(rec)
    if isinstance(out.get("stories"), list):
        out["stories"] = list(out["stories"])
    return out


def _at(value: object) -> datetime | None:
    try:
        return parse_iso(str(value)) if value else None
    except (ValueError, TypeError):
        return None


def _free(prev: dict | None, rec: dict, lease_seconds: float) -> bool:
    if prev is None:
        return True
    state = prev.get("state")
    if state == "failed":
        return not prev.get("permanent")
    if state != "sending":
        return False
    then = _at(prev.get("at"))
    now = _at(rec.get("at")) or datetime.now(UTC)
    return then is None or (now - then).total_seconds() >= lease_seconds


def _hook(point: str) -> None:
    """Test hook: DIGEST_JOURNAL_KILL_AT=<point> kills the process there (SIGKILL), to show
    an upgrade interrupted at that point is redone on the next open."""
    if os.environ.get("DIGEST_JOURNAL_KILL_AT") == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _append_lines(path: Path, data: bytes) -> None:
    """Append complete lines with one write + fsync: a torn tail (a killed writer) is cut
    first, and a failed write is cut back, so no half batch is ever left behind."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        good = drop_torn_tail(fd, os.fstat(fd).st_size)
        try:
            write_all(fd, data)
            os.fsync(fd)
        except OSError as e:
            os.ftruncate(fd, good)
            raise write_error(path, e) from e
    finally:
        os.close(fd)
