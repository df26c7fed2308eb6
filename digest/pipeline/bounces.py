"""`digest bounces` (and the daemon's [schedule] bounces job): read the bounce mailbox, work
out whom each report is about, change subscribers by the rules of digest.subscribers, move
handled messages out of the way, and return a report.

Whom a report is about is proved only by our own signed data in it (the bounce mailbox is a
public address: anyone can mail it a report naming anyone):
- a DSN: the VERP token it was delivered to, the VERP `Return-Path` of the returned
  message, or the signed unsubscribe token in the returned message's `List-Unsubscribe`
  (mailto `bounces+unsub-…` or the https `unsubscribe?t=` link);
- an ARF complaint: only the returned original's `Return-Path` or `List-Unsubscribe` token
  (the address the report was delivered to proves nothing: it may be any copy's VERP
  address).
Every token of ours in a report must verify and all must name one subscriber, else nothing
changes. A report without any (only `Final-Recipient` / `Original-Rcpt-To` to go by) changes
nothing, not even a soft-bounce count, and is listed as unverified: three forged 4.x.x DSNs
would otherwise bounce anyone. (Our digests always carry the tokens; a confirmation mail goes
out from the bare return path, so its bounce is unverified — its address is still pending.)

What changes:
- a DSN: a permanent failure (5.x.x) marks the subscriber bounced; a temporary one (4.x.x,
  or a delay) is counted, and [bounces] soft_limit of them within soft_days mark it bounced
  (store meta `soft_bounces`: email → {notice key: time}, so one notice never counts twice,
  even when the run dies before moving it; read, changed and written in one transaction,
  so a concurrent run's counts are kept).
- an ARF feedback report: the subscriber complained — status `complained`, no more mail.
- a mail to a List-Unsubscribe address (`bounces+unsub-…`): that subscriber unsubscribes.
- a token that does not verify (forged, tampered, another site's secret) changes nothing.
Handled messages (including ignored ones) are moved out of the inbox; a message that cannot
be read as any of these is left where it is and listed in the report, every run. A message
another run moved first (two runs at once) is left to that run's report.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from digest import subscribers as rules
from digest.config import Config
from digest.mail import tokens, verp
from digest.mail.bounces import Notice, NoticeError, parse_notice
from digest.mail.inbox import Inbox, open_inbox
from digest.pipeline.reporting import capped
from digest.pipeline.secrets import site_secret
from digest.store import StoreBackend, open_store

log = logging.getLogger("digest.bounces")

SOFT_KEY = "soft_bounces"  # store meta: {email: {notice key: ISO time}}


@dataclass
class BounceReport:
    where: str = ""
    read: int = 0
    bounced: list[tuple[str, str]] = field(default_factory=list)  # email, status + reason
    soft: list[tuple[str, str, int]] = field(default_factory=list)  # email, status, count
    complained: list[tuple[str, str]] = field(default_factory=list)  # email, feedback type
    unsubscribed: list[str] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # message key, why
    left: list[tuple[str, str]] = field(default_factory=list)  # message key, why (unread)

    @property
    def handled(self) -> int:
        return self.read - len(self.left)

    def lines(self) -> list[str]:
        out = [f"bounces: read {self.read} message(s) from {self.where}: bounced "
               f"{len(self.bounced)}, soft bounces {len(self.soft)}, complaints "
               f"{len(self.complained)}, unsubscribed {len(self.unsubscribed)}, no change "
               f"{len(self.ignored)}, left unread {len(self.left)}"]

        capped(out, self.bounced, lambda x: f"  bounced {x[0]}: {x[1]} (no more mail)")
        capped(out, self.soft, lambda x: f"  soft bounce {x[0]}: {x[1]} ({x[2]} within the window; "
                                  "still active)")
        capped(out, self.complained, lambda x: f"  complaint from {x[0]} ({x[1] or 'abuse'}): "
                                        "marked complained, no more mail")
        capped(out, self.unsubscribed, lambda x: f"  unsubscribed {x} (by mail)")
        capped(out, self.ignored, lambda x: f"  no change for {x[0]}: {x[1]}")
        capped(out, self.left, lambda x: f"  left in the mailbox {x[0]}: {x[1]}")
        return out


class _Run:
    """One pass: the secret and the lazily built token index."""

    def __init__(self, config: Config, store: StoreBackend, now: datetime) -> None:
        self.config, self.store, self.now = config, store, now
        self.cfg = config.bounces
        self.secret = site_secret(config, store)
        self.digests = [d.name for d in config.digests]
        self._index: dict[str, list[str]] | None = None

    def index(self) -> dict[str, list[str]]:
        if self._index is None:  # one pass over the subscribers, only when a token came in
            self._index = verp.subscriber_index(
                self.secret, (s.email for s in self.store.iter_subscribers()))
        return self._index

    def owner(self, token: verp.Token) -> str | None:
        """The subscriber `token` verifies for, else None."""
        for email in self.index().get(token.who, []):
            if verp.verify(token, self.secret, email, self.digests) is not None:
                return email
        return None

    def resolve(self, addresses: tuple[str, ...]) -> tuple[str | None, verp.Token | None, bool]:
        """(email, token, forged): the first address carrying a token of ours decides."""
        rp = self.cfg.return_path
        if not rp:
            return None, None, False
        for addr in addresses:
            token = verp.parse(addr, rp)
            if token is None:
                continue
            email = self.owner(token)
            return email, token, email is None
        return None, None, False

    def prove(self, envelope: tuple[str, ...], returned: tuple[str, ...],
              uris: tuple[str, ...]) -> tuple[str | None, verp.Token | None, str]:
        """Whom our signed data in a report names: (email, its bounce token if any, "");
        (None, None, why) when a token of ours does not verify or two name different
        subscribers; (None, None, "") when the report holds none.

        `envelope`: addresses the report was delivered to (bounce tokens only: the
        unsubscribe address is never an envelope sender); `returned`: the returned
        message's Return-Path; `uris`: its List-Unsubscribe URIs."""
        rp = self.cfg.return_path
        found: dict[str, None] = {}
        bounce: verp.Token | None = None
        addresses = [(a, True) for a in envelope] + [(a, False) for a in returned] + \
            [(u[7:].partition("?")[0], False) for u in uris if u.lower().startswith("mailto:")]
        for addr, bounce_only in addresses:
            token = verp.parse(addr, rp) if rp else None
            if token is None or (bounce_only and token.kind != "bounce"):
                continue
            email = self.owner(token)
            if email is None:
                return None, None, "a token of ours in it does not verify (forged or tampered)"
            found[email] = None
            if token.kind == "bounce" and bounce is None:
                bounce = token
        link = self.config.site.base_url.rstrip("/") + "/unsubscribe?t="
        for uri in uris:
            if not (link != "/unsubscribe?t=" and uri.startswith(link)):
                continue
            try:
                email = tokens.verify(self.secret, "unsubscribe", uri[len(link):], self.now)
            except tokens.TokenError:
                return None, None, "its unsubscribe link's token does not verify (forged or " \
                    "tampered)"
            found[email.lower()] = None
        if len(found) > 1:
            return None, None, "tokens of ours in it name different subscribers"
        return next(iter(found), None), bounce, ""

    def named(self, addresses: tuple[str, ...]) -> str:
        """The first address the report names that is a stored subscriber ("" if none): shown
        in the report, never acted on."""
        for addr in addresses:
            try:
                email = rules.normalize_email(addr)
            except rules.InvalidAddress:
                continue
            if self.store.get_subscriber(email) is not None:
                return email
        return ""

    def change(self, email: str, rule: Callable) -> bool:
        """Apply `rule(stored subscriber) -> changes | None` in one transaction."""
        with self.store.transaction():
            changes = rule(self.store.get_subscriber(email))
            if changes:
                self.store.update_subscriber(email, **changes)
        return bool(changes)

    def soft_history(self) -> dict[str, dict[str, str]]:
        """The stored soft-bounce history, read afresh (call inside a transaction)."""
        found = self.store.meta_get(SOFT_KEY)
        return {k: dict(v) for k, v in found.items() if isinstance(v, dict)} \
            if isinstance(found, dict) else {}

    def hard(self, email: str) -> bool:
        """A hard bounce: mark `email` bounced and forget its soft bounces, in one
        transaction; whether the status changed."""
        with self.store.transaction():
            soft = self.soft_history()
            if soft.pop(email, None) is not None:
                self.store.meta_set(SOFT_KEY, soft)
            return self.change(email, rules.bounce_reported)

    def soft(self, email: str, key: str) -> tuple[int, bool | None]:
        """Count one temporary failure (notice `key`) for `email`, reading, merging and
        writing `soft_bounces` in one transaction (a concurrent run's counts are kept):
        (failures within the window, None while under the limit, else whether this made it
        bounced)."""
        with self.store.transaction():
            soft = self.soft_history()
            history, over = rules.soft_bounced(soft.get(email, {}), key, self.now, self.now,
                                               self.cfg.soft_limit, self.cfg.soft_days)
            if over:
                soft.pop(email, None)
            else:
                soft[email] = history
            self.store.meta_set(SOFT_KEY, soft)
            if not over:
                return len(history), None
            return len(history), self.change(email, rules.bounce_reported)


