"""The compact current state of the delivery journal (what every tick needs, bounded by
subscribers x retained editions + the story ids inside the dedupe window), and its checkpoint
form. See digest/store/journal.py for the design."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from digest import codec
from digest.models import iso, parse_iso
from digest.store.base import email_key

# Editions kept per (digest, email): the planner only asks about the due edition (and a send
# retries only that one), so a few are plenty; older ones live in the log and archive.
KEEP_EDITIONS = 8
# Story ids sent to an email are kept this long after they were sent (measured on the
# journal's own clock: its newest `at`, at most the wall clock + FUTURE_SLACK). Stories older
# than a digest's max_age_hours are never planned, so this must be >= the longest
# max_age_hours (72 h by default).
SENT_WINDOW_HOURS = 14 * 24.0
# The journal's clock never runs ahead of the wall clock by more than this: a record dated
# later (a skewed host, a hand edit) would otherwise empty the window until real time caught
# up. `--now` runs in the past are unaffected.
FUTURE_SLACK = timedelta(days=1)
FORMAT = 1
_NONE: frozenset[str] = frozenset()


def horizon() -> str:
    """The latest `at` the journal's clock may take: the wall clock + FUTURE_SLACK."""
    return iso(datetime.now(UTC) + FUTURE_SLACK)


def canonical_at(at: Any) -> str:
    """`at` in iso()'s spelling (sortable as a string), or "" when missing or unparseable."""
    if isinstance(at, str) and len(at) == 20 and at[10] == "T" and at[19] == "Z":
        return at
    try:
        return iso(parse_iso(str(at))) if at else ""
    except (ValueError, TypeError):
        return ""


def sent_key(at: str, digest: str) -> str:
    """The key of the ids sent to one email at `at` in `digest` (digest names hold no space)."""
    return f"{at} {digest}"


def split_sent_key(key: str) -> tuple[str, str]:
    """(at, digest) of a `sent_key`; a bare `at` (older checkpoints) has digest ""."""
    at, _, digest = key.partition(" ")
    return at, digest


def _recs(held: tuple) -> tuple[tuple, ...]:
    """The records of one `latest` entry: a packed record starts with its edition (a str),
    a tuple of several with a packed record."""
    return (held,) if type(held[0]) is str else held


