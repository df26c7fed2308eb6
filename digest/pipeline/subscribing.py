"""Subscriber operations for every front end: the CLI's add/list/remove/import and the web's
subscribe/confirm/preferences/unsubscribe, plus the confirmation mail.

The rules are digest.subscribers'; this module reads the store, applies them inside one
transaction each, and returns values or reports (the CLI prints them, the web renders them).
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest import subscribers as rules
from digest.config import Config
from digest.errors import DeliveryError, DigestError
from digest.mail import tokens
from digest.mail.render import Renderer, message_id, site_link
from digest.mail.transports import Envelope, Transport
from digest.models import Subscriber, iso
from digest.pipeline.secrets import site_secret
from digest.pipeline.sending import dkim_sign, open_mail
from digest.store import Store, open_store

CSV_COLUMNS = ("email", "languages", "tags", "timezone", "digests")


# --- the CLI's commands --------------------------------------------------------------------------


def add_subscriber(config: Config, email: str, languages: list[str] | str | None = None,
                   tags: list[str] | str | None = None, timezone: str | None = None,
                   now: datetime | None = None,
                   digests: list[str] | str | None = None) -> Subscriber:
    """Add an active subscriber (`digest subscribers add`); DigestError for a bad value (a
    digest config.toml does not define, ...) or an address that is already there."""
    sub = rules.new_subscriber(email, languages, tags, timezone, "active", now or datetime.now(UTC),
                               digests=digests, known_digests=digest_names(config))
    return open_store(config.store).add_subscriber(sub)


def digest_names(config: Config) -> tuple[str, ...]:
    """The [[digests]] names a subscriber can choose, in config order."""
    return tuple(d.name for d in config.digests)


def list_subscribers(config: Config) -> list[Subscriber]:
    """Every subscriber, in email order."""
    return open_store(config.store).list_subscribers()


def remove_subscriber(config: Config, email: str) -> str:
    """Delete a subscriber and return the address as stored; DigestError when there is none."""
    key = rules.normalize_email(email)
    if not open_store(config.store).remove_subscriber(key):
        raise DigestError(f"no subscriber {key}", "list them with `digest subscribers list`")
    return key


@dataclass
class ReactivateReport:
    """What `digest subscribers reactivate` did: reactivated addresses, and the ones left
    alone with why (`refused`: unsubscribed, pending or unknown; a user-facing error)."""

    reactivated: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    resend: int = 0  # bounced editions made sendable again

    def lines(self) -> list[str]:
        out = [f"reactivated {e}" for e in self.reactivated]
        out += [f"already active: {e}" for e in self.already]
        out += [f"not reactivated {e}: {why}" for e, why in self.refused]
        out.append(f"{len(self.reactivated)} reactivated, {len(self.already)} already active, "
                   f"{len(self.refused)} refused; {self.resend} bounced edition(s) will be "
                   "sent again by the next `digest send`")
        return out


_WHY = {"missing": "no such subscriber (list them with `digest subscribers list`)",
        "unsubscribed": "they unsubscribed; only they can subscribe again",
        "complained": "they reported a digest as spam; only they can subscribe again",
        "pending": "not confirmed yet; they must follow their confirmation link"}


def reactivate_subscribers(config: Config, emails: list[str] | None = None,
                           bounced: bool = False, now: datetime | None = None
                           ) -> ReactivateReport:
    """Make bounced subscribers active again (`emails`, or every bounced one with `bounced`)
    after a mistake, such as a relay that refused every recipient. The rule is
    `subscribers.reactivated`; today's and yesterday's editions that bounced for them are
    journalled `failed` (retryable), so the next send delivers them with the same content
    and Message-ID."""
    now = now or datetime.now(UTC)
    keys = [rules.normalize_email(e) for e in emails or []]
    store = open_store(config.store)
    report = ReactivateReport()
    try:
        if bounced:
            keys += [s.email for s in store.iter_subscribers(status="bounced")]
        retry: list[dict] = []
        with store.transaction():
            for key in dict.fromkeys(keys):
                sub = store.get_subscriber(key)
                outcome, changes = rules.reactivated(sub)
                if changes is None:
                    if outcome == "active":
                        report.already.append(key)
                    else:
                        report.refused.append((key, _WHY.get(outcome, outcome)))
                    continue
                store.update_subscriber(key, **changes)
                report.reactivated.append(key)
                assert sub is not None
                zone = rules.zone_of(sub.timezone) or UTC
                days = {(now - timedelta(days=d)).astimezone(zone).date().isoformat()
                        for d in (0, 1)}
                for dcfg in config.digests:
                    for edition in sorted(days):
                        prev = store.journal.state(dcfg.name, edition, sub.email)
                        if prev and prev.get("state") == "bounced":
                            retry.append({**prev, "state": "failed", "at": iso(now),
                                          "reason": "reactivated after a bounce"})
        store.journal.append(retry)
        report.resend = len(retry)
    finally:
        store.close()
    return report


@dataclass
class ImportReport:
    """What a CSV import did; `bad` holds `FILE:LINE: reason` per refused row."""

    path: Path
    added: int = 0
    updated: int = 0
    kept: int = 0  # rows whose unsubscribed/bounced status was kept
    bad: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human report: each skipped row, then a summary."""
        return [f"skipped {line}" for line in self.bad] + [
            f"imported {self.path}: {self.added} added, {self.updated} updated "
            f"({self.kept} kept their unsubscribed/bounced status), {len(self.bad)} bad row(s)"]


