"""The rules for every way a subscriber changes, in one place and pure: the CLI (add, import,
remove), the web (subscribe, confirm, preferences, unsubscribe) and delivery (bounces).

Input rules refuse, never repair: a bad value raises DigestError naming the value, with a
hint (the web shows the same words on its form). State rules take the stored Subscriber (or
None) and return what to store; `digest.pipeline.subscribing` applies them in transactions.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from digest.errors import DigestError
from digest.mail import tokens
from digest.models import Subscriber, iso, parse_iso
from digest.scheduler.cron import zone

LANGUAGES = ("en", "zh")  # what a subscriber reads, in the order digests show them
MAX_TAGS = 30
MAX_TAG_CHARS = 64
MAX_ZONE_CHARS = 64
TAG_CHOICES = 50  # tags the forms offer as checkboxes, most used first
# Statuses that receive nothing and that links cannot undo; "complained": the reader marked a
# digest as spam (an RFC 5965 feedback report), which no link, import or bounce undoes.
GONE = ("unsubscribed", "bounced", "complained")
# The same, strongest first: which one a row stands for when it holds two (`suppression`);
# an operator may undo only a bounce (`reactivated`).
_STRENGTH = ("complained", "unsubscribed", "bounced")

# A sane subset of RFC 5321 mailboxes: ASCII only, dot-atom local part, a hostname. No
# quoting, comments or specials, so email.utils/headerregistry read every match back as the
# same bare address (a property test checks that; calling them here cost 0.1 ms/address).
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z]"
    r"(?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z"
)
_TAG_SPLIT = re.compile(r"[,，、\n]")  # ASCII and CJK commas, the ideographic comma, lines
_LANG_SPLIT = re.compile(r"[,\s]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


class InvalidAddress(DigestError):
    """An email address that we refuse to store, or to put into a header or an envelope."""


# --- input rules ------------------------------------------------------------------------------


def normalize_email(text: str, where: str = "email", local_ok: bool = False) -> str:
    """Validate and lower-case an address; raise InvalidAddress naming `where`.

    A dotless domain (`digest@localhost`) is accepted only with `local_ok` (our sender)."""
    raw = text if isinstance(text, str) else ""
    addr = raw.strip()
    hint = "use a plain ASCII address like name@example.com (no display name, no spaces)"
    if any(c in addr for c in "\r\n\x00") or any(c in raw for c in "\r\n"):
        raise InvalidAddress(f"{where}: line breaks are not allowed in an email address", hint)
    local, _, domain = addr.partition("@")
    if (len(addr) > 254 or not _EMAIL.fullmatch(addr) or len(local) > 64
            or ("." not in domain and not local_ok)):
        raise InvalidAddress(f"{where}: {addr[:80]!r} is not a valid email address", hint)
    return addr.lower()


def _values(values: Sequence[str] | str, split: re.Pattern[str]) -> list[str]:
    items = [values] if isinstance(values, str) else list(values)
    return [part for v in items for part in split.split(v if isinstance(v, str) else "")]


def parse_languages(values: Sequence[str] | str | None, where: str = "languages") -> list[str]:
    """`en,zh` or ["en", "zh"] → ["en", "zh"] (in that order; zh-Hans/zh-Hant → zh).

    Not given (None) means both; given, it must name at least one, and nothing else."""
    if values is None:
        return list(LANGUAGES)
    hint = 'use "en", "zh" or "en,zh"'
    chosen: set[str] = set()
    for v in (x.strip().lower() for x in _values(values, _LANG_SPLIT)):
        if not v:
            continue
        code = "zh" if v in ("zh", "zh-hans", "zh-hant") else v
        if code not in LANGUAGES:
            raise DigestError(f"{where}: unknown language {v[:40]!r}", hint)
        chosen.add(code)
    if not chosen:
        raise DigestError(f"{where}: choose at least one language", hint)
    return [x for x in LANGUAGES if x in chosen]


def parse_tags(values: Sequence[str] | str | None, where: str = "tags") -> list[str]:
    """Tags separated by commas (，、 too) or lines, white space collapsed, duplicates dropped.

    Refused, not trimmed: a tag over 64 characters or with a control character, and more
    than 30 tags. None or nothing means every story."""
    if values is None:
        return []
    out: list[str] = []
    for v in _values(values, _TAG_SPLIT):
        tag = " ".join(v.split())
        if not tag:
            continue
        if _CONTROL.search(tag):
            raise DigestError(f"{where}: the tag {tag[:80]!r} holds a control character",
                              "type tags as plain text, separated by commas")
        if len(tag) > MAX_TAG_CHARS:
            raise DigestError(f"{where}: the tag {tag[:80]!r} is longer than {MAX_TAG_CHARS} "
                              "characters", "shorten it; tags match story tags and their slugs")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise DigestError(f"{where}: {len(out)} tags, at most {MAX_TAGS} are allowed",
                          "keep the ones that matter most; no tags at all means every story")
    return out


def parse_digests(values: Sequence[str] | str | None, known: Sequence[str],
                  where: str = "digests") -> tuple[str, ...]:
    """`daily,weekly` or ["daily", "weekly"] → the chosen digest names, in config order.

    Each must be one of `known` (the [[digests]] names). None or nothing chosen means the
    config's defaults, stored as () so a later change of `default = true` reaches them."""
    if values is None:
        return ()
    names = ", ".join(known)
    chosen: set[str] = set()
    for v in (x.strip() for x in _values(values, _TAG_SPLIT)):
        if not v:
            continue
        if v not in known:
            raise DigestError(f"{where}: unknown digest {v[:40]!r}",
                              f"choose among the digests config.toml defines: {names}")
        chosen.add(v)
    return tuple(x for x in known if x in chosen)