def _notice_key(notice: Notice, data: bytes) -> str:
    basis = notice.message_id.encode("utf-8", "replace") if notice.message_id else data
    return hashlib.sha256(basis).hexdigest()[:20]


def _handle(run: _Run, notice: Notice, data: bytes, report: BounceReport) -> str | None:
    """Act on one notice; a reason when it changes nothing, None when it acted. Raises
    NoticeError when it is not a message this mailbox expects (left in place)."""
    if notice.kind == "mail":
        email, token, forged = run.resolve(notice.delivered_to)
        if token is None or token.kind != "unsubscribe":
            raise NoticeError("not a delivery report, a complaint or an unsubscribe request")
        if forged or email is None:
            return "unsubscribe address whose token does not verify (forged or tampered)"
        if run.change(email, rules.unsubscribed):
            report.unsubscribed.append(email)
            return None
        return f"{email} was already unsubscribed"
    what_kind = "complaint" if notice.kind == "complaint" else "delivery report"
    # A complaint is proved only by the returned original: the address a report is
    # delivered to may be any copy's VERP address, and a complaint is for good.
    envelope = notice.delivered_to if notice.kind == "dsn" else ()
    email, token, bad = run.prove(envelope, notice.returned_from, notice.returned_unsubscribe)
    if bad:
        return f"{what_kind}: {bad}; no change"
    if email is None:
        named = run.named(notice.original_to)
        about = f" (it names {named})" if named else ""
        where = "the returned message" if notice.kind == "complaint" else "it"
        return f"unverified {what_kind}: no signed token of ours in {where}{about}; no change"
    if notice.kind == "complaint":
        if notice.feedback_type == "not-spam":
            return f"feedback report 'not-spam' for {email}"
        if run.change(email, rules.complained):
            report.complained.append((email, notice.feedback_type))
            return None
        return f"{email} had already complained"
    worst = notice.worst
    if worst is None:
        actions = ", ".join(sorted({r.action or "?" for r in notice.recipients}))
        return f"delivery report for {email} that is not a failure ({actions})"
    what = " ".join(x for x in (worst.status, worst.diagnostic) if x)[:200] or worst.action
    edition = f" (edition {token.edition})" if token is not None else ""
    if worst.permanent:
        if run.hard(email):
            report.bounced.append((email, what + edition))
            return None
        return f"{email} already receives nothing (hard bounce {worst.status})"
    count, bounced = run.soft(email, _notice_key(notice, data))
    if bounced is None:
        report.soft.append((email, what + edition, count))
        return None
    if bounced:
        report.bounced.append((email, f"{count} temporary failures within "
                                      f"{run.cfg.soft_days:g} days, last {what}{edition}"))
        return None
    return f"{email} already receives nothing (soft bounce {worst.status})"


