"""The PostgreSQL store's delivery journal: current state per key, append-only history, and
the claims that make a send exactly-once across processes and nodes."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from digest.errors import StoreError
from digest.store.base import CLAIM_LEASE_SECONDS, check_records, email_key
from digest.store.storage import encode

BATCH = 1000

_UPSERT = """
INSERT INTO deliveries_current AS c
    (digest, edition, email, state, permanent, at, record, claimed_until, claim_pid)
VALUES (%(digest)s, %(edition)s, %(email)s, %(state)s, %(permanent)s, %(at)s, %(record)s::json,
        CASE WHEN %(state)s = 'sending' THEN now() + %(lease)s * interval '1 second' END,
        CASE WHEN %(state)s = 'sending' THEN pg_backend_pid() END)
ON CONFLICT (digest, edition, email) DO UPDATE SET
    state = excluded.state, permanent = excluded.permanent, at = excluded.at,
    record = excluded.record, claimed_until = excluded.claimed_until,
    claim_pid = excluded.claim_pid
"""
# A key is free when it has no row, its latest is a `failed` that is not permanent, or it is
# `sending` and the claim lapsed: the lease ran out or the claiming session is gone (a
# killed sender's connection ends with it, so its rows are free at once, not after 120 s).
_CLAIM = _UPSERT + """
WHERE (c.state = 'failed' AND NOT c.permanent)
   OR (c.state = 'sending' AND (c.claimed_until IS NULL OR c.claimed_until < now()
       OR c.claim_pid IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.claim_pid)))
RETURNING 1
"""
_LOG = """
INSERT INTO deliveries_log (digest, edition, email, state, at, record)
VALUES (%(digest)s, %(edition)s, %(email)s, %(state)s, %(at)s, %(record)s::json)
ON CONFLICT (digest, edition, email, state, at) DO NOTHING
RETURNING 1
"""
# An imported record becomes the current state unless a later one is already there.
_IMPORT_CURRENT = _UPSERT + " WHERE c.at <= excluded.at"
_SENT = ("INSERT INTO sent_stories (email, digest, story_id) VALUES (%s, %s, %s) "
         "ON CONFLICT DO NOTHING")


def _params(rec: dict, lease: float = CLAIM_LEASE_SECONDS) -> dict[str, Any]:
    return {"digest": rec["digest"], "edition": rec["edition"], "email": email_key(rec["email"]),
            "state": rec["state"], "permanent": bool(rec.get("permanent")),
            "at": str(rec.get("at") or ""), "record": encode(rec, "journal record").decode(),
            "lease": float(lease)}



class PgJournal:
    """`Journal` on PostgreSQL. It has a connection of its own (autocommit): appends are
    durable at once whatever the store's transaction does, and `claim_pid` names this
    session, so its claims lapse the moment the process dies."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._mutex = threading.Lock()

    def _sent_rows(self, cur: Any, rec: dict) -> None:
        if rec["state"] == "sent" and rec.get("stories"):
            cur.executemany(_SENT, [(email_key(rec["email"]), rec["digest"], str(s))
                                    for s in rec["stories"]])

    def append(self, records: list[dict]) -> None:
        records = check_records(records, "PostgreSQL journal")
        if not records:
            return
        with self._mutex, self._conn.transaction(), self._conn.cursor() as cur:
            for rec in records:
                p = _params(rec)
                cur.execute(_LOG, p)
                cur.execute(_UPSERT, p)
                self._sent_rows(cur, rec)

    def claim(self, records: list[dict], lease_seconds: float = CLAIM_LEASE_SECONDS) -> list[dict]:
        records = check_records(records, "PostgreSQL journal")
        claimed: list[dict] = []
        seen: set[tuple[str, str, str]] = set()
        with self._mutex, self._conn.transaction(), self._conn.cursor() as cur:
            for rec in records:
                if rec["state"] != "sending":
                    raise StoreError(f"claim of a {rec['state']!r} record",
                                     "only `sending` records are claimed")
                p = _params(rec, lease_seconds)
                key = (p["digest"], p["edition"], p["email"])
                if key in seen:
                    continue  # the same key twice in one batch: the first one has it
                seen.add(key)
                cur.execute(_CLAIM, p)
                if cur.fetchone() is not None:
                    cur.execute(_LOG, p)
                    claimed.append(rec)
        return claimed

    def state(self, digest: str, edition: str, email: str) -> dict | None:
        with self._mutex:
            row = self._conn.execute(
                "SELECT record FROM deliveries_current WHERE digest = %s AND edition = %s "
                "AND email = %s", (digest, edition, email_key(email))).fetchone()
        return dict(row[0]) if row else None

    def sent_story_ids(self, email: str, digest: str | None = None) -> frozenset[str]:
        with self._mutex:
            if digest is None:
                rows = self._conn.execute("SELECT story_id FROM sent_stories WHERE email = %s",
                                          (email_key(email),)).fetchall()
            else:  # '' = sent before digests were told apart: counts for every digest
                rows = self._conn.execute(
                    "SELECT story_id FROM sent_stories WHERE email = %s AND digest IN (%s, '')",
                    (email_key(email), digest)).fetchall()
        return frozenset(r[0] for r in rows)

    def records(self) -> Iterator[dict]:
        """Every record in the order it was logged, fetched in pages (keyset on the log id:
        no transaction stays open between pages)."""
        last = 0
        while True:
            with self._mutex:
                rows = self._conn.execute(
                    "SELECT id, record FROM deliveries_log WHERE id > %s ORDER BY id LIMIT %s",
                    (last, BATCH)).fetchall()
            if not rows:
                return
            for _, rec in rows:
                yield rec
            last = rows[-1][0]

    def import_records(self, records: Iterable[dict]) -> int:
        new = 0
        batch: list[dict] = []

        def flush() -> int:
            added = 0
            with self._mutex, self._conn.transaction(), self._conn.cursor() as cur:
                for rec in check_records(batch, "PostgreSQL journal"):
                    p = _params(rec)
                    cur.execute(_LOG, p)
                    if cur.fetchone() is None:
                        continue  # already here (a second or resumed copy)
                    added += 1
                    cur.execute(_IMPORT_CURRENT, p)
                    self._sent_rows(cur, rec)
            batch.clear()
            return added

        for rec in records:
            batch.append(rec)
            if len(batch) >= BATCH:
                new += flush()  # one transaction per batch: a killed copy resumes from here
        if batch:
            new += flush()
        return new

    def count(self) -> int:
        with self._mutex:
            return self._conn.execute("SELECT count(*) FROM deliveries_log").fetchone()[0]