@lru_cache(maxsize=1024)
def zone_of(tz: str) -> ZoneInfo | None:
    """The IANA zone named `tz` (digest.scheduler.cron.zone), or None for anything else."""
    if not isinstance(tz, str) or len(tz) > MAX_ZONE_CHARS or not _ZONE_NAME.fullmatch(tz):
        return None  # never a path outside the zone database, never a control character
    try:
        return zone(tz)
    except (ValueError, OSError):  # OSError: a directory of the database, e.g. "America"
        return None


def check_timezone(tz: str | None, where: str = "timezone") -> str:
    """An IANA zone name, stripped; none or blank means UTC."""
    name = (tz or "").strip() or "UTC"
    if zone_of(name) is None:
        raise DigestError(f"{where}: unknown time zone {name[:80]!r}",
                          "use an IANA name such as UTC, Europe/Berlin or Asia/Shanghai")
    return name


def new_subscriber(email: str, languages: Sequence[str] | str | None,
                   tags: Sequence[str] | str | None, timezone: str | None, status: str,
                   now: datetime, where: str = "", *,
                   digests: Sequence[str] | str | None = None,
                   known_digests: Sequence[str] = ()) -> Subscriber:
    """A validated Subscriber; `where` prefixes error messages (`FILE:LINE`); `digests`
    are checked against `known_digests` (none given: the config's defaults)."""
    pre = f"{where}: " if where else ""
    return Subscriber(
        email=normalize_email(email, f"{pre}email"),
        languages=parse_languages(languages, f"{pre}languages"),
        tags=parse_tags(tags, f"{pre}tags"),
        timezone=check_timezone(timezone, f"{pre}timezone"),
        status=status, created=now, confirmed=now if status == "active" else None,
        digests=parse_digests(digests, known_digests, f"{pre}digests"),
    )


class TagChoice(NamedTuple):
    """A tag a subscriber can pick: its first spelling, its `[tags]` alias (slug) if any,
    and how many stories carry it."""

    tag: str
    alias: str | None
    count: int


