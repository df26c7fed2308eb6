"""Digest editions end to end: subscribers → plan → render once per content → journal →
transport → report; and `preview`. Planning rules are in digest.mail.editions, message
composition in digest.mail.message; this module holds the journal protocol around them."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest import subscribers
from digest.config import Config, DigestConfig
from digest.errors import DeliveryError, DigestError
from digest.fileio import locked
from digest.mail.editions import (
    Editions,
    Job,
    local_date,
    plan_stories,
    reader_zone,
    story_tag_keys,
    verdict,
)
from digest.mail.message import Composer
from digest.mail.render import InvalidAddress
from digest.mail.transports import Envelope, Outcome, Transport, open_transport
from digest.models import Story, Subscriber, iso
from digest.pipeline.publishing import rank_stories
from digest.pipeline.secrets import site_secret
from digest.store import Store

log = logging.getLogger("digest.send")

BATCH = 100  # messages per journal batch: one fsync for `sending`, one for the outcomes;
# a crash mid-batch resends at most this many, each with its original Message-ID
FLUSH_SECONDS = 0.05  # group-commit window for outcome records
REPORT_LIST_MAX = 50  # per category in the printed report; the counts are always exact


def open_mail(config: Config) -> Transport:
    """The transport [smtp] asks for, logging in with the password from the environment
    variable [smtp] password_env names (SmtpConfig.password; never from config.toml)."""
    smtp = config.smtp
    password = smtp.password()
    if smtp.transport == "smtp" and smtp.username and not password:
        raise DeliveryError(
            f"[smtp] username is set but ${smtp.password_env} is empty",
            f"export {smtp.password_env}=... (the password never goes in config.toml)")
    return open_transport(smtp, password or None)


def _ranked(config: Config, now: datetime) -> list[Story]:
    return [r.story for r in rank_stories(config, now)]


# --- the report -----------------------------------------------------------------------------


@dataclass
class SendReport:
    digest: str
    dry_run: bool = False
    sent: list[str] = field(default_factory=list)
    would_send: list[tuple[str, str, int]] = field(default_factory=list)  # email, edition, n
    failed: list[tuple[str, str]] = field(default_factory=list)  # email, reason
    bounced: list[tuple[str, str]] = field(default_factory=list)
    ambiguous: list[tuple[str, str]] = field(default_factory=list)  # email, message-id
    nothing_new: list[str] = field(default_factory=list)
    given_up: list[tuple[str, str]] = field(default_factory=list)  # email, reason (permanent)
    waiting: list[tuple[str, str, str]] = field(default_factory=list)  # email, reason, retry at
    already_sent: int = 0
    not_due: int = 0
    renders: int = 0  # distinct bodies rendered (the rest were reused)

    def lines(self) -> list[str]:
        """Human report: a summary, then who did not get the edition and why."""
        verb = "would send" if self.dry_run else "sent"
        n = len(self.would_send) if self.dry_run else len(self.sent)
        out = [f"{self.digest}: {verb} {n}, already sent {self.already_sent}, "
               f"nothing new {len(self.nothing_new)}, not due {self.not_due}, "
               f"failed {len(self.failed)}, bounced {len(self.bounced)} "
               f"({self.renders} distinct bodies rendered)"]
        if self.given_up or self.waiting:
            out[0] += (f"; not retried (permanent) {len(self.given_up)}, "
                       f"retry later {len(self.waiting)}")

        def some(items: list, fmt: Callable[[object], str]) -> None:
            out.extend(fmt(x) for x in items[:REPORT_LIST_MAX])
            if len(items) > REPORT_LIST_MAX:
                out.append(f"  … and {len(items) - REPORT_LIST_MAX} more")

        some(self.would_send, lambda x: f"  would send {x[0]} edition {x[1]} ({x[2]} stories)")
        some(self.failed, lambda x: f"  not delivered to {x[0]}: {x[1]}"
                                    + ("" if x[1].endswith(_FINAL) else " (a rerun retries it)"))
        some(self.given_up, lambda x: f"  not delivered to {x[0]}: {x[1]} (permanent: this "
                                      "edition is not retried)")
        some(self.waiting, lambda x: f"  not delivered to {x[0]} yet: {x[1]} (next try after "
                                     f"{x[2]})")
        some(self.bounced, lambda x: f"  bounced {x[0]}: {x[1]} (subscriber marked bounced)")
        some(self.ambiguous, lambda x: f"  resent {x[0]} after an unconfirmed attempt, "
                                       f"same Message-ID {x[1]}")
        some(self.nothing_new, lambda x: f"  nothing new for {x}: no email")
        return out


_FINAL = "(permanent: not retried)"

# --- planning: the journal decides, digest.mail.editions rules ---------------------------------


def _plan_jobs(config: Config, dcfg: DigestConfig, store: Store, now: datetime,
               due_only: bool, report: SendReport) -> list[Job]:
    ranked = _ranked(config, now)
    by_id = {s.id: s for s in ranked}
    tag_keys = {s.id: story_tag_keys(s, config.tags) for s in ranked}
    edition_of = Editions(dcfg.cron, now, timedelta(hours=config.schedule.grace_hours), due_only)
    max_age = timedelta(hours=dcfg.max_age_hours)
    journal = store.journal
    jobs: list[Job] = []
    for sub in store.list_subscribers(status="active"):
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
                if prev.get("state") == "sending":
                    log.warning("%s %s %s: attempted before without a recorded outcome; "
                                "resending with the same Message-ID", dcfg.name, edition,
                                sub.email)
                jobs.append(Job(sub, edition, stories, resend=True, attempt=v.attempt))
                continue
        sent = journal.sent_story_ids(sub.email)
        stories = plan_stories(ranked, sent, sub.tags, dcfg.max_stories, config.tags, tag_keys,
                               now=now, max_age=max_age)
        if not stories:
            log.info("%s %s: nothing new for %s; no email", dcfg.name, edition, sub.email)
            report.nothing_new.append(sub.email)
            continue
        jobs.append(Job(sub, edition, stories))
    return jobs


# --- the journal protocol: `sending` before the transport, the outcome after --------------------


@contextlib.contextmanager
def _send_lock(store: Store, name: str) -> Iterator[None]:
    """One sender per digest at a time across processes (the daemon and a manual `digest
    send`): both planning from the same journal would each send the missing editions."""
    with locked(store.path / f"send-{name.encode().hex()[:64]}.lock", timeout=0,
                what=f"digest {name!r}", error=DeliveryError,
                hint="another `digest send` is sending it: wait for it to finish; a rerun "
                     "then sends only what is missing"):
        yield


def _record(dcfg: DigestConfig, job: Job, state: str, mid: str, ids: Sequence[str],
            at: str, reason: str = "", permanent: bool = False) -> dict:
    rec = {"digest": dcfg.name, "edition": job.edition, "email": job.sub.email, "state": state,
           "message_id": mid, "stories": list(ids), "at": at, "reason": reason,
           "attempt": job.attempt}
    if permanent:
        rec["permanent"] = True
    return rec


def send_digest(config: Config, name: str | None = None, now: datetime | None = None,
                dry_run: bool = False, due_only: bool = False, *,
                transport: Transport | None = None) -> SendReport:
    """Send the due edition of digest `name` to every active subscriber missing it.

    Exactly once: each batch is journalled `sending` (one fsync) before the transport sees
    it and `sent`/`failed`/`bounced` after; a rerun skips what is sent and resends an
    unconfirmed attempt with the same content and Message-ID. `dry_run` sends and records
    nothing. `transport` overrides [smtp] (tests, the daemon's shared pool).
    """
    now = now or datetime.now(UTC)
    dcfg = config.digest(name)
    store = Store(config.store.path)
    report = SendReport(dcfg.name, dry_run=dry_run)
    if dry_run:
        return _send_locked(config, dcfg, store, now, True, due_only, transport, report)
    with _send_lock(store, dcfg.name):
        return _send_locked(config, dcfg, store, now, False, due_only, transport, report)


def _send_locked(config: Config, dcfg: DigestConfig, store: Store, now: datetime,
                 dry_run: bool, due_only: bool, transport: Transport | None,
                 report: SendReport) -> SendReport:
    jobs = _plan_jobs(config, dcfg, store, now, due_only, report)
    if not jobs:
        report.renders = 0
        return report
    composer = Composer(config, dcfg, site_secret(config, store, persist=not dry_run), now)
    if dry_run:
        for job in jobs:
            body = composer.body(job.sub.languages, job.stories, job.edition)
            report.would_send.append((job.sub.email, job.edition, len(body.story_ids)))
        report.renders = len(composer.bodies)
        return report
    own = transport is None
    transport = transport or open_mail(config)
    sender = composer.renderer.sender_addr
    try:
        for start in range(0, len(jobs), BATCH):
            _send_batch(store, dcfg, composer, transport, sender, jobs[start:start + BATCH],
                        now, report)
    finally:
        if own:
            transport.close()
    report.renders = len(composer.bodies)
    return report


def _send_batch(store: Store, dcfg: DigestConfig, composer: Composer, transport: Transport,
                sender: str, jobs: list[Job], now: datetime, report: SendReport) -> None:
    at = iso(now)
    built = []
    for job in jobs:
        try:
            data, mid, body = composer.message(job)
        except InvalidAddress:  # a bad address that slipped into the store (hand edits)
            shown = job.sub.email.encode("unicode_escape").decode("ascii")[:120]
            report.failed.append((shown, "refused: unsafe or invalid address"))
            continue
        built.append((job, data, mid, body))
    store.journal.append([_record(dcfg, j, "sending", m, b.story_ids, at) for j, _, m, b in built])
    # Group commit: outcomes are journalled as they arrive, at most one fsync per
    # FLUSH_SECONDS, so a kill loses only the last moment's `sent` records (those are then
    # resent with their Message-ID) while the per-message cost stays a fraction of an fsync.
    pending: list[dict] = []
    recorded: set[int] = set()
    last = [time.monotonic()]
    started = last[0]

    def on_outcome(i: int, out: Outcome) -> None:
        job, _, mid, body = built[i]
        recorded.add(i)
        # `at` runs on the run's clock (`now` plus the time elapsed) so retry spacing,
        # computed from it against a later run's `now`, is consistent under --now too.
        when = now + timedelta(seconds=time.monotonic() - started)
        pending.append(_record(dcfg, job, out.state, mid, body.story_ids, iso(when),
                               out.reason, out.state == "failed" and out.permanent))
        if time.monotonic() - last[0] >= FLUSH_SECONDS:
            store.journal.append(pending)
            pending.clear()
            last[0] = time.monotonic()

    outcomes: list[Outcome] = transport.send(
        [Envelope(sender, j.sub.email, d, wire_ready=True) for j, d, _, _ in built],
        on_outcome=on_outcome)
    for i, out in enumerate(outcomes):  # a transport that did not report as it went
        if i not in recorded:
            on_outcome(i, out)
    store.journal.append(pending)
    bounced = []
    for (job, _, mid, _), out in zip(built, outcomes, strict=True):
        if out.state == "sent":
            report.sent.append(job.sub.email)
            if job.resend or out.ambiguous:
                report.ambiguous.append((job.sub.email, mid))
        elif out.state == "bounced":
            report.bounced.append((job.sub.email, out.reason))
            bounced.append(job.sub.email)
        else:
            reason = f"{out.reason} {_FINAL}" if out.permanent else out.reason
            report.failed.append((job.sub.email, reason))
            log.warning("%s: not delivered to %s: %s", dcfg.name, job.sub.email, reason)
    if bounced:
        with store.transaction():
            for email in bounced:
                store.update_subscriber(email, **subscribers.bounced())


# --- preview --------------------------------------------------------------------------------


def preview(config: Config, name: str | None = None, email: str | None = None,
            langs: Sequence[str] | None = None, out: Path | None = None,
            now: datetime | None = None) -> Path:
    """Write the next edition for `email` (or for `langs`) as HTML, or as .eml if `out`
    ends in .eml. Sends and records nothing."""
    now = now or datetime.now(UTC)
    dcfg = config.digest(name)
    store = Store(config.store.path)
    if email:
        sub = store.get_subscriber(subscribers.normalize_email(email, "--email"))
        if sub is None:
            raise DigestError(f"--email: no subscriber {email}",
                              "list them with `digest subscribers list`, or use --lang")
        sent = store.journal.sent_story_ids(sub.email)
    else:
        sub = Subscriber(email="preview@example.com", status="active",
                         languages=subscribers.parse_languages(langs, "--lang"))
        sent = frozenset()
    ranked = _ranked(config, now)
    stories = plan_stories(ranked, sent, sub.tags, dcfg.max_stories, config.tags, now=now,
                           max_age=timedelta(hours=dcfg.max_age_hours))
    if not stories:
        raise DigestError(f"nothing new to preview for {sub.email}",
                          "ingest stories first (`digest ingest`), or preview another email")
    composer = Composer(config, dcfg, site_secret(config, store), now)
    data, _, body = composer.message(Job(sub, local_date(sub.timezone, now), stories))
    out = Path(out) if out else Path.cwd() / f"preview-{dcfg.name}.html"
    payload = data if out.suffix.lower() == ".eml" else \
        composer.html_page(body, sub.email).encode("utf-8")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(payload)
    except OSError as e:
        raise DigestError(f"--out {out}: cannot write ({e.strerror})",
                          "choose a writable path") from e
    return out
