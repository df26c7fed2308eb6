"""Subscriber operations for every front end: the CLI's add/list/remove/import and the web's
subscribe/confirm/preferences/unsubscribe, plus the confirmation mail.

The rules are digest.subscribers'; this module reads the store, applies them inside one
transaction each, and returns values or reports (the CLI prints them, the web renders them).
"""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from digest import subscribers as rules
from digest.config import Config
from digest.errors import DeliveryError, DigestError
from digest.mail import tokens
from digest.mail.render import Renderer, message_id, site_link
from digest.mail.transports import Envelope, Transport
from digest.models import Subscriber, iso
from digest.pipeline.secrets import site_secret
from digest.pipeline.sending import open_mail
from digest.store import Store

CSV_COLUMNS = ("email", "languages", "tags", "timezone")


# --- the CLI's commands --------------------------------------------------------------------------


def add_subscriber(config: Config, email: str, languages: list[str] | str | None = None,
                   tags: list[str] | str | None = None, timezone: str | None = None,
                   now: datetime | None = None) -> Subscriber:
    """Add an active subscriber (`digest subscribers add`); DigestError for a bad value or an
    address that is already there."""
    sub = rules.new_subscriber(email, languages, tags, timezone, "active", now or datetime.now(UTC))
    return Store(config.store.path).add_subscriber(sub)


def list_subscribers(config: Config) -> list[Subscriber]:
    """Every subscriber, in the order they were added."""
    return Store(config.store.path).list_subscribers()


def remove_subscriber(config: Config, email: str) -> str:
    """Delete a subscriber and return the address as stored; DigestError when there is none."""
    key = rules.normalize_email(email)
    if not Store(config.store.path).remove_subscriber(key):
        raise DigestError(f"no subscriber {key}", "list them with `digest subscribers list`")
    return key


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
    return import_csv(Store(config.store.path), path, now or datetime.now(UTC))


def import_csv(store: Store, path: Path, now: datetime) -> ImportReport:
    """Import `email,languages,tags,timezone` rows (a header names the columns, email
    required) in one transaction. Rows are checked by the same rules as `subscribers add`;
    a bad row is reported and skipped, the others are imported (`subscribers.imported`)."""
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
                                       f"{path}:{reader.line_num}")
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
    own = transport is None
    transport = transport or open_mail(config)
    try:
        out = transport.send([Envelope(renderer.sender_addr, email, data)])[0]
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
                self._store = Store(self.config.store.path)
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
        subscriber to mail a confirm link to (`subscribers.subscribed` decides what changes)."""
        store = self._open()
        with store.transaction():
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
                           timezone: str) -> bool:
        """Save validated choices; False when the address does not receive the digest."""
        store = self._open()
        with store.transaction():
            changes = rules.preferences_changed(store.get_subscriber(email), languages, tags,
                                                timezone)
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

    def read_token(self, purpose: str, token: str, now: datetime) -> tuple[str, datetime | None]:
        """(email, expiry) of a valid link token; raises tokens.TokenError (a DigestError)."""
        return tokens.decode(self.secret, purpose, token, now)


def open_subscriptions(config: Config) -> Subscriptions:
    """The handle a front end keeps (the store itself is opened on first use)."""
    return Subscriptions(config)
