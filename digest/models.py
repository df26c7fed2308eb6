"""Plain data: Story, Subscriber and their JSON forms; no I/O, no third-party imports."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# BCP 47 codes a story may carry; the `zh` feed takes both Chinese scripts.
LANGUAGES = ("en", "zh-Hans", "zh-Hant")
FEED_LANGUAGES = ("en", "zh")
SCORE_KEYS = ("hot", "quality", "impact")
SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")


def feed_language(code: str) -> str:
    """Map a story language (`zh-Hant`) to the feed it belongs to (`zh`)."""
    return "zh" if code.startswith("zh") else code


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with a `Z`, second precision: the one spelling used everywhere."""
    return dt.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Parse ISO 8601; naive values are taken as UTC. Raises ValueError."""
    if type(text) is str and len(text) == 20 and text[19] == "Z":
        # Fast path for our own spelling (`iso()`: 2026-04-13T07:00:00Z), which is most of
        # the 20k calls when a 10k store is listed; fromisoformat reads the Z as UTC.
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass  # let the general path below raise (or accept) it as before
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError as e:  # '9999-12-31T23:00-05:00' or '0001-01-01T00:00+01:00'
        raise ValueError(f"{text[:40]!r} is outside the years 1-9999 in UTC") from e


_NOT_CONTENT = frozenset(("origin", "published", "updated"))


def content_hash_of(d: dict[str, Any]) -> str:
    """`Story.content_hash` from the story's `to_dict()` form (left unchanged), for a caller
    that also needs that form (the stored body): one `to_dict` instead of two."""
    blob = json.dumps({k: v for k, v in d.items() if k not in _NOT_CONTENT}, ensure_ascii=False,
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class FAQ:
    q: str
    a: str


@dataclass
class Block:
    """A piece of body text: `h` a heading, `p` a paragraph, `li` a list item."""

    kind: str
    text: str


@dataclass
class Story:
    """One curated story. Every per-language dict is keyed by a code in `languages`."""

    id: str
    languages: list[str]
    title: dict[str, str]
    published: datetime
    updated: datetime
    summary: dict[str, str] = field(default_factory=dict)
    tldr: dict[str, list[str]] = field(default_factory=dict)
    tldr_excerpt: list[str] = field(default_factory=list)  # languages whose TL;DR was derived
    scores: dict[str, int] | None = None  # {"hot", "quality", "impact"} 0-100, or None
    tags: list[str] = field(default_factory=list)
    key_data: dict[str, list[list[str]]] = field(default_factory=dict)  # rows; row 0 = header
    analysis: dict[str, list[str]] = field(default_factory=dict)
    insights: dict[str, list[str]] = field(default_factory=dict)
    faq: dict[str, list[FAQ]] = field(default_factory=dict)
    body: dict[str, list[Block]] = field(default_factory=dict)  # plain-article text
    source: str | None = None  # attribution, e.g. "新智元"
    origin: str = ""  # the file it came from (not part of identity or content hash)

    # --- JSON forms -------------------------------------------------------------------

    def summary_dict(self) -> dict[str, Any]:
        """The `digest rank --json` object: exactly the keys other tools rely on."""
        return {
            "id": self.id,
            "title": dict(self.title),
            "tldr": {k: list(v) for k, v in self.tldr.items()},
            "tldr_excerpt": list(self.tldr_excerpt),
            "languages": list(self.languages),
            "tags": list(self.tags),
            "scores": dict(self.scores) if self.scores is not None else None,
            "published": iso(self.published),
            "updated": iso(self.updated),
            "source": self.source,
        }

    def to_dict(self) -> dict[str, Any]:
        """Full JSON form: the summary keys plus the body sections (a structured story file)."""
        d = self.summary_dict()
        d.update(
            summary=dict(self.summary),
            key_data={k: [list(r) for r in v] for k, v in self.key_data.items()},
            analysis={k: list(v) for k, v in self.analysis.items()},
            insights={k: list(v) for k, v in self.insights.items()},
            # Spelled out, not dataclasses.asdict: the same dicts (field order) at a fifth
            # of the cost (ingest builds this form for every story).
            faq={k: [{"q": f.q, "a": f.a} for f in v] for k, v in self.faq.items()},
            body={k: [{"kind": b.kind, "text": b.text} for b in v] for k, v in self.body.items()},
            origin=self.origin,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Story:
        """Inverse of `to_dict` (tolerates the summary-only form). Raises KeyError/ValueError."""
        # Written for speed (a 10k-story index is listed on every publish and send): one
        # lookup per key and no comprehension over the sections an index record lacks.
        g = d.get
        published = parse_iso(d["published"])
        up = g("updated")
        scores = g("scores")
        tldr, key_data, analysis = g("tldr"), g("key_data"), g("analysis")
        insights, faq, body = g("insights"), g("faq"), g("body")
        return cls(
            id=str(d["id"]),
            languages=list(d["languages"]),
            title=dict(d["title"]),
            published=published,
            updated=parse_iso(up) if up else published,
            summary=dict(g("summary") or {}),
            tldr={k: list(v) for k, v in tldr.items()} if tldr else {},
            tldr_excerpt=list(g("tldr_excerpt") or ()),
            scores=dict(scores) if scores is not None else None,
            tags=list(g("tags") or ()),
            key_data={k: [list(r) for r in v] for k, v in key_data.items()} if key_data else {},
            analysis={k: list(v) for k, v in analysis.items()} if analysis else {},
            insights={k: list(v) for k, v in insights.items()} if insights else {},
            faq={k: [FAQ(**f) for f in v] for k, v in faq.items()} if faq else {},
            body={k: [Block(**b) for b in v] for k, v in body.items()} if body else {},
            source=g("source"),
            origin=g("origin", ""),
        )

    def content_hash(self) -> str:
        """Hash of the story's text, scores and tags. Times are left out: they come from
        relative ages ('9h ago') resolved against --as-of, so re-ingesting identical text at
        another time must report `unchanged`; `origin` is where it came from, not content."""
        return content_hash_of(self.to_dict())

    def first_language(self) -> str:
        return self.languages[0]

    def text_in(self, lang: str) -> str | None:
        """The story's language code serving feed language `lang` (`zh` → `zh-Hant`), if any."""
        for code in self.languages:
            if code == lang or feed_language(code) == lang:
                return code
        return None