def import_subscribers(config: Config, path: Path, now: datetime | None = None) -> ImportReport:
    """`digest subscribers import FILE`: see `import_csv`."""
    return import_csv(open_store(config.store), path, now or datetime.now(UTC),
                      digest_names(config))


def import_csv(store: Store, path: Path, now: datetime,
               known_digests: Sequence[str] = ("daily",)) -> ImportReport:  # the default [[digests]]
    """Import `email,languages,tags,timezone,digests` rows (a header names the columns, email
    required) in one transaction. Rows are checked by the same rules as `subscribers add`
    (`digests`: names of `known_digests`, comma-separated; empty = the defaults); a bad row
    is reported and skipped, the others are imported (`subscribers.imported`)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DigestError(f"{path}: cannot read ({e})", "give a UTF-8 CSV file") from e
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    cols = [h.strip().lower() for h in header or []]
    if "email" not in cols:
        raise DigestError(f"{path}:1: the header must name the columns, with at least email",
                          "first line: " + ",".join(CSV_COLUMNS))
    ix = {c: cols.index(c) for c in CSV_COLUMNS if c in cols}
    report = ImportReport(Path(path))
    rows: dict[str, Subscriber] = {}
    for row in reader:
        if not any(c.strip() for c in row):
            continue

        def col(name: str, row: list[str] = row) -> str | None:
            i = ix.get(name)
            return row[i] if i is not None and i < len(row) else None

        try:
            sub = rules.new_subscriber(col("email") or "", col("languages") or None, col("tags"),
                                       col("timezone") or None, "active", now,
                                       f"{path}:{reader.line_num}",
                                       digests=col("digests") or None,
                                       known_digests=known_digests)
        except DigestError as e:
            report.bad.append(e.message)
            continue
        rows[sub.email] = sub
    with store.transaction():
        final = []
        for sub in rows.values():
            row, kept = rules.imported(store.get_subscriber(sub.email), sub)
            report.kept += kept
            final.append(row)
        report.added, report.updated = store.upsert_subscribers(final)
    return report


# --- the confirmation mail (double opt-in) --------------------------------------------------------


def send_confirmation(config: Config, store: Store, subscriber: Subscriber, now: datetime,
                      *, transport: Transport | None = None) -> str:
    """Mail a signed confirm link (valid tokens.CONFIRM_LIFETIME) to a pending subscriber;
    returns the Message-ID. Raises DeliveryError when the transport did not take it."""
    email = rules.normalize_email(subscriber.email)
    dcfg = config.digests[0]
    renderer = Renderer(config.site.base_url, dcfg.subject, config.smtp.sender, dcfg.name)
    token = rules.confirm_token(site_secret(config, store), email, now)
    body = renderer.render_confirm(subscriber.languages, site_link(config.site.base_url,
                                                                  "confirm", token))
    mid = message_id("confirm", iso(now), email, renderer.domain)
    data = renderer.build_message(body, email, mid, now)
    sign = dkim_sign(config)
    if sign is not None:
        data = sign(data)
    own = transport is None
    transport = transport or open_mail(config)
    try:
        # Bounces go to the bounce mailbox; with no VERP token they change nothing there
        # (listed as unverified: the address is only pending).
        sender = config.bounces.return_path or renderer.sender_addr
        out = transport.send([Envelope(sender, email, data)])[0]
    finally:
        if own:
            transport.close()
    if out.state != "sent":
        raise DeliveryError(f"confirmation mail to {email} not delivered: {out.reason}",
                            "check [smtp] in config.toml and that the mail server is up")
    return mid


# --- the web's handle -----------------------------------------------------------------------------


class Subscriptions:
    """Subscriber state for a long-running front end (the web): the store opened once, the
    site secret read once. Every method is blocking (call it from a worker thread) and each
    change is one transaction applying a rule of digest.subscribers."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._store: Store | None = None
        self._secret: bytes | None = None
        self._lock = threading.Lock()

    def _open(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.config.store)
            return self._store

    @property
    def secret(self) -> bytes:
        """The site secret (pipeline.secrets.site_secret); never logged."""
        if self._secret is None:
            self._secret = site_secret(self.config, self._open())
        return self._secret

    def get(self, email: str) -> Subscriber | None:
        return self._open().get_subscriber(email)

    def subscribe(self, new: Subscriber) -> Subscriber:
        """A subscribe request (`new` is pending, `created` = the request time): the
        subscriber to mail a confirm link to (`subscribers.subscribed` decides what changes).

        Pending subscriptions older than `[web] pending_days` are dropped first, from the
        address's own shard only; that sweep rewrites the shard whether or not anything
        expired, so a stored address and an unknown one cost the same store work (one shard
        read, one shard write): the answer's timing does not tell which addresses subscribe."""
        store = self._open()
        cutoff = new.created - timedelta(days=self.config.web.pending_days)
        with store.transaction():
            store.expire_pending(cutoff, email=new.email)
            old = store.get_subscriber(new.email)
            if old is None:
                return store.add_subscriber(new)
            changes = rules.subscribed(old, new)
            return store.update_subscriber(new.email, **changes) if changes else old

    def confirm(self, email: str, expires: datetime | None, now: datetime, *,
                activate: bool) -> str:
        """Follow a confirm link: the outcome of `subscribers.confirmed`."""
        store = self._open()
        with store.transaction():
            outcome, changes = rules.confirmed(store.get_subscriber(email), expires, now,
                                               activate=activate)
            if changes:
                store.update_subscriber(email, **changes)
        return outcome

    def update_preferences(self, email: str, languages: list[str], tags: list[str],
                           timezone: str, digests: Sequence[str] | None = None) -> bool:
        """Save validated choices; False when the address does not receive the digest."""
        store = self._open()
        with store.transaction():
            changes = rules.preferences_changed(store.get_subscriber(email), languages, tags,
                                                timezone, digests)
            if changes is None:
                return False
            store.update_subscriber(email, **changes)
            return True

    def unsubscribe(self, email: str) -> None:
        """Unsubscribe at once; repeating it changes nothing."""
        store = self._open()
        with store.transaction():
            changes = rules.unsubscribed(store.get_subscriber(email))
            if changes:
                store.update_subscriber(email, **changes)

    def send_confirmation(self, sub: Subscriber, now: datetime) -> str:
        return send_confirmation(self.config, self._open(), sub, now)

    def link_tokens(self, email: str) -> dict[str, str]:
        """The preferences and unsubscribe tokens for `email`'s pages."""
        return {"prefs_token": rules.prefs_token(self.secret, email),
                "unsubscribe_token": rules.unsubscribe_token(self.secret, email)}

    def tag_choices(self, limit: int = rules.TAG_CHOICES) -> list[rules.TagChoice]:
        """The tags the forms offer: the stored stories' tags, most used first, with their
        `[tags]` aliases (`subscribers.tag_choices`; index.html's form gets the same list)."""
        stories = self._open().list_stories()
        return rules.tag_choices((s.tags for s in stories), self.config.tags, limit)

    def read_token(self, purpose: str, token: str, now: datetime) -> tuple[str, datetime | None]:
        """(email, expiry) of a valid link token; raises tokens.TokenError (a DigestError)."""
        return tokens.decode(self.secret, purpose, token, now)


def open_subscriptions(config: Config) -> Subscriptions:
    """The handle a front end keeps (the store itself is opened on first use)."""
    return Subscriptions(config)
