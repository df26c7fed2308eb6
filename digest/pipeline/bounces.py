"""`digest bounces` (and the daemon's [schedule] bounces job): read the bounce mailbox, work
out whom each report is about, change subscribers by the rules of digest.subscribers, move
handled messages out of the way, and return a report.

Per message (parsing in digest.mail.bounces, addresses in digest.mail.verp):
- a DSN: the VERP token it was delivered to names (subscriber, edition); without one the
  `Final-Recipient` does. A permanent failure (5.x.x) marks the subscriber bounced; a
  temporary one (4.x.x, or a delay) is counted, and [bounces] soft_limit of them within
  soft_days mark it bounced (store meta `soft_bounces`: email → {notice key: time}, so one
  notice never counts twice, even when the run dies before moving it).
- an ARF feedback report: the subscriber complained — status `complained`, no more mail.
- a mail to a List-Unsubscribe address (`bounces+unsub-…`): that subscriber unsubscribes.
- a token that does not verify (forged, tampered, another site's secret) changes nothing.
Handled messages (including ignored ones) are moved out of the inbox; a message that cannot
be read as any of these is left where it is and listed in the report, every run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from digest import subscribers as rules
from digest.config import Config
from digest.mail import verp
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
    """One pass: the secret, the lazily built token index and the soft-bounce history."""

    def __init__(self, config: Config, store: StoreBackend, now: datetime) -> None:
        self.config, self.store, self.now = config, store, now
        self.cfg = config.bounces
        self.secret = site_secret(config, store)
        self.digests = [d.name for d in config.digests]
        self._index: dict[str, list[str]] | None = None
        found = store.meta_get(SOFT_KEY)
        self.soft: dict[str, dict[str, str]] = dict(found) if isinstance(found, dict) else {}
        self.soft_changed = False

    def index(self) -> dict[str, list[str]]:
        if self._index is None:  # one pass over the subscribers, only when a token came in
            self._index = verp.subscriber_index(
                self.secret, (s.email for s in self.store.iter_subscribers()))
        return self._index

    def resolve(self, addresses: tuple[str, ...]) -> tuple[str | None, verp.Token | None, bool]:
        """(email, token, forged): the first address carrying a token of ours decides."""
        rp = self.cfg.return_path
        if not rp:
            return None, None, False
        for addr in addresses:
            token = verp.parse(addr, rp)
            if token is None:
                continue
            for email in self.index().get(token.who, []):
                if verp.verify(token, self.secret, email, self.digests) is not None:
                    return email, token, False
            return None, token, True
        return None, None, False

    def fallback(self, addresses: tuple[str, ...]) -> str | None:
        """The first address that is a stored subscriber (no token to go by)."""
        for addr in addresses:
            try:
                email = rules.normalize_email(addr)
            except rules.InvalidAddress:
                continue
            if self.store.get_subscriber(email) is not None:
                return email
        return None

    def change(self, email: str, rule: Callable) -> bool:
        """Apply `rule(stored subscriber) -> changes | None` in one transaction."""
        with self.store.transaction():
            changes = rule(self.store.get_subscriber(email))
            if changes:
                self.store.update_subscriber(email, **changes)
        return bool(changes)


def _notice_key(notice: Notice, data: bytes) -> str:
    basis = notice.message_id.encode("utf-8", "replace") if notice.message_id else data
    return hashlib.sha256(basis).hexdigest()[:20]


def _handle(run: _Run, notice: Notice, data: bytes, report: BounceReport) -> str | None:
    """Act on one notice; a reason when it changes nothing, None when it acted. Raises
    NoticeError when it is not a message this mailbox expects (left in place)."""
    email, token, forged = run.resolve(notice.delivered_to)
    if notice.kind == "mail":
        if token is None or token.kind != "unsubscribe":
            raise NoticeError("not a delivery report, a complaint or an unsubscribe request")
        if forged or email is None:
            return "unsubscribe address whose token does not verify (forged or tampered)"
        if run.change(email, rules.unsubscribed):
            report.unsubscribed.append(email)
            return None
        return f"{email} was already unsubscribed"
    if forged:
        return f"{notice.kind} for a VERP address whose token does not verify"
    if token is not None and token.kind == "unsubscribe":
        token, email = None, None  # a report about our unsubscribe address: use the fallback
    if email is None:
        email = run.fallback(notice.original_to)
        if email is None:
            return f"{notice.kind} about no known subscriber"
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
        if run.change(email, rules.bounce_reported):
            report.bounced.append((email, what + edition))
            run.soft.pop(email, None)
            run.soft_changed = True
            return None
        return f"{email} already receives nothing (hard bounce {worst.status})"
    history, over = rules.soft_bounced(run.soft.get(email, {}), _notice_key(notice, data),
                                       run.now, run.now, run.cfg.soft_limit,
                                       run.cfg.soft_days)
    run.soft_changed = True
    if over:
        run.soft.pop(email, None)
        if run.change(email, rules.bounce_reported):
            report.bounced.append((email, f"{len(history)} temporary failures within "
                                          f"{run.cfg.soft_days:g} days, last {what}{edition}"))
            return None
        return f"{email} already receives nothing (soft bounce {worst.status})"
    run.soft[email] = history
    report.soft.append((email, what + edition, len(history)))
    return None


def process_bounces(config: Config, now: datetime | None = None, *,
                    inbox: Inbox | None = None) -> BounceReport:
    """Read the [bounces] mailbox once (`digest bounces`); a second run over the same
    mailbox finds nothing left to do. `inbox` overrides [bounces] (tests)."""
    now = now or datetime.now(UTC)
    inbox = inbox or open_inbox(config.bounces)
    store = open_store(config.store)
    report = BounceReport(where=inbox.where)
    try:
        run = _Run(config, store, now)
        with inbox:
            for key, data in inbox.messages():
                report.read += 1
                if data is None:
                    report.left.append((key, "larger than 10 MB; not read"))
                    continue
                try:
                    notice = parse_notice(data)
                    why = _handle(run, notice, data, report)
                except NoticeError as e:
                    report.left.append((key, str(e)))
                    continue
                if run.soft_changed:  # before the move: a crash never loses a count
                    _save_soft(run)
                if why is not None:
                    report.ignored.append((key, why))
                inbox.done(key)
        if run.soft_changed or _prune(run):
            _save_soft(run)
    finally:
        store.close()
    for email, why in report.bounced:
        log.info("bounces: %s bounced: %s", email, why)
    return report


def _prune(run: _Run) -> bool:
    """Forget soft bounces older than the window (addresses that recovered)."""
    changed = False
    for email in list(run.soft):
        kept, _ = rules.soft_bounced(run.soft[email], "", datetime.min.replace(tzinfo=UTC),
                                     run.now, run.cfg.soft_limit, run.cfg.soft_days)
        if kept != run.soft[email]:
            changed = True
            if kept:
                run.soft[email] = kept
            else:
                del run.soft[email]
    return changed


def _save_soft(run: _Run) -> None:
    with run.store.transaction():
        run.store.meta_set(SOFT_KEY, run.soft)
    run.soft_changed = False
