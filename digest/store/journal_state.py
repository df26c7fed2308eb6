"""The compact current state of the delivery journal (what every tick needs, bounded by
subscribers x retained editions + the story ids inside the dedupe window), and its checkpoint
form. See digest/store/journal.py for the design."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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


class JournalState:
    """Latest record per (digest, edition, email) -- every edition appended since the last
    prune, and the newest KEEP_EDITIONS per (digest, email) before it -- and per email the
    ids sent within the window, with when."""

    def __init__(self) -> None:
        # (digest, email key) -> {edition: latest record}, in order of the last write
        self.latest: dict[tuple[str, str], dict[str, dict]] = {}
        # email key -> {"<canonical at> <digest>": [the `stories` lists sent then]}: lists
        # shared with the records, and in the checkpoint one table of distinct lists
        # (subscribers with the same languages and tags get the same edition body), so ids are
        # not repeated per email. Keys written before digests were told apart are the bare
        # `at`: those ids count as sent in every digest (`sent_key`).
        self.sent: dict[str, dict[str, list[list[str]]]] = {}
        self.frozen: dict[str, dict[str | None, frozenset[str]]] = {}
        self.newest_at = ""
        self.window_hours = SENT_WINDOW_HOURS
        self._horizon = ""

    def apply(self, rec: dict) -> None:
        email = email_key(str(rec.get("email", "")))
        digest, edition = str(rec.get("digest", "")), str(rec.get("edition", ""))
        eds = self.latest.get((digest, email))
        if eds is None:
            eds = self.latest[(digest, email)] = {}
        else:
            eds.pop(edition, None)
        eds[edition] = rec  # trimmed to KEEP_EDITIONS only by prune(), at a checkpoint
        at = canonical_at(rec.get("at"))
        if at > self.newest_at:
            if at > self._horizon:  # cached: the horizon only moves forward
                self._horizon = horizon()
            if at <= self._horizon:
                self.newest_at = at
        if rec.get("state") == "sent" and rec.get("stories"):
            by_at = self.sent.get(email)
            if by_at is None:
                by_at = self.sent[email] = {}
            key = sent_key(at, digest)
            ids = by_at.get(key)
            if ids is None:
                ids = by_at[key] = []
            ids.append(rec["stories"])
            self.frozen.pop(email, None)

    def get(self, digest: str, edition: str, email: str) -> dict | None:
        eds = self.latest.get((digest, email_key(email)))
        return eds.get(edition) if eds else None

    def sent_ids(self, email: str, digest: str | None = None) -> frozenset[str]:
        """Ids sent to `email` within the window: in any digest (None), or in `digest` (plus
        the ids of records from before digests were told apart)."""
        key = email_key(email)
        cache = self.frozen.setdefault(key, {})
        frozen = cache.get(digest)
        if frozen is None:
            frozen = cache[digest] = frozenset(
                str(i) for k, lists in self.sent.get(key, {}).items()
                if digest is None or split_sent_key(k)[1] in ("", digest)
                for ids in lists for i in ids)
        return frozen

    def prune(self) -> None:
        """Drop editions beyond KEEP_EDITIONS per key and ids sent before the window."""
        for eds in self.latest.values():
            if len(eds) > KEEP_EDITIONS:
                for old in list(eds)[:-KEEP_EDITIONS]:
                    del eds[old]
        if not self.newest_at:
            return
        ref = min(self.newest_at, horizon())  # an older checkpoint may hold a future one
        cutoff = iso(parse_iso(ref) - timedelta(hours=self.window_hours))
        for email in list(self.sent):
            by_at = self.sent[email]
            # "" (no usable `at`) is kept: it cannot be placed in time
            keep = {k: ids for k, ids in by_at.items()
                    if not (at := split_sent_key(k)[0]) or at >= cutoff}
            if len(keep) != len(by_at):
                self.frozen.pop(email, None)
                if keep:
                    self.sent[email] = keep
                else:
                    del self.sent[email]

    def size(self) -> tuple[int, int]:
        """(records kept, story ids kept)."""
        return (sum(len(e) for e in self.latest.values()),
                sum(len(ids) for s in self.sent.values() for lists in s.values()
                    for ids in lists))

    # --- checkpoint form ------------------------------------------------------------------

    def dump(self, covers: dict) -> dict:
        """The checkpoint: `covers` says up to where in the log it holds every record."""
        table: dict[tuple, int] = {}
        lists: list[list] = []

        def ref(ids: list) -> int:
            key = tuple(ids)
            n = table.get(key)
            if n is None:
                n = table[key] = len(lists)
                lists.append(ids)
            return n

        latest = []
        for eds in self.latest.values():
            for r in eds.values():
                ids = r.get("stories")
                latest.append({**r, "stories": ref(ids)} if isinstance(ids, list) else r)
        sent = {email: {at: [ref(ids) for ids in group] for at, group in by_at.items()}
                for email, by_at in self.sent.items()}
        return {"format": FORMAT, "covers": covers, "newest_at": self.newest_at,
                "window_hours": self.window_hours, "lists": lists, "latest": latest,
                "sent": sent}

    @classmethod
    def load(cls, data: dict) -> JournalState:
        st = cls()
        st.newest_at = str(data.get("newest_at") or "")
        st.window_hours = max(SENT_WINDOW_HOURS, float(data.get("window_hours") or 0))
        lists = data.get("lists") or []
        for rec in data.get("latest") or []:
            if isinstance(rec.get("stories"), int):
                rec["stories"] = lists[rec["stories"]]
            email = email_key(str(rec.get("email", "")))
            key = (str(rec.get("digest", "")), email)
            eds = st.latest.get(key)
            if eds is None:
                eds = st.latest[key] = {}
            eds[str(rec.get("edition", ""))] = rec
        st.sent = {email: {at: [lists[n] for n in refs] for at, refs in by_at.items()}
                   for email, by_at in (data.get("sent") or {}).items()}
        return st