def tag_choices(tag_lists: Iterable[Sequence[str]], aliases: Mapping[str, str] | None = None,
                limit: int = TAG_CHOICES) -> list[TagChoice]:
    """The tags the forms offer as checkboxes: the stories' tags (`tag_lists`, one sequence
    per story), spellings equal but for case counted as one tag, the `limit` carried by most
    stories first (equal counts: alphabetical). Any spelling matches when digests pick
    stories (digest.publish.plan.select), so the first one seen stands for them all."""
    aliases = aliases or {}
    counts: dict[str, int] = {}
    spelling: dict[str, str] = {}
    for tags in tag_lists:
        for key in {t.casefold(): t for t in tags if t}:
            counts[key] = counts.get(key, 0) + 1
        for t in tags:
            spelling.setdefault(t.casefold(), t)
    by_fold = {t.casefold(): slug for t, slug in aliases.items()}
    top = sorted(counts, key=lambda k: (-counts[k], k))[:max(0, limit)]
    return [TagChoice(spelling[k], aliases.get(spelling[k]) or by_fold.get(k), counts[k]) for k in top]


# --- state rules: (stored subscriber, request) → what to store ---------------------------------


def subscribed(old: Subscriber | None, new: Subscriber) -> dict[str, Any] | None:
    """A subscribe request (`new`, pending) for an address stored as `old`: the fields to
    change, or None to change nothing (then `old` is None: add `new`).

    Anyone can ask for any address, so an active subscriber's choices never change here (only
    through their signed preferences link). A pending or gone one takes the new choices, which
    count once confirmed from that mailbox, and `created` becomes the request time, which
    voids every confirm link mailed before it (`confirmed`).

    A gone status is not erased by a request anyone can make: it is kept as `suppressed`
    until the confirm link is followed, so an unconfirmed request that expires gives it back
    (the stores' `expire_pending`) and an import in between keeps it (`imported`)."""
    if old is None or old.status == "active":
        return None
    changes: dict[str, Any] = {"languages": new.languages, "tags": new.tags,
                               "timezone": new.timezone, "digests": new.digests,
                               "status": "pending", "created": new.created}
    if old.status in GONE:
        changes["suppressed"] = suppression(old)
    return changes


def suppression(sub: Subscriber) -> str:
    """The gone status `sub` stands for: the strongest of its status and its `suppressed`
    (complained, then unsubscribed, then bounced), or "" when it is neither."""
    held = [x for x in (sub.status, sub.suppressed) if x in GONE]
    return min(held, key=_STRENGTH.index) if held else ""


def imported(old: Subscriber | None, new: Subscriber) -> tuple[Subscriber, bool]:
    """A CSV row over the stored row: (what to store, whether the old status was kept).

    The row keeps its `created` and `confirmed` times; someone who unsubscribed or bounced
    keeps that status: an import never re-subscribes anyone. A pending re-subscribe keeps its
    `suppressed` status too, which it gets back if nobody confirms it (`expire_pending`)."""
    if old is None:
        return new, False
    row = dataclasses.replace(new, created=old.created, confirmed=old.confirmed,
                              suppressed=old.suppressed)
    if old.status != "active":
        return dataclasses.replace(row, status=old.status), True
    return dataclasses.replace(row, suppressed=""), False


def confirmed(sub: Subscriber | None, expires: datetime | None, now: datetime, *,
              activate: bool) -> tuple[str, dict[str, Any] | None]:
    """A confirm link (expiring at `expires`) followed: (outcome, fields to change).

    Outcomes: "gone" (an old link never undoes an unsubscribe), "already", "stale" (issued
    before the address's latest subscribe request), "ready" (GET: show the button) and
    "confirmed" (POST: active from `now`; the person's own click, so any `suppressed`
    status is cleared)."""
    if sub is None or sub.status in GONE:
        return "gone", None
    if sub.status == "active":
        return "already", None
    issued = tokens.confirm_issued(expires)
    # Whole seconds: the token carries its expiry in seconds.
    if issued is None or int(issued.timestamp()) < int(sub.created.timestamp()):
        return "stale", None
    if not activate:
        return "ready", None
    changes: dict[str, Any] = {"status": "active", "confirmed": now}
    if sub.suppressed:
        changes["suppressed"] = ""
    return "confirmed", changes


