"""Who gets which edition with which stories: pure planning over values the pipeline reads
(ranked stories, each subscriber's journal record, the clock)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from digest.models import Story, Subscriber, feed_language, parse_iso
from digest.scheduler.cron import due_edition
from digest.subscribers import zone_of

RETRY_MAX_MINUTES = 30  # transient failures: retried after 1, 2, 4, ... minutes, at most 30


@dataclass
class Job:
    """One message to send: this edition, with these stories, to this subscriber."""

    sub: Subscriber
    edition: str
    stories: list[Story]
    resend: bool = False  # a `sending`/`failed` record exists: same content, same Message-ID
    attempt: int = 1  # how many times this edition was tried for this subscriber (incl. this)


# --- stories ------------------------------------------------------------------------------------


def story_tag_keys(story: Story, aliases: Mapping[str, str]) -> frozenset[str]:
    """A story's tags and their configured ASCII slugs, case-folded, for matching."""
    keys = set()
    for t in story.tags:
        keys.add(t.casefold())
        if aliases.get(t):
            keys.add(aliases[t].casefold())
    return frozenset(keys)


def plan_stories(
    ranked: Sequence[Story],
    sent: Collection[str],
    tags: Sequence[str],
    max_stories: int,
    aliases: Mapping[str, str] | None = None,
    tag_keys: Mapping[str, frozenset[str]] | None = None,
    *,
    now: datetime | None = None,
    max_age: timedelta | None = None,
    languages: Sequence[str] | None = None,
) -> list[Story]:
    """Top `max_stories` of `ranked` not yet sent and matching any of `tags` (empty = all);
    with `now` and `max_age`, only stories published within `max_age` before `now`; with
    `languages` (the reader's), only stories with text in one of them: an English-only
    reader is never sent a Chinese-only story, nor a Chinese-only reader an English one.
    A story left out for its language is not journalled, so it is not "used up"."""
    want = {t.casefold() for t in tags if t}
    reads = {feed_language(x.strip()) for x in languages or () if x and x.strip()}
    # The age counts from `published`, not `updated`: a year-old story whose typo was fixed
    # yesterday is still old news, and card ingest keeps `published` fixed on re-reads.
    oldest = now - max_age if now is not None and max_age is not None else None
    out: list[Story] = []
    for s in ranked:
        if s.id in sent:
            continue
        if oldest is not None and s.published < oldest:
            continue
        if reads and not any(feed_language(code) in reads for code in s.languages):
            continue
        if want:
            keys = tag_keys[s.id] if tag_keys is not None else story_tag_keys(s, aliases or {})
            if not want & keys:
                continue
        out.append(s)
        if len(out) >= max_stories:
            break
    return out


# --- editions -----------------------------------------------------------------------------------


def reader_zone(tz: str) -> str:
    """The zone a subscriber's edition is dated in: theirs, or UTC when the stored name is
    not a zone (hand edits, a zone database without it)."""
    return tz if zone_of(tz) else "UTC"


def local_date(tz: str, now: datetime) -> str:
    """`now` as a calendar date in `tz` (UTC for an unknown name): a manual send's edition."""
    return now.astimezone(zone_of(tz) or UTC).date().isoformat()


class Editions:
    """The edition each time zone is due for, computed once per zone in a run: with
    `due_only` the local date of the cron's latest fire within `grace` (None: not due), else
    today's local date."""

    def __init__(self, cron: str, now: datetime, grace: timedelta, due_only: bool) -> None:
        self.cron, self.now, self.grace, self.due_only = cron, now, grace, due_only
        self._by_zone: dict[str, str | None] = {}

    def __call__(self, tz: str) -> str | None:
        if tz not in self._by_zone:
            if self.due_only:
                found = due_edition(self.cron, tz, self.now, self.grace)
                self._by_zone[tz] = found[0] if found else None
            else:
                self._by_zone[tz] = local_date(tz, self.now)
        return self._by_zone[tz]


# --- what the journal says ----------------------------------------------------------------------


def retry_after(prev: dict) -> datetime | None:
    """When a transient `failed` record may be retried: 1, 2, 4, ... minutes (capped at
    RETRY_MAX_MINUTES) after its `at`, by the number of attempts so far."""
    try:
        at = parse_iso(str(prev.get("at") or ""))
        attempt = max(1, int(prev.get("attempt") or 1))
    except (ValueError, TypeError):
        return None
    return at + timedelta(minutes=min(RETRY_MAX_MINUTES, 2 ** min(attempt - 1, 10)))


def attempt_of(prev: dict) -> int:
    """The attempt number a journal record carries (1 for records written before it did)."""
    n = prev.get("attempt")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


class Verdict(NamedTuple):
    """What to do for one (digest, edition, subscriber) given its latest journal record."""

    kind: str  # "done" | "given_up" | "waiting" | "resend" | "new"
    reason: str = ""
    retry_at: datetime | None = None
    attempt: int = 1  # for "resend": the attempt this send is


def verdict(prev: dict | None, now: datetime, due_only: bool) -> Verdict:
    """`sent`/`bounced` are final, and so is a `failed` refused for good (a 5xx at MAIL/DATA).
    A transient `failed` waits for `retry_after` when the daemon asks (`due_only`; a manual
    `digest send` retries at once: the operator asked). Any other record (`sending`: a
    crash or lost reply; `failed`) fixes the edition: resend its stories, same Message-ID."""
    if not prev:
        return Verdict("new")
    state = prev.get("state")
    if state in ("sent", "bounced"):
        return Verdict("done")
    if state == "failed" and prev.get("permanent"):
        return Verdict("given_up", str(prev.get("reason") or "refused"))
    if state == "failed" and due_only:
        when = retry_after(prev)
        if when is not None and now < when:
            return Verdict("waiting", str(prev.get("reason") or ""), when)
    return Verdict("resend", attempt=attempt_of(prev) + (state == "failed"))