def process_bounces(config: Config, now: datetime | None = None, *,
                    inbox: Inbox | None = None) -> BounceReport:
    """Read the [bounces] mailbox once (`digest bounces`); a second run over the same
    mailbox finds nothing left to do, and two at once (the daemon's job and a manual run)
    handle each message once between them. `inbox` overrides [bounces] (tests)."""
    now = now or datetime.now(UTC)
    inbox = inbox or open_inbox(config.bounces)
    store = open_store(config.store)
    report = BounceReport(where=inbox.where)
    try:
        run = _Run(config, store, now)
        with inbox:
            for key, data in inbox.messages():
                if data is None:
                    report.read += 1
                    report.left.append((key, "larger than 10 MB; not read"))
                    continue
                mine = BounceReport()  # merged only once the message is ours (moved)
                try:
                    notice = parse_notice(data)
                    why = _handle(run, notice, data, mine)
                except NoticeError as e:
                    report.read += 1
                    report.left.append((key, str(e)))
                    continue
                if why is not None:
                    mine.ignored.append((key, why))
                if not inbox.done(key):  # another run moved it first: its report lists it
                    continue
                report.read += 1
                _merge(report, mine)
        _prune(run)
    finally:
        store.close()
    for email, why in report.bounced:
        log.info("bounces: %s bounced: %s", email, why)
    return report


def _merge(into: BounceReport, part: BounceReport) -> None:
    for name in ("bounced", "soft", "complained", "unsubscribed", "ignored"):
        getattr(into, name).extend(getattr(part, name))


def _prune(run: _Run) -> None:
    """Forget soft bounces older than the window (addresses that recovered)."""
    with run.store.transaction():
        soft = run.soft_history()
        changed = False
        for email in list(soft):
            kept, _ = rules.soft_bounced(soft[email], "", datetime.min.replace(tzinfo=UTC),
                                         run.now, run.cfg.soft_limit, run.cfg.soft_days)
            if kept != soft[email]:
                changed = True
                if kept:
                    soft[email] = kept
                else:
                    del soft[email]
        if changed:
            run.store.meta_set(SOFT_KEY, soft)