def preferences_changed(sub: Subscriber | None, languages: list[str], tags: list[str],
                        timezone: str, digests: Sequence[str] | None = None
                        ) -> dict[str, Any] | None:
    """New choices (already validated) from the preferences page: the fields to change, or
    None when the address does not receive the digest (nothing changes)."""
    if sub is None or sub.status in GONE:
        return None
    changes: dict[str, Any] = {"languages": languages, "tags": tags, "timezone": timezone}
    if digests is not None:  # None: the page offered no choice (one digest configured)
        changes["digests"] = tuple(digests)
    return changes


def unsubscribed(sub: Subscriber | None) -> dict[str, Any] | None:
    """An unsubscribe (link, one-click POST): the fields to change; None when nothing is
    sent to the address already (any GONE status: a complained or bounced address keeps
    its status, so a complaint is never undone and `reactivate --bounced` still finds it)."""
    if sub is None or sub.status in GONE:
        return None
    return {"status": "unsubscribed"}


def bounced() -> dict[str, Any]:
    """A hard bounce: nothing more is sent to the address, whatever its status was."""
    return {"status": "bounced"}


def bounce_reported(sub: Subscriber | None) -> dict[str, Any] | None:
    """A hard bounce reported later by mail (a DSN in the bounce mailbox): the fields to
    change; None for an unknown address or one that already receives nothing (an
    unsubscribe or a complaint stays what it is)."""
    if sub is None or sub.status in GONE:
        return None
    return bounced()


def complained(sub: Subscriber | None) -> dict[str, Any] | None:
    """A spam complaint (ARF feedback report): nothing more is ever sent; None when there
    is no such subscriber or it is already recorded."""
    if sub is None or sub.status == "complained":
        return None
    return {"status": "complained"}


def soft_bounced(history: Mapping[str, str], key: str, at: datetime, now: datetime,
                 limit: int, days: float) -> tuple[dict[str, str], bool]:
    """One temporary failure (4.x.x) for an address whose earlier ones are `history`
    (notice key → ISO time): (the history to keep, whether it now counts as a bounce).

    Keyed by notice so one DSN never counts twice; failures older than `days` before `now`
    are forgotten; `limit` of them within the window make a bounce."""
    cutoff = now - timedelta(days=days)
    kept: dict[str, str] = {}
    for k, when in history.items():
        try:
            if parse_iso(when) >= cutoff:
                kept[k] = when
        except (TypeError, ValueError):
            continue  # a hand-edited entry: forget it rather than fail the run
    if at >= cutoff:
        kept.setdefault(key, iso(at))
    return kept, len(kept) >= limit


def reactivated(sub: Subscriber | None) -> tuple[str, dict[str, Any] | None]:
    """`digest subscribers reactivate`: a bounced address made active again after a mistake
    (a relay that refused everyone, a mailbox that is back): (outcome, fields to change).

    Outcomes: "reactivated"; "active" (nothing to do); "missing"; "unsubscribed",
    "complained" and "pending" are refused: only the person can subscribe (again), from
    their own mailbox. So is a bounce that hit an unconfirmed re-subscribe of someone who had
    unsubscribed or complained (`suppressed`): the outcome is that earlier status."""
    if sub is None:
        return "missing", None
    if sub.status == "bounced":
        gone = suppression(sub)
        if gone != "bounced":
            return gone, None
        return "reactivated", {"status": "active", "suppressed": ""}
    return sub.status, None


# --- link tokens --------------------------------------------------------------------------------


def confirm_token(secret: bytes, email: str, now: datetime) -> str:
    """The confirm link's token: valid for tokens.CONFIRM_LIFETIME from `now`."""
    return tokens.sign(secret, "confirm", email, now + tokens.CONFIRM_LIFETIME)


def prefs_token(secret: bytes, email: str) -> str:
    """The preferences link's token (never expires)."""
    return tokens.sign(secret, "prefs", email, None)


def unsubscribe_token(secret: bytes, email: str) -> str:
    """The unsubscribe link's token (never expires; RFC 8058 one-click posts to it)."""
    return tokens.sign(secret, "unsubscribe", email, None)
