"""Send planning: the ranked stories, the active subscribers, and per subscriber the job the
journal allows (digest.mail.editions rules); the public edition each batch records."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from digest.config import Config, DigestConfig
from digest.mail.editions import Editions, Job, plan_stories, reader_zone, story_tag_keys, verdict
from digest.models import Story, Subscriber, iso
from digest.pipeline.explain import why_nothing
from digest.pipeline.publishing import rank_stories
from digest.pipeline.sendreport import SendReport
from digest.publish.editions import EditionRecord, combo_languages, langs_key, remember
from digest.publish.editions import meta_key as edition_meta_key
from digest.store import StoreBackend, email_key

log = logging.getLogger("digest.send")

PLAN_CACHE = 4096  # distinct (sent stories, tags, languages) plans kept while planning


def _ranked(config: Config, now: datetime) -> list[Story]:
    return [r.story for r in rank_stories(config, now)]


# --- planning: the journal decides, digest.mail.editions rules ---------------------------------


def _active(store: StoreBackend) -> Iterator[Subscriber]:
    return store.iter_subscribers(status="active")


def _plan_jobs(config: Config, dcfg: DigestConfig, store: StoreBackend, now: datetime,
               due_only: bool, report: SendReport, subs: Iterable[Subscriber] | None = None,
               unconfirmed: set[str] | None = None,
               ranked: list[Story] | None = None) -> Iterator[Job]:
    """Jobs for `subs` (default: every active subscriber), planned lazily as the sender
    pulls them. Emails whose last record is an unconfirmed `sending` go into `unconfirmed`
    (the sender warns once it holds the claim: on a shared store the record may be another
    sender's live one)."""
    ranked = _ranked(config, now) if ranked is None else ranked
    by_id = {s.id: s for s in ranked}
    tag_keys = {s.id: story_tag_keys(s, config.tags) for s in ranked}
    edition_of = Editions(dcfg.cron, now, timedelta(hours=config.schedule.grace_hours), due_only)
    max_age = timedelta(hours=dcfg.max_age_hours)
    journal = store.journal
    # Readers with the same tags, languages and sent stories get the same plan: computed once
    # per combination (bounded; most runs have a few hundred), not once per subscriber.
    plans: dict[tuple, list[Story]] = {}
    report.active = 0
    for sub in _active(store) if subs is None else subs:
        report.active += 1
        if dcfg.name not in config.digests_of(sub.digests):  # chose other digests
            report.other_digests += 1
            continue
        edition = edition_of(reader_zone(sub.timezone))
        if edition is None:
            report.not_due += 1
            continue
        prev = journal.state(dcfg.name, edition, sub.email)
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
        if v.kind == "resend":  # `sending` (a crash or lost reply) or `failed`: edition fixed
            assert prev is not None
            ids = [str(i) for i in prev.get("stories") or []]
            missing = [i for i in ids if i not in by_id]
            stories = [by_id[i] for i in ids if i in by_id]
            if missing:
                stories += store.get_stories(missing)
            if stories:
                if prev.get("state") == "sending" and unconfirmed is not None:
                    unconfirmed.add(email_key(sub.email))
                yield Job(sub, edition, stories, resend=True, attempt=v.attempt)
                continue
        # Per digest: a reader of the daily and the weekly gets the week's best in the
        # weekly, not only what the daily left out.
        sent = journal.sent_story_ids(sub.email, dcfg.name)
        key = (sent, tuple(sub.tags or ()), tuple(sub.languages or ()))
        stories = plans.get(key)
        if stories is None:
            if len(plans) >= PLAN_CACHE:
                plans.clear()
            stories = plans[key] = plan_stories(
                ranked, sent, sub.tags, dcfg.max_stories, config.tags, tag_keys, now=now,
                max_age=max_age, languages=sub.languages)
        if not stories:
            why = why_nothing(ranked, sent, sub.tags, sub.languages, now, dcfg.max_age_hours,
                              config.tags)
            log.info("%s %s: nothing new for %s; no email (%s)", dcfg.name, edition, sub.email,
                     why)
            report.nothing_new.append(sub.email)
            report.why[sub.email] = why
            continue
        yield Job(sub, edition, list(stories))  # the cached plan stays unshared


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

