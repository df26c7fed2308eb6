"""Digest editions end to end: subscribers → plan → render once per content → journal →
transport → report; and `preview`. Planning rules are in digest.mail.editions, message
composition in digest.mail.message; this module holds the journal protocol around them."""

from __future__ import annotations

import gc
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from digest import subscribers
from digest.config import Config, DigestConfig
from digest.errors import DeliveryError, DigestError
from digest.mail.dkim import load_signer
from digest.mail.editions import Job, local_date, plan_stories
from digest.mail.message import Composer
from digest.mail.refusals import describe, session_hint
from digest.mail.render import InvalidAddress
from digest.mail.transports import Envelope, Outcome, Transport, open_transport
from digest.models import Story, Subscriber, iso
from digest.pipeline.secrets import site_secret
from digest.pipeline.sendplan import (
    _active,
    _body_uses,
    _plan_jobs,
    _ranked,
    _record_editions,
    _why,
)
from digest.pipeline.sendreport import _FINAL, SendReport
from digest.store import StoreBackend, email_key, open_store
from digest.store.base import CLAIM_LEASE_SECONDS, Journal

log = logging.getLogger("digest.send")

BATCH = 100  # messages per journal batch: one fsync for `sending`, one for the outcomes;
# a crash mid-batch resends at most this many, each with its original Message-ID
FLUSH_SECONDS = 0.05  # group-commit window for outcome records
# On a shared store a batch goes to the transport in parts of this many messages, each sent
# only once `journal.renew` confirmed this sender still holds its claims: a sender whose
# database session dropped stops within one part instead of mailing rows another sender took.
RENEW_EVERY = 25


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


def dkim_sign(config: Config) -> Callable[[bytes], bytes] | None:
    """What signs each message with the [dkim] key (mail/dkim.py), or None when digest does
    not sign; raises DkimError (a DigestError with a hint) for an unusable key file."""
    signer = load_signer(config.dkim)
    return signer.sign if signer is not None else None


# --- who, in what order: senders sharing a store start apart ---------------------------------