class JournalState:
    """Latest record per (digest, edition, email) -- every edition appended since the last
    prune, and the newest KEEP_EDITIONS per (digest, email) before it -- and per email the
    ids sent within the window, with when.

    Held compactly (at 100,000 subscribers a send keeps ~100,000 records, and as dicts in
    per-key dicts they were ~1 KB each): a record is a tuple `(edition, keys, *values)`
    whose `keys` tuple is shared by every record of that shape; a key with several
    editions holds a tuple of them in order of the last write; an email's sent ids are a
    flat tuple `(sent_key, ids, ...)`. `get` and `records` give the records back as dicts;
    the checkpoint's format is unchanged."""

    def __init__(self) -> None:
        # (digest, email key) -> its record (packed, see _pack), or a tuple of them in
        # order of the last write when it has several editions (see _recs)
        self.latest: dict[tuple[str, str], tuple] = {}
        # email key -> ("<canonical at> <digest>", [ids], ...): the `stories` lists sent
        # then (a key repeats when several were), shared with the records, and in the
        # checkpoint one table of distinct lists (subscribers with the same languages and
        # tags get the same edition body), so ids are not repeated per email. Keys written
        # before digests were told apart are the bare `at`: those ids count as sent in every
        # digest (`sent_key`).
        self.sent: dict[str, tuple] = {}
        self.newest_at = ""
        self.window_hours = SENT_WINDOW_HOURS
        self._horizon = ""
        # Values shared between records (see _share): never mutated, like every list here;
        # emptied at each prune so they never outgrow what the state holds.
        self._strs: dict[str, str] = {}
        self._lists: dict[tuple[str, ...], list[str]] = {}
        self._shapes: dict[tuple[str, ...], tuple[str, ...]] = {}  # kept: a few shapes

    def _share(self, rec: dict, email: str) -> None:
        """Make `rec` (parsed from the log: ours) reuse the strings and story lists other
        records hold: at 100,000 subscribers every record repeats its digest, edition, state,
        `at` and a story list most of the run's other records have too (~1 KB a record)."""
        strs = self._strs
        for k in ("digest", "edition", "state", "at", "reason"):
            v = rec.get(k)
            if type(v) is str:
                rec[k] = strs.setdefault(v, v)
        if rec.get("email") == email:
            rec["email"] = email
        ids = rec.get("stories")
        if type(ids) is list and all(type(i) is str for i in ids):
            key = tuple(ids)
            shared = self._lists.get(key)
            if shared is None:
                shared = self._lists[key] = [strs.setdefault(i, i) for i in ids]
            rec["stories"] = shared

    def _pack(self, edition: str, rec: dict) -> tuple:
        keys = tuple(rec)
        shape = self._shapes.get(keys)
        if shape is None:
            shape = self._shapes[keys] = keys
        return (edition, shape, *rec.values())

    @staticmethod
    def _unpack(packed: tuple) -> dict:
        return dict(zip(packed[1], packed[2:], strict=True))

    def _put(self, key: tuple[str, str], edition: str, rec: dict) -> None:
        packed = self._pack(edition, rec)
        held = self.latest.get(key)
        if held is None or (type(held[0]) is str and held[0] == edition):
            self.latest[key] = packed  # one record: not wrapped
        else:
            self.latest[key] = (*(p for p in _recs(held) if p[0] != edition), packed)

    def apply(self, rec: dict) -> None:
        email = email_key(str(rec.get("email", "")))
        self._share(rec, email)
        digest, edition = str(rec.get("digest", "")), str(rec.get("edition", ""))
        # trimmed to KEEP_EDITIONS only by prune(), at a checkpoint
        self._put((digest, email), edition, rec)
        at = canonical_at(rec.get("at"))
        if at > self.newest_at:
            if at > self._horizon:  # cached: the horizon only moves forward
                self._horizon = horizon()
            if at <= self._horizon:
                self.newest_at = at
        if rec.get("state") == "sent" and rec.get("stories"):
            key = sent_key(at, digest)
            key = self._strs.setdefault(key, key)
            self.sent[email] = (*self.sent.get(email, ()), key, rec["stories"])

    def get(self, digest: str, edition: str, email: str) -> dict | None:
        held = self.latest.get((digest, email_key(email)))
        for packed in _recs(held) if held else ():
            if packed[0] == edition:
                return self._unpack(packed)
        return None

    def records(self) -> Iterator[dict]:
        """Every record kept (as a new dict; its `stories` list is shared: do not mutate)."""
        for held in self.latest.values():
            for packed in _recs(held):
                yield self._unpack(packed)

    def sent_ids(self, email: str, digest: str | None = None) -> frozenset[str]:
        """Ids sent to `email` within the window: in any digest (None), or in `digest` (plus
        the ids of records from before digests were told apart). Built per call, not kept:
        a send asks once per subscriber, and 100,000 kept sets would be ~70 MB."""
        flat = self.sent.get(email_key(email))
        if not flat:
            return _NONE
        return frozenset(str(i) for k, ids in zip(flat[::2], flat[1::2], strict=True)
                         if digest is None or split_sent_key(k)[1] in ("", digest)
                         for i in ids)

    def _sent_groups(self, email: str) -> dict[str, list[list[str]]]:
        """An email's sent ids as {sent_key: [lists]} (the checkpoint's form)."""
        flat = self.sent[email]
        out: dict[str, list[list[str]]] = {}
        for k, ids in zip(flat[::2], flat[1::2], strict=True):
            out.setdefault(k, []).append(ids)
        return out

    def prune(self) -> None:
        """Drop editions beyond KEEP_EDITIONS per key and ids sent before the window."""
        self._strs, self._lists = {}, {}
        for key, held in self.latest.items():
            if type(held[0]) is not str and len(held) > KEEP_EDITIONS:
                self.latest[key] = held[-KEEP_EDITIONS:]
        if not self.newest_at:
            return
        ref = min(self.newest_at, horizon())  # an older checkpoint may hold a future one
        cutoff = iso(parse_iso(ref) - timedelta(hours=self.window_hours))
        for email in list(self.sent):
            flat = self.sent[email]
            # "" (no usable `at`) is kept: it cannot be placed in time
            keep = tuple(x for k, ids in zip(flat[::2], flat[1::2], strict=True)
                         if not (at := split_sent_key(k)[0]) or at >= cutoff
                         for x in (k, ids))
            if len(keep) != len(flat):
                if keep:
                    self.sent[email] = keep
                else:
                    del self.sent[email]

    def size(self) -> tuple[int, int]:
        """(records kept, story ids kept)."""
        return (sum(len(_recs(e)) for e in self.latest.values()),
                sum(len(ids) for flat in self.sent.values() for ids in flat[1::2]))

    # --- checkpoint form ------------------------------------------------------------------

    def dump(self, covers: dict) -> dict:
        """The checkpoint: `covers` says up to where in the log it holds every record."""
        lists: list[list] = []
        ref = _list_refs(lists)

        latest = []
        for r in self.records():
            ids = r.get("stories")
            latest.append({**r, "stories": ref(ids)} if isinstance(ids, list) else r)
        sent = {email: {at: [ref(ids) for ids in group]
                        for at, group in self._sent_groups(email).items()}
                for email in self.sent}
        return {"format": FORMAT, "covers": covers, "newest_at": self.newest_at,
                "window_hours": self.window_hours, "lists": lists, "latest": latest,
                "sent": sent}

    def dump_bytes(self, covers: dict) -> bytearray:
        """`codec.dumps(self.dump(covers))`'s content (the same JSON value; `lists` comes
        last), built record by record into one buffer: at 100,000 subscribers `dump` made a
        copy of every record plus the whole text at once (~90 MB for a moment, at every
        checkpoint of a send)."""
        lists: list[list] = []
        ref = _list_refs(lists)

        out = bytearray(b'{"format":')
        out += codec.dumps(FORMAT) + b',"covers":' + codec.dumps(covers)
        out += b',"newest_at":' + codec.dumps(self.newest_at)
        out += b',"window_hours":' + codec.dumps(self.window_hours) + b',"latest":['
        sep = b""
        for r in self.records():
            ids = r.get("stories")
            if isinstance(ids, list):
                r["stories"] = ref(ids)
            out += sep
            out += codec.dumps(r)
            sep = b","
        out += b'],"sent":{'
        sep = b""
        for email in self.sent:
            out += sep
            out += codec.dumps(email) + b":" + codec.dumps(
                {at: [ref(ids) for ids in group]
                 for at, group in self._sent_groups(email).items()})
            sep = b","
        out += b'},"lists":' + codec.dumps(lists) + b"}"
        return out

    @classmethod
    def load(cls, data: dict) -> JournalState:
        st = cls()
        st.newest_at = str(data.get("newest_at") or "")
        st.window_hours = max(SENT_WINDOW_HOURS, float(data.get("window_hours") or 0))
        strs = st._strs
        lists = data.get("lists") or []
        for n, ids in enumerate(lists):  # one object per distinct list, records and sent ids
            if isinstance(ids, list) and all(type(i) is str for i in ids):
                lists[n] = st._lists.setdefault(tuple(ids), [strs.setdefault(i, i) for i in ids])
        recs = data.get("latest") or []
        for n, rec in enumerate(recs):
            recs[n] = None  # the parsed dict goes once packed: not all of them at once
            if isinstance(rec.get("stories"), int):
                rec["stories"] = lists[rec["stories"]]
            email = email_key(str(rec.get("email", "")))
            st._share(rec, email)
            st._put((str(rec.get("digest", "")), email), str(rec.get("edition", "")), rec)
        st.sent = {email: tuple(x for at, refs in by_at.items() for n in refs
                                for x in (strs.setdefault(at, at), lists[n]))
                   for email, by_at in (data.get("sent") or {}).items()}
        return st


def _list_refs(lists: list[list]) -> Callable[[list], int]:
    """`ref(ids)`: the index of `ids` in `lists`, appending it the first time: a checkpoint
    writes each distinct story list once and records point at it."""
    table: dict[tuple, int] = {}

    def ref(ids: list) -> int:
        key = tuple(ids)
        n = table.get(key)
        if n is None:
            n = table[key] = len(lists)
            lists.append(ids)
        return n

    return ref
