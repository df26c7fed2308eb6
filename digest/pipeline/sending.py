"""Digest editions end to end: subscribers → plan → render once per content → journal →
transport → report; plus preview, confirmation mail and the `subscribers` commands."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from digest.mail import tokens
from digest.config import Config, DigestConfig
from digest.mail.transports import Envelope, Outcome, Transport, open_transport
from digest.scheduler.cron import zone
from digest.errors import DeliveryError, DigestError
from digest.models import Story, Subscriber, iso, parse_iso
from digest.pipeline.publishing import rank_stories
from digest.mail.render import (
    InvalidAddress,
    RenderedBody,
    Renderer,
    message_id,
    normalize_email,
    plan_stories,
    site_link,
    story_tag_keys,
)
from digest.store import Store

log = logging.getLogger("digest.send")

BATCH = 100  # messages per journal batch: one fsync for `sending`, one for the outcomes;
# a crash mid-batch resends at most this many, each with its original Message-ID
FLUSH_SECONDS = 0.05  # group-commit window for outcome records
CONFIRM_TTL = tokens.CONFIRM_LIFETIME  # the web checks issue time against the same lifetime
RETRY_MAX_MINUTES = 30  # transient failures: retried after 1, 2, 4, ... minutes, at most 30
REPORT_LIST_MAX = 50  # per category in the printed report; the counts are always exact


# --- secrets and small helpers --------------------------------------------------------------


SECRET_FINGERPRINT_KEY = "secret_fingerprint"  # store meta: {"env": NAME, "fingerprint": hex}


def secret_fingerprint(secret: bytes) -> str:
    """First 8 bytes of sha256, hex: enough to tell two secrets apart, useless to forge."""
    return hashlib.sha256(secret).hexdigest()[:16]


def _check_fingerprint(config: Config, store: Store, env: str, persist: bool) -> None:
    """Warn when this process signs with another secret than the last one that used the env
    var (e.g. the daemon has DIGEST_SECRET and the operator's shell has not).

    A warning, not an error: the same mismatch is also what a deliberate rotation (or a
    deliberate switch back to the store's own secret) looks like, and there is no command
    to acknowledge one; raising would lock the web server out of its own subscribe page
    until someone edits the store by hand. The warning names the variable, never a value,
    and goes to the daemon log or, in the CLI, to stderr (logging's last-resort handler)."""
    name = config.web.secret_env
    found = store.meta_get(SECRET_FINGERPRINT_KEY)
    stored = found if isinstance(found, dict) else {}
    if not env:
        if stored.get("fingerprint"):
            was = stored.get("env") or name
            log.warning("$%s is not set in this process, but links were signed with $%s "
                        "before: links signed now use the store's own secret, which a server "
                        "that has $%s rejects; export %s here too", name, was, was, was)
        return
    fp = secret_fingerprint(env.encode("utf-8"))
    if stored.get("fingerprint") == fp and stored.get("env") == name:
        return
    if stored.get("fingerprint"):
        log.warning("$%s is not the secret links were last signed with (its fingerprint "
                    "changed): links signed by the other process, or before a rotation, no "
                    "longer verify; give every digest process the same $%s", name, name)
    if persist:
        with store.transaction():
            store.meta_set(SECRET_FINGERPRINT_KEY, {"env": name, "fingerprint": fp})


def site_secret(config: Config, store: Store, *, persist: bool = True) -> bytes:
    """The key that signs subscription links: the env var named by [web] secret_env, else
    one generated once and kept in the store meta. Never logged or printed; a fingerprint
    of an env secret is kept in the store meta so a process with another secret is noticed."""
    env = os.environ.get(config.web.secret_env, "")
    _check_fingerprint(config, store, env, persist)
    if env:
        return env.encode("utf-8")
    found = store.meta_get("site_secret")
    if found:
        return bytes.fromhex(found)
    if not persist:
        return secrets.token_bytes(32)
    with store.transaction():
        found = store.meta_get("site_secret")  # another process may have won the race
        if not found:
            found = secrets.token_bytes(32).hex()
            store.meta_set("site_secret", found)
    return bytes.fromhex(found)


@lru_cache(maxsize=1024)
def _zone(tz: str) -> ZoneInfo | None:
    """`due.zone(tz)`, or None for an unknown name."""
    try:
        return zone(tz)
    except ValueError:
        return None


def check_timezone(tz: str, where: str = "--tz") -> str:
    if not tz or _zone(tz) is None:
        raise DigestError(f"{where}: unknown time zone {tz!r}",
                          "use an IANA name such as UTC, Europe/Berlin or Asia/Shanghai")
    return tz


def parse_languages(values: Sequence[str] | str | None, where: str = "--lang") -> list[str]:
    """`en,zh` → ["en", "zh"]; empty → both; anything but en/zh (zh-Hans/zh-Hant → zh) fails."""
    if values is None:
        return ["en", "zh"]
    if isinstance(values, str):
        values = values.replace(" ", ",").split(",")
    out: list[str] = []
    for v in (x.strip().lower() for x in values):
        if not v:
            continue
        code = "zh" if v in ("zh", "zh-hans", "zh-hant") else v
        if code not in ("en", "zh"):
            raise DigestError(f"{where}: unknown language {v!r}", 'use "en", "zh" or "en,zh"')
        if code not in out:
            out.append(code)
    return [x for x in ("en", "zh") if x in out] or ["en", "zh"]


def parse_tags(values: Sequence[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    out: list[str] = []
    for v in values:
        v = " ".join(v.split())
        if v and v not in out:
            out.append(v[:64])
    return out


def _password(config: Config) -> str | None:
    pw = os.environ.get(config.smtp.password_env) if config.smtp.password_env else None
    if config.smtp.transport == "smtp" and config.smtp.username and not pw:
        raise DeliveryError(
            f"[smtp] username is set but ${config.smtp.password_env} is empty",
            f"export {config.smtp.password_env}=... (the password never goes in config.toml)")
    return pw


def _ranked(config: Config, now: datetime) -> list[Story]:
    return [r.story for r in rank_stories(config, now)]


def _local_date(tz: str, now: datetime) -> str:
    return now.astimezone(_zone(tz) or UTC).date().isoformat()


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

# --- sending --------------------------------------------------------------------------------


@dataclass
class _Job:
    sub: Subscriber
    edition: str
    stories: list[Story]
    resend: bool = False  # a `sending`/`failed` record exists: same content, same Message-ID
    attempt: int = 1  # how many times this edition was tried for this subscriber (incl. this)


class _Composer:
    """Per-run caches: one render per distinct (languages, stories, date), cheap headers."""

    def __init__(self, config: Config, dcfg: DigestConfig, secret: bytes, now: datetime):
        self.config, self.dcfg, self.secret, self.now = config, dcfg, secret, now
        self.renderer = Renderer(config.site.base_url, dcfg.subject, config.smtp.sender,
                                 dcfg.name)
        self.bodies: dict[tuple, RenderedBody] = {}

    def body(self, langs: Sequence[str], stories: Sequence[Story], date: str) -> RenderedBody:
        key = (tuple(langs), tuple(s.id for s in stories), date)
        body = self.bodies.get(key)
        if body is None:
            body = self.bodies[key] = self.renderer.render_digest(stories, langs, date,
                                                                  self.dcfg.name)
        return body

    def links(self, email: str) -> tuple[str, str]:
        base = self.config.site.base_url
        unsub = tokens.sign(self.secret, "unsubscribe", email, None)
        prefs = tokens.sign(self.secret, "prefs", email, None)
        return site_link(base, "unsubscribe", unsub), site_link(base, "preferences", prefs)

    def message(self, job: _Job) -> tuple[bytes, str, RenderedBody]:
        email = job.sub.email
        body = self.body(job.sub.languages, job.stories, job.edition)
        mid = message_id(self.dcfg.name, job.edition, email, self.renderer.domain)
        unsub, prefs = self.links(email)
        data = self.renderer.build_message(body, email, mid, self.now, unsub, prefs)
        return data, mid, body


def retry_after(prev: dict) -> datetime | None:
    """When a transient `failed` record may be retried: 1, 2, 4, ... minutes (capped at
    RETRY_MAX_MINUTES) after its `at`, by the number of attempts so far."""
    try:
        at = parse_iso(str(prev.get("at") or ""))
        attempt = max(1, int(prev.get("attempt") or 1))
    except (ValueError, TypeError):
        return None
    return at + timedelta(minutes=min(RETRY_MAX_MINUTES, 2 ** min(attempt - 1, 10)))


def _attempt(prev: dict) -> int:
    n = prev.get("attempt")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _plan_jobs(config: Config, dcfg: DigestConfig, store: Store, now: datetime,
               due_only: bool, report: SendReport) -> list[_Job]:
    ranked = _ranked(config, now)
    by_id = {s.id: s for s in ranked}
    tag_keys = {s.id: story_tag_keys(s, config.tags) for s in ranked}
    grace = timedelta(hours=config.schedule.grace_hours)
    max_age = timedelta(hours=dcfg.max_age_hours)
    journal = store.journal
    editions: dict[str, str | None] = {}
    jobs: list[_Job] = []
    for sub in store.list_subscribers(status="active"):
        tz = sub.timezone if _zone(sub.timezone) else "UTC"
        if tz not in editions:
            if due_only:
                from digest.scheduler.cron import due_edition

                found = due_edition(dcfg.cron, tz, now, grace)
                editions[tz] = found[0] if found else None
            else:
                editions[tz] = _local_date(tz, now)
        edition = editions[tz]
        if edition is None:
            report.not_due += 1
            continue
        prev = journal.state(dcfg.name, edition, sub.email)
        state = prev.get("state") if prev else None
        if state in ("sent", "bounced"):
            report.already_sent += 1
            continue
        if state == "failed" and prev.get("permanent"):  # a 5xx at MAIL/DATA: final
            report.given_up.append((sub.email, str(prev.get("reason") or "refused")))
            continue
        if state == "failed" and due_only:
            # The daemon ticks every minute: space its retries by the journal's `at`. A
            # manual `digest send` (not due_only) retries at once: the operator asked.
            when = retry_after(prev)
            if when is not None and now < when:
                report.waiting.append((sub.email, str(prev.get("reason") or ""), iso(when)))
                continue
        if prev:  # `sending` (a crash or lost reply) or `failed`: the edition is fixed
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
                jobs.append(_Job(sub, edition, stories, resend=True,
                                 attempt=_attempt(prev) + (state == "failed")))
                continue
        sent = journal.sent_story_ids(sub.email)
        stories = plan_stories(ranked, sent, sub.tags, dcfg.max_stories, config.tags, tag_keys,
                               now=now, max_age=max_age)
        if not stories:
            log.info("%s %s: nothing new for %s; no email", dcfg.name, edition, sub.email)
            report.nothing_new.append(sub.email)
            continue
        jobs.append(_Job(sub, edition, stories))
    return jobs


@contextlib.contextmanager
def _send_lock(store: Store, name: str) -> Iterator[None]:
    """One sender per digest at a time across processes (the daemon and a manual `digest
    send`): both planning from the same journal would each send the missing editions."""
    path = store.path / f"send-{name.encode().hex()[:64]}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise DeliveryError(f"digest {name!r} is being sent by another process ({path})",
                                "wait for it to finish; a rerun then sends only what is "
                                "missing") from e
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _record(dcfg: DigestConfig, job: _Job, state: str, mid: str, ids: Sequence[str],
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
    composer = _Composer(config, dcfg, site_secret(config, store, persist=not dry_run), now)
    if dry_run:
        for job in jobs:
            body = composer.body(job.sub.languages, job.stories, job.edition)
            report.would_send.append((job.sub.email, job.edition, len(body.story_ids)))
        report.renders = len(composer.bodies)
        return report
    own = transport is None
    transport = transport or open_transport(config.smtp, _password(config))
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


def _send_batch(store: Store, dcfg: DigestConfig, composer: _Composer, transport: Transport,
                sender: str, jobs: list[_Job], now: datetime, report: SendReport) -> None:
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
                store.update_subscriber(email, status="bounced")


# --- confirmation mail (double opt-in; called by the web app) --------------------------------


def send_confirmation(config: Config, store: Store, subscriber: Subscriber, now: datetime,
                      *, transport: Transport | None = None) -> str:
    """Mail a signed confirm link (valid 7 days) to a pending subscriber; returns the
    Message-ID. Raises DeliveryError when the transport did not take it."""
    email = normalize_email(subscriber.email)
    dcfg = config.digests[0]
    renderer = Renderer(config.site.base_url, dcfg.subject, config.smtp.sender, dcfg.name)
    token = tokens.sign(site_secret(config, store), "confirm", email, now + CONFIRM_TTL)
    body = renderer.render_confirm(subscriber.languages, site_link(config.site.base_url,
                                                                  "confirm", token))
    mid = message_id("confirm", iso(now), email, renderer.domain)
    data = renderer.build_message(body, email, mid, now)
    own = transport is None
    transport = transport or open_transport(config.smtp, _password(config))
    try:
        out = transport.send([Envelope(renderer.sender_addr, email, data)])[0]
    finally:
        if own:
            transport.close()
    if out.state != "sent":
        raise DeliveryError(f"confirmation mail to {email} not delivered: {out.reason}",
                            "check [smtp] in config.toml and that the mail server is up")
    return mid


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
        sub = store.get_subscriber(normalize_email(email, "--email"))
        if sub is None:
            raise DigestError(f"--email: no subscriber {email}",
                              "list them with `digest subscribers list`, or use --lang")
        sent = store.journal.sent_story_ids(sub.email)
    else:
        sub = Subscriber(email="preview@example.com", languages=parse_languages(langs),
                         status="active")
        sent = frozenset()
    ranked = _ranked(config, now)
    stories = plan_stories(ranked, sent, sub.tags, dcfg.max_stories, config.tags, now=now,
                           max_age=timedelta(hours=dcfg.max_age_hours))
    if not stories:
        raise DigestError(f"nothing new to preview for {sub.email}",
                          "ingest stories first (`digest ingest`), or preview another email")
    composer = _Composer(config, dcfg, site_secret(config, store), now)
    job = _Job(sub, _local_date(sub.timezone, now), stories)
    data, _, body = composer.message(job)
    out = Path(out) if out else Path.cwd() / f"preview-{dcfg.name}.html"
    if out.suffix.lower() == ".eml":
        payload = data
    else:
        unsub, prefs = composer.links(sub.email)
        payload = body.html.replace("%%DIGEST-UNSUBSCRIBE-URL%%", unsub).replace(
            "%%DIGEST-PREFERENCES-URL%%", prefs).encode("utf-8")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(payload)
    except OSError as e:
        raise DigestError(f"--out {out}: cannot write ({e.strerror})",
                          "choose a writable path") from e
    return out


# --- subscribers commands -------------------------------------------------------------------


def new_subscriber(email: str, langs: Sequence[str] | str | None, tags: Sequence[str] | str |
                   None, tz: str | None, status: str, now: datetime, where: str = "") -> Subscriber:
    """Validated Subscriber; `where` prefixes error messages (`FILE:LINE`)."""
    pre = f"{where}: " if where else ""
    return Subscriber(
        email=normalize_email(email, f"{pre}email"),
        languages=parse_languages(langs, f"{pre}languages"),
        tags=parse_tags(tags),
        timezone=check_timezone((tz or "UTC").strip(), f"{pre}timezone"),
        status=status, created=now, confirmed=now if status == "active" else None,
        secret=secrets.token_urlsafe(16),
    )


def import_csv(store: Store, path: Path, now: datetime) -> tuple[int, int, int, list[str]]:
    """Import `email,languages,tags,timezone` rows in one transaction.

    Returns (added, updated, kept, bad rows as `FILE:LINE: reason`). Someone who
    unsubscribed or bounced keeps that status: an import never re-subscribes them."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DigestError(f"{path}: cannot read ({e})", "give a UTF-8 CSV file") from e
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    cols = [h.strip().lower() for h in header or []]
    if "email" not in cols:
        raise DigestError(f"{path}:1: the header must name the columns, with at least email",
                          "first line: email,languages,tags,timezone")
    ix = {c: cols.index(c) for c in ("email", "languages", "tags", "timezone") if c in cols}
    bad: list[str] = []
    subs: dict[str, Subscriber] = {}
    for row in reader:
        line = reader.line_num
        if not any(c.strip() for c in row):
            continue

        def col(name: str, row: list[str] = row) -> str | None:
            i = ix.get(name)
            return row[i] if i is not None and i < len(row) else None

        try:
            sub = new_subscriber(col("email") or "", col("languages") or None, col("tags"),
                                 col("timezone") or None, "active", now, f"{path}:{line}")
        except DigestError as e:
            bad.append(e.message)
            continue
        subs[sub.email] = sub
    kept = 0
    with store.transaction():
        final = []
        for sub in subs.values():
            old = store.get_subscriber(sub.email)
            if old is not None:
                sub.secret, sub.created, sub.confirmed = old.secret, old.created, old.confirmed
                if old.status != "active":
                    sub.status = old.status  # never re-subscribe by import
                    kept += 1
            final.append(sub)
        added, updated = store.upsert_subscribers(final)
    return added, updated, kept, bad


def subscribers_command(config: Config, args, echo: Callable[[str], None]) -> int:  # noqa: ANN001
    """`digest subscribers add|list|remove|import`."""
    store = Store(config.store.path)
    now = datetime.now(UTC)
    if args.action == "add":
        sub = new_subscriber(args.email, args.lang, args.tags, args.tz, "active", now)
        store.add_subscriber(sub)
        echo(f"added {sub.email} ({','.join(sub.languages)}; tags: "
             f"{','.join(sub.tags) or 'all'}; {sub.timezone})")
        return 0
    if args.action == "list":
        subs = store.list_subscribers()
        if getattr(args, "json", False):
            print(json.dumps([s.public_dict() for s in subs], ensure_ascii=False, indent=2))
        else:
            for s in subs:
                echo(f"{s.email}\t{s.status}\t{','.join(s.languages)}\t"
                     f"{','.join(s.tags) or '-'}\t{s.timezone}")
            echo(f"{len(subs)} subscriber(s)")
        return 0
    if args.action == "remove":
        email = normalize_email(args.email)
        if not store.remove_subscriber(email):
            raise DigestError(f"no subscriber {email}", "list them with `digest subscribers list`")
        echo(f"removed {email}")
        return 0
    if args.action == "import":
        added, updated, kept, bad = import_csv(store, args.file, now)
        for line in bad:
            echo(f"skipped {line}")
        echo(f"imported {args.file}: {added} added, {updated} updated "
             f"({kept} kept their unsubscribed/bounced status), {len(bad)} bad row(s)")
        return 1 if bad else 0
    raise DigestError(f"unknown subscribers action {args.action!r}", "see digest subscribers -h")