@dataclass
class Subscriber:
    """One reader; the rules for how one changes are in digest.subscribers."""

    email: str
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])  # feed languages
    tags: list[str] = field(default_factory=list)  # empty = all
    timezone: str = "UTC"
    status: str = "pending"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    confirmed: datetime | None = None
    # The digests they chose (names of [[digests]]); empty = config's defaults (rows written
    # before the choice existed have none).
    digests: tuple[str, ...] = ()
    # While a re-subscribe from a gone status ("unsubscribed", "bounced", "complained") waits
    # for its confirmation: that earlier status. Expiry restores it and an import honours it;
    # only the confirm link (the person, from that mailbox) clears it. "" otherwise.
    suppressed: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "email": self.email,
            "languages": list(self.languages),
            "tags": list(self.tags),
            "timezone": self.timezone,
            "status": self.status,
            "created": iso(self.created),
            "confirmed": iso(self.confirmed) if self.confirmed else None,
        }
        if self.digests:  # absent = the defaults: old rows keep their bytes
            out["digests"] = list(self.digests)
        if self.suppressed:  # absent = none: old rows keep their bytes
            out["suppressed"] = self.suppressed
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Subscriber:
        """Inverse of `to_dict`; other keys are ignored, such as the never-read per-subscriber
        `secret` that older rows carry (links are signed with the site secret)."""
        return cls(
            email=d["email"],
            languages=list(d.get("languages") or ["en", "zh"]),
            tags=list(d.get("tags") or []),
            timezone=d.get("timezone") or "UTC",
            status=d.get("status") or "pending",
            created=parse_iso(d["created"]) if d.get("created") else datetime.now(UTC),
            confirmed=parse_iso(d["confirmed"]) if d.get("confirmed") else None,
            digests=tuple(str(x) for x in d.get("digests") or () if x),
            suppressed=str(d.get("suppressed") or ""),
        )
