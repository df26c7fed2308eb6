"""Send planning: the ranked stories, the active subscribers, and per subscriber the job the
journal allows (digest.mail.editions rules); the public edition each batch records."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from digest.config import Config, DigestConfig
from digest.mail.editions import Editions, Job, plan_stories, reader_zone, story_tag_keys, verdict
from digest.mail.message import body_key
from digest.models import Story, Subscriber, iso
from digest.pipeline.explain import why_nothing
from digest.pipeline.publishing import rank_stories
from digest.pipeline.sendreport import SendReport
from digest.publish.editions import EditionRecord, combo_languages, langs_key, remember
from digest.publish.editions import meta_key as edition_meta_key
from digest.publish.rank import rank
from digest.store import StoreBackend, email_key, open_store

log = logging.getLogger("digest.send")

PLAN_CACHE = 4096  # distinct (sent stories, tags, languages) plans kept while planning
LOOKUP = 100  # subscribers whose journal records are read at once


class _Older:
    """A stored story older than the digest's max_age_hours, as much of it as `why_nothing`
    reads of such a story (its id, for "already sent", and when it was published)."""

    __slots__ = ("id", "published")

    def __init__(self, story: Story) -> None:
        self.id, self.published = story.id, story.published


class RankedStories(list[Story]):
    """The stories a digest may include (published within its max_age_hours of `now`, or
    later) in rank order; `older` holds the rest in brief, for `why`."""

    older: list[_Older]

    def why(self, sent: Collection[str], tags: Sequence[str], languages: Sequence[str] | None,
            now: datetime, max_age_hours: float, aliases: dict[str, str] | None) -> str:
        """`why_nothing` over every stored story, as if all of them had been ranked."""
        every: list = [*self, *self.older]
        return why_nothing(every, sent, tags, languages, now, max_age_hours, aliases)


def _ranked(config: Config, now: datetime, dcfg: DigestConfig | None = None) -> list[Story]:
    """Stored stories in rank order at `now`; with `dcfg`, only those it may include
    (RankedStories): a send to 100,000 readers then holds the last few days' stories, not
    every stored one (10,000 index records were ~60 MB). A story's rank order does not
    depend on the others (digest.publish.rank.order_key), so the order, and every plan made
    from it, is the same."""
    if dcfg is None:
        return [r.story for r in rank_stories(config, now)]
    oldest = now - timedelta(hours=dcfg.max_age_hours)
    store = open_store(config.store)  # its own: the index caches go with it
    try:
        stories = store.list_stories()
    finally:
        store.close()
    recent = [s for s in stories if s.published >= oldest]
    out = RankedStories(r.story for r in rank(recent, now, config.rank))
    out.older = [_Older(s) for s in stories if s.published < oldest]
    return out


def _why(ranked: Sequence[Story], sent: Collection[str], tags: Sequence[str],
         languages: Sequence[str] | None, now: datetime, max_age_hours: float,
         aliases: dict[str, str] | None) -> str:
    if isinstance(ranked, RankedStories):
        return ranked.why(sent, tags, languages, now, max_age_hours, aliases)
    return why_nothing(ranked, sent, tags, languages, now, max_age_hours, aliases)


# --- planning: the journal decides, digest.mail.editions rules ---------------------------------


def _active(store: StoreBackend) -> Iterator[Subscriber]:
    return store.iter_subscribers(status="active")


def _plan_jobs(config: Config, dcfg: DigestConfig, store: StoreBackend, now: datetime,
               due_only: bool, report: SendReport, subs: Iterable[Subscriber] | None = None,
               unconfirmed: set[str] | None = None,
               ranked: list[Story] | None = None, *, quiet: bool = False) -> Iterator[Job]:
    """Jobs for `subs` (default: every active subscriber), planned lazily as the sender
    pulls them, LOOKUP subscribers at a time: one journal read of their states and one of
    their sent stories per batch, not two per subscriber. Emails whose last record is an
    unconfirmed `sending` go into `unconfirmed` (the sender warns once it holds the claim:
    on a shared store the record may be another sender's live one). `quiet`: a planning
    pass that sends nothing logs nothing.

    Reading a batch's records before its first job is sent changes nothing: a subscriber's
    record changes only when this sender sends it (after it was planned) or when another
    sender claims it, and `journal.claim` decides that, not the plan."""
    ranked = _ranked(config, now, dcfg) if ranked is None else ranked
    by_id = {s.id: s for s in ranked}
    tag_keys = {s.id: story_tag_keys(s, config.tags) for s in ranked}
    edition_of = Editions(dcfg.cron, now, timedelta(hours=config.schedule.grace_hours), due_only)
    max_age = timedelta(hours=dcfg.max_age_hours)
    journal = store.journal
    # Readers with the same tags, languages and sent stories get the same plan: computed once
    # per combination (bounded; most runs have a few hundred), not once per subscriber.
    plans: dict[tuple, list[Story]] = {}
    report.active = 0
    stream = iter(_active(store) if subs is None else subs)
    while chunk := list(itertools.islice(stream, LOOKUP)):
        report.active += len(chunk)
        due: list[tuple[Subscriber, str]] = []
        for sub in chunk:
            if dcfg.name not in config.digests_of(sub.digests):  # chose other digests
                report.other_digests += 1
                continue
            edition = edition_of(reader_zone(sub.timezone))
            if edition is None:
                report.not_due += 1
                continue
            due.append((sub, edition))
        if not due:
            continue
        prevs = journal.states(dcfg.name, [(ed, sub.email) for sub, ed in due])
        # Per subscriber: a resend Job, or None to plan new stories (the sent ids needed)
        fixed: list[Job | None] = []
        fresh: list[tuple[Subscriber, str]] = []
        for (sub, edition), prev in zip(due, prevs, strict=True):
            v = verdict(prev, now, due_only)
            if v.kind == "done":
                report.already_sent += 1
                continue
            if v.kind == "given_up":
                report.given_up.append((sub.email, v.reason))
                continue
            if v.kind == "waiting":
                assert v.retry_at is not None
                report.waiting.append((sub.email, v.reason, iso(v.retry_at)))
                continue
            job = None
            if v.kind == "resend":  # `sending` (a crash or lost reply) or `failed`: fixed
                assert prev is not None
                job = _resend(store, sub, edition, prev, v.attempt, by_id, unconfirmed)
            fixed.append(job)
            if job is None:
                fresh.append((sub, edition))
        # Per digest: a reader of the daily and the weekly gets the week's best in the
        # weekly, not only what the daily left out.
        sent_of = iter(journal.sent_story_ids_many([s.email for s, _ in fresh], dcfg.name))
        fresh_of = iter(fresh)
        for job in fixed:
            if job is not None:
                yield job
                continue
            (sub, edition), sent = next(fresh_of), next(sent_of)
            key = (sent, tuple(sub.tags or ()), tuple(sub.languages or ()))
            stories = plans.get(key)
            if stories is None:
                if len(plans) >= PLAN_CACHE:
                    plans.clear()
                stories = plans[key] = plan_stories(
                    ranked, sent, sub.tags, dcfg.max_stories, config.tags, tag_keys, now=now,
                    max_age=max_age, languages=sub.languages)
            if not stories:
                why = _why(ranked, sent, sub.tags, sub.languages, now,
                           dcfg.max_age_hours, config.tags)
                if not quiet:
                    log.info("%s %s: nothing new for %s; no email (%s)", dcfg.name, edition,
                             sub.email, why)
                report.nothing_new.append(sub.email)
                report.why[sub.email] = why
                continue
            yield Job(sub, edition, list(stories))  # the cached plan stays unshared


def _resend(store: StoreBackend, sub: Subscriber, edition: str, prev: dict, attempt: int,
            by_id: dict[str, Story], unconfirmed: set[str] | None) -> Job | None:
    """The same stories again for a `sending` or `failed` record (same Message-ID); None
    when none of them is stored any more (then new stories are planned)."""
    ids = [str(i) for i in prev.get("stories") or []]
    missing = [i for i in ids if i not in by_id]
    stories = [by_id[i] for i in ids if i in by_id]
    if missing:
        stories += store.get_stories(missing)
    if not stories:
        return None
    if prev.get("state") == "sending" and unconfirmed is not None:
        unconfirmed.add(email_key(sub.email))
    return Job(sub, edition, stories, resend=True, attempt=attempt)


def _body_uses(config: Config, dcfg: DigestConfig, store: StoreBackend, now: datetime,
               due_only: bool, ranked: list[Story]) -> dict[tuple, int]:
    """How many messages each distinct body (`body_key`) goes out in, by a planning pass
    that sends and records nothing: the Composer then drops a body after its last message.
    ~2 % of a send's time (the journal is read per batch, plans are cached)."""
    uses: Counter[tuple] = Counter()
    scratch = SendReport(dcfg.name, dry_run=True)
    for job in _plan_jobs(config, dcfg, store, now, due_only, scratch, None, None, ranked,
                          quiet=True):
        uses[body_key(job.sub.languages, job.stories, job.edition)] += 1
    return dict(uses)


# --- editions on the web: what each mail's View online / Archived-At URL shows ----------------


def _record_editions(store: StoreBackend, dcfg: DigestConfig, batch: Sequence[Job],
                     ranked: Sequence[Story], now: datetime, report: SendReport,
                     recorded: set[tuple[str, str]]) -> None:
    """Record in store meta each (edition, language combination) of `batch` not recorded
    yet, with its public selection (digest.publish.editions): the top max_stories ranked
    stories in those languages published within max_age_hours of `now` — no reader's tags,
    nothing removed as already sent. The first send of an edition fixes it. Recorded before
    the mails go, so the page a mail links is published by the publish that follows."""
    wanted = {(j.edition, langs_key(j.sub.languages)) for j in batch} - recorded
    if not wanted:
        return
    max_age = timedelta(hours=dcfg.max_age_hours)
    key = edition_meta_key(dcfg.name)
    with store.transaction():
        stored = store.meta_get(key)
        for edition, langs in sorted(wanted):
            ids = tuple(s.id for s in plan_stories(ranked, (), (), dcfg.max_stories, now=now,
                                                   max_age=max_age,
                                                   languages=combo_languages(langs)))
            new = remember(stored, EditionRecord(dcfg.name, edition, langs, ids, now))
            if new is not None:
                stored = new
                report.editions.append(f"{edition}/{langs}")
        if report.editions:
            store.meta_set(key, stored)
    recorded |= wanted