def _rotated(store: StoreBackend, rng: random.Random) -> Iterator[Subscriber]:
    """The active subscribers from a random batch on, wrapping around: senders sharing a
    store then start far apart and split the list instead of racing for the same claims
    (a race costs nothing but a refused claim; `journal.claim` keeps it exactly once). Two
    streamed passes (plus one to count), so nothing holds the whole list."""
    batches = -(-sum(1 for _ in _active(store)) // BATCH)
    start = rng.randrange(batches) * BATCH if batches > 1 else 0
    yield from itertools.islice(_active(store), start, None)
    if start:  # wrap around; a subscriber added between the passes is seen twice (the
        # second claim is refused) or not at all (the next run has it)
        yield from itertools.islice(_active(store), start)


def _publish_editions(config: Config, now: datetime, report: SendReport) -> None:
    """Publish after a send, so the edition pages the mails link exist (an incremental
    publish: only the editions files, index.html and feeds.opml are new). A failure does not
    undo the send: it is logged and reported; the next publish writes the pages."""
    from digest.pipeline.publishing import publish

    try:
        report.published = publish(config, now).summary()
    except DigestError as e:
        report.published = f"publish failed: {e.message}"
        log.warning("%s: edition pages not published: %s", report.digest, e.message)


# --- the journal protocol: `sending` before the transport, the outcome after --------------------


def _record(dcfg: DigestConfig, job: Job, state: str, mid: str, ids: Sequence[str],
            at: str, reason: str = "", permanent: bool = False) -> dict:
    rec = {"digest": dcfg.name, "edition": job.edition, "email": job.sub.email, "state": state,
           "message_id": mid, "stories": list(ids), "at": at, "reason": reason,
           "attempt": job.attempt}
    if permanent:
        rec["permanent"] = True
    return rec


class _OutcomeWriter:
    """Outcome records reach the journal from one thread, in order, so the SMTP event loop
    never stops for an fsync (~5 ms each on a plain disk: a few per batch of 100 was a tenth
    of a send). `wait` returns once everything handed over is durable (raising the first
    error); the sender waits before each claim and before it returns, so what is at risk
    from a kill is what it always was: the outcomes of the last moment, resent later with
    their Message-ID."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        # `append` runs on the transport's thread (on_outcome), `wait` on the sender's.
        self._lock = threading.Lock()

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="digest-journal")
            self._pending.append(self._pool.submit(self._journal.append, list(records)))

    def wait(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        error: BaseException | None = None
        for f in pending:
            e = f.exception()
            error = error or e
        if error is not None:
            raise error

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def send_digest(config: Config, name: str | None = None, now: datetime | None = None,
                dry_run: bool = False, due_only: bool = False, *,
                transport: Transport | None = None) -> SendReport:
    """Send the due edition of digest `name` to every active subscriber missing it.

    Exactly once: each batch is claimed in the journal (`sending`, a unique key per digest,
    edition and subscriber) before the transport sees it and `sent`/`failed`/`bounced` after;
    a job another sender claimed is left to it, so several processes and nodes on one
    PostgreSQL database share the work. A rerun skips what is sent and resends an
    unconfirmed attempt whose claim lapsed with the same content and Message-ID. `dry_run`
    sends and records nothing. `transport` overrides [smtp] (tests, the daemon's pool).
    """
    now = now or datetime.now(UTC)
    dcfg = config.digest(name)
    store = open_store(config.store)
    report = SendReport(dcfg.name, dry_run=dry_run)
    try:
        if dry_run:
            return _send_locked(config, dcfg, store, now, True, due_only, transport, report)
        # Once per run: unconfirmed subscriptions older than [web] pending_days go (the web's
        # subscribe sweeps only the one shard it touches).
        store.expire_pending(now - timedelta(days=config.web.pending_days))
        with store.send_lock(dcfg.name):  # embedded: one sender; PostgreSQL: no exclusion
            _send_locked(config, dcfg, store, now, False, due_only, transport, report)
        if report.sent or report.failed or report.bounced:  # `digest status`, /healthz
            from digest.pipeline.status import LAST_SEND, record_run

            record_run(store, LAST_SEND, datetime.now(UTC), digest=dcfg.name,
                       sent=len(report.sent), failed=len(report.failed),
                       bounced=len(report.bounced))
    finally:
        store.close()
    # The publish opens its own store: this one (its journal state: ~50 MB at 100,000
    # subscribers) goes first, so the two never sit in memory together.
    del store
    if report.sent or report.editions:
        gc.collect()  # the store's objects form cycles (storages name their store)
        _publish_editions(config, now, report)
    return report


def _send_locked(config: Config, dcfg: DigestConfig, store: StoreBackend, now: datetime,
                 dry_run: bool, due_only: bool, transport: Transport | None,
                 report: SendReport) -> SendReport:
    # Streaming: subscribers are planned one batch at a time as the sender pulls them and a
    # batch's message bytes go when it is done, so memory holds one body per distinct content
    # (the Composer's cache) plus one batch, whatever the subscriber count.
    exclusive = store.kind == "embedded"  # send_lock made this the only sender
    subs = None if dry_run or exclusive else _rotated(store, random.Random())
    unconfirmed: set[str] = set()
    ranked = _ranked(config, now, dcfg)
    jobs = _plan_jobs(config, dcfg, store, now, due_only, report, subs, unconfirmed, ranked)
    recorded: set[tuple[str, str]] = set()  # (edition, langs) known to be in store meta
    # Under an exclusive send lock any `sending` record is a dead sender's: free at once.
    # Shared: free when the claiming session ended or after the lease (the backend decides).
    lease = 0.0 if exclusive else CLAIM_LEASE_SECONDS
    composer: Composer | None = None
    own = transport is None
    writer = _OutcomeWriter(store.journal)
    # The claimed batch on the wire while the next one is planned and composed (not claimed:
    # a refusal in this one leaves the next unclaimed and unsent).
    flight: _Flight | None = None
    try:
        while batch := list(itertools.islice(jobs, BATCH)):
            if composer is None:  # first job: nothing due persists no site secret
                composer = Composer(config, dcfg,
                                    site_secret(config, store, persist=not dry_run), now,
                                    sign=None if dry_run else dkim_sign(config))
                if not dry_run and store.kind == "embedded":
                    # The only sender (send_lock): the plan cannot change under it, so a
                    # planning pass tells when each body is needed for the last time.
                    composer.uses = _body_uses(config, dcfg, store, now, due_only, ranked)
            if dry_run:
                for job in batch:
                    body = composer.body(job.sub.languages, job.stories, job.edition)
                    report.would_send.append((job.sub.email, job.edition, len(body.story_ids)))
                continue
            transport = transport or open_mail(config)
            built = _compose(composer, batch, report)
            if flight is not None:
                flight.finish()
                if _stopped(config, composer, transport, report):
                    break
            _record_editions(store, dcfg, batch, ranked, now, report, recorded)
            flight = _start_batch(store, dcfg, composer, transport, built, now, report, lease,
                                  unconfirmed, writer=writer)
            unconfirmed.clear()
        if flight is not None and composer is not None and transport is not None:
            flight.finish()
            _stopped(config, composer, transport, report)
    finally:
        try:
            if flight is not None:
                flight.finish()  # after an error: what the batch on the wire did is journalled
        finally:
            try:
                writer.close()  # every outcome handed over is durable before the report
            finally:
                if own and transport is not None:
                    transport.close()  # joins its thread: publish may fork after this
    report.renders = composer.rendered if composer else 0
    return report


def _stopped(config: Config, composer: Composer, transport: Transport,
             report: SendReport) -> bool:
    """Whether the relay refused the session (every later message would be refused too):
    then the run stops, with the reason and a hint in the report."""
    if transport.refusal is None:
        return False
    smtp = config.smtp
    report.stopped = describe(transport.refusal, smtp.username)
    report.stop_hint = session_hint(
        transport.refusal, password_env=smtp.password_env, username=smtp.username,
        sender=composer.renderer.sender_addr, host=smtp.host)
    return True


_Built = tuple[Job, bytes, str, Any]  # job, message bytes, Message-ID, body


def _compose(composer: Composer, jobs: list[Job], report: SendReport) -> list[_Built]:
    """The batch's messages (nothing claimed: the batch before may still be on the wire)."""
    built = []
    for job in jobs:
        try:
            data, mid, body = composer.message(job)
        except InvalidAddress:  # a bad address that slipped into the store (hand edits)
            shown = job.sub.email.encode("unicode_escape").decode("ascii")[:120]
            report.failed.append((shown, "refused: unsafe or invalid address"))
            continue
        built.append((job, data, mid, body))
    return built


def _submit(transport: Transport, envelopes: list[Envelope],
            on_outcome: Callable[[int, Outcome], None]) -> Future[list[Outcome]]:
    submit = getattr(transport, "submit", None)
    if submit is not None:
        return submit(envelopes, on_outcome)
    done: Future[list[Outcome]] = Future()  # a transport with `send` only (tests)
    done.set_result(transport.send(envelopes, on_outcome))
    return done


def _start_batch(store: StoreBackend, dcfg: DigestConfig, composer: Composer,
                 transport: Transport, built: list[_Built], now: datetime, report: SendReport,
                 lease: float = CLAIM_LEASE_SECONDS,
                 unconfirmed: set[str] | frozenset[str] = frozenset(), *,
                 writer: _OutcomeWriter) -> _Flight | None:
    """Claim the composed batch and hand what this sender claimed to the transport; the
    returned flight's `finish` waits for it. None when nothing here was claimed."""
    at = iso(now)
    # Claim before the SMTP conversation: only what this sender claimed is sent here. The
    # previous batch's outcomes are durable first (`finish` handed the last of them over).
    writer.wait()
    claimed = store.journal.claim([_record(dcfg, j, "sending", m, b.story_ids, at)
                                   for j, _, m, b in built], lease_seconds=lease)
    mine = {(r["edition"], email_key(r["email"])): r for r in claimed}
    kept = []
    for item in built:
        job = item[0]
        key = email_key(job.sub.email)
        if (job.edition, key) not in mine:
            report.elsewhere += 1
            continue
        if key in unconfirmed:
            log.warning("%s %s %s: attempted before without a recorded outcome; resending "
                        "with the same Message-ID", dcfg.name, job.edition, job.sub.email)
        kept.append(item)
    if not kept:
        return None
    flight = _Flight(store, dcfg, kept, now, report, writer)
    sender = composer.renderer.sender_addr
    step = RENEW_EVERY if lease > 0 else len(kept)  # lease 0: the only sender (send_lock)
    for lo in range(0, len(kept), step):
        part = list(range(lo, min(lo + step, len(kept))))
        if lease > 0:  # send only what is still ours; StoreError (session gone) stops here
            flight.wait()  # the part before is done: the renew is right before this one
            keys = [(kept[i][0].edition, email_key(kept[i][0].sub.email)) for i in part]
            held = {(r["edition"], email_key(r["email"])) for r in
                    store.journal.renew([mine[k] for k in keys], lease_seconds=lease)}
            report.elsewhere += sum(1 for k in keys if k not in held)
            part = [i for i, k in zip(part, keys, strict=True) if k in held]
        if part:
            flight.send(transport, [
                Envelope(composer.envelope_sender(j) if composer.return_path else sender,
                         j.sub.email, d, wire_ready=True)
                for j, d, _, _ in (kept[i] for i in part)], part)
    return flight


class _Flight:
    """A claimed batch on the transport. Outcomes are journalled as they arrive, on the
    transport's thread; `finish` (on the sender's) waits for the send and fills the report.
    Group commit: at most one journal append per FLUSH_SECONDS, so a kill loses only the
    last moment's `sent` records (those are then resent with their Message-ID) while the
    per-message cost stays a fraction of an fsync."""

    def __init__(self, store: StoreBackend, dcfg: DigestConfig, built: list[_Built],
                 now: datetime, report: SendReport, writer: _OutcomeWriter) -> None:
        self.store, self.dcfg, self.built, self.now = store, dcfg, built, now
        self.report, self.writer = report, writer
        # Touched by one thread at a time: the transport's while it sends, then `finish`.
        self.pending: list[dict] = []
        self.recorded: set[int] = set()
        self.started = self.last = time.monotonic()
        self.sends: list[tuple[list[int], Future[list[Outcome]]]] = []
        self.finished = False

    def on_outcome(self, i: int, out: Outcome) -> None:
        job, _, mid, body = self.built[i]
        self.recorded.add(i)
        # `at` runs on the run's clock (`now` plus the time elapsed) so retry spacing,
        # computed from it against a later run's `now`, is consistent under --now too.
        now = time.monotonic()
        when = self.now + timedelta(seconds=now - self.started)
        self.pending.append(_record(self.dcfg, job, out.state, mid, body.story_ids, iso(when),
                                    out.reason, out.state == "failed" and out.permanent))
        if now - self.last >= FLUSH_SECONDS:
            self.writer.append(self.pending)
            self.pending = []
            self.last = now

    def send(self, transport: Transport, envelopes: list[Envelope], part: list[int]) -> None:
        self.sends.append((part, _submit(
            transport, envelopes, lambda k, out: self.on_outcome(part[k], out))))

    def wait(self) -> None:
        for _, f in self.sends:
            f.exception()  # raised by `finish`

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        got: dict[int, Outcome] = {}
        try:
            for part, f in self.sends:
                for k, out in enumerate(f.result()):
                    got[part[k]] = out
                    if part[k] not in self.recorded:  # a transport that did not report
                        self.on_outcome(part[k], out)
        finally:
            self.writer.append(self.pending)
            self.pending = []
        report, bounced = self.report, []
        for i, out in sorted(got.items()):
            job, _, mid, _ = self.built[i]
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
                if not out.session:  # a refused session is logged once, by the transport
                    log.warning("%s: not delivered to %s: %s", self.dcfg.name, job.sub.email,
                                reason)
        if bounced:
            with self.store.transaction():
                for email in bounced:
                    self.store.update_subscriber(email, **subscribers.bounced())


# --- preview --------------------------------------------------------------------------------


def preview(config: Config, name: str | None = None, email: str | None = None,
            langs: Sequence[str] | None = None, out: Path | None = None,
            now: datetime | None = None, edition: str | None = None) -> Path:
    """Write the next edition for `email` (or for `langs`) as HTML, or as .eml if `out`
    ends in .eml; with `edition` (a date), the edition `email` was sent that day, with the
    stories its journal record names. Sends and records nothing."""
    now = now or datetime.now(UTC)
    dcfg = config.digest(name)
    store = open_store(config.store)
    if edition is not None:
        return _write_preview(config, dcfg, store, now, out,
                              *_sent_edition(store, dcfg.name, email, edition))
    if email:
        sub = store.get_subscriber(subscribers.normalize_email(email, "--email"))
        if sub is None:
            raise DigestError(f"--email: no subscriber {email}",
                              "list them with `digest subscribers list`, or use --lang")
        sent = store.journal.sent_story_ids(sub.email, dcfg.name)
    else:
        sub = Subscriber(email="preview@example.com", status="active",
                         languages=subscribers.parse_languages(langs, "--lang"))
        sent = frozenset()
    ranked = _ranked(config, now, dcfg)
    stories = plan_stories(ranked, sent, sub.tags, dcfg.max_stories, config.tags, now=now,
                           max_age=timedelta(hours=dcfg.max_age_hours), languages=sub.languages)
    if not stories:
        why = _why(ranked, sent, sub.tags, sub.languages, now, dcfg.max_age_hours,
                          config.tags)
        raise DigestError(f"nothing new to preview for {sub.email}: {why}",
                          "ingest newer stories (`digest ingest`), raise [[digests]] "
                          "max_age_hours, preview another --email, or look at a sent edition "
                          "with --edition DATE")
    return _write_preview(config, dcfg, store, now, out, sub, local_date(sub.timezone, now),
                          stories)


def _sent_edition(store: StoreBackend, digest: str, email: str | None,
                  edition: str) -> tuple[Subscriber, str, list[Story]]:
    """The subscriber, edition and stories of a journalled edition (`preview --edition`)."""
    if not email:
        raise DigestError("--edition needs --email: editions are per subscriber",
                          f"digest preview --edition {edition} --email ADDRESS")
    addr = subscribers.normalize_email(email, "--email")
    rec = store.journal.state(digest, edition, addr)
    if rec is None:
        raise DigestError(f"no edition {edition} of {digest!r} was sent to {addr}",
                          "editions are the subscriber's local dates (YYYY-MM-DD); "
                          "`digest status` shows the latest")
    ids = [str(i) for i in rec.get("stories") or []]
    stories = store.get_stories(ids)
    if not stories:
        raise DigestError(f"the stories of edition {edition} to {addr} are no longer stored",
                          "restore the store from a backup to see them")
    sub = store.get_subscriber(addr) or Subscriber(email=addr, status="active")
    return sub, edition, stories


def _write_preview(config: Config, dcfg: DigestConfig, store: StoreBackend, now: datetime,
                   out: Path | None, sub: Subscriber, edition: str,
                   stories: list[Story]) -> Path:
    composer = Composer(config, dcfg, site_secret(config, store), now)
    data, _, body = composer.message(Job(sub, edition, stories))
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
