"""Feed bytes (RSS 2.0, Atom 1.0, JSON Feed 1.1), tag slugs and the feed catalog; pure.

Which tool builds what, and why (feedgen 1.0 traps measured in DESIGN.md):
- RSS 2.0: feedgen. It is right here once `lastBuildDate` is set explicitly (it defaults to
  now, which would change the bytes on every build) and entries are added with
  `order="append"` (the default prepends, reversing rank order).
- Atom 1.0: lxml directly. feedgen drops entry link attributes (`type`, `hreflang`), cannot
  set a per-entry `xml:lang` (the `all` and tag feeds mix languages) and stamps `updated`
  with the build time.
- JSON Feed 1.1: orjson via digest.codec (same bytes as the json module's indent=2, faster); feedgen has no
  JSON Feed.
WebSub (`[websub] hubs`): every format names its own absolute URL once (RSS/Atom
`<atom:link rel="self">`, JSON Feed `feed_url`) and each hub (`<atom:link rel="hub">`, JSON
Feed `hubs`). feedgen 1.0 writes only the self `atom:link` in RSS, so the hub links are
inserted after it (`_rss_hubs`); with no hubs the bytes are what they were before.
Every string is passed through `xml_text` first: XML 1.0 cannot hold most control
characters (lxml raises), and C1 controls are discouraged. `<`, `&` and `]]>` are left
to the serializers (nothing here uses CDATA), except in the plain-text elements of RSS,
where the RSS Profile asks for hexadecimal references (`&#x26;`, `&#x3C;`): readers guess
whether an RSS title holds HTML, and the references tell them it does not (`_rss_plain`).

Ids: every language version of a story is its own item, `urn:digest:story:<id>:<code>`
(`item_urn`), with one title, one text and one `updated` in every feed that carries it;
the `all` and tag feeds hold each story once, in its first language (`item_language`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from digest import codec
from digest.models import iso
from digest.publish.site import xml_text  # one definition for pages and feeds

if TYPE_CHECKING:
    from lxml import etree
# feedgen and lxml (~25 ms of imports) load when a feed is built: a publish that finds every
# file current (the daemon's tick, `digest publish` with nothing new) never needs them.

ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"
# A feed with no items still needs an `updated`; a fixed instant keeps its bytes stable.
EMPTY_UPDATED = datetime(2000, 1, 1, tzinfo=UTC)

# (format, file name, media type, label) — the file names are part of the public layout.
FORMATS: tuple[tuple[str, str, str, str], ...] = (
    ("rss", "rss.xml", "application/rss+xml", "RSS"),
    ("atom", "atom.xml", "application/atom+xml", "Atom"),
    ("json", "feed.json", "application/feed+json", "JSON Feed"),
)
MEDIA_TYPES = {fmt: mt for fmt, _, mt, _ in FORMATS}

_SLUG_SAFE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


# --- tag slugs ---------------------------------------------------------------------------


def _ascii_slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def base_slug(tag: str, aliases: dict[str, str] | None = None) -> str:
    """The URL-safe ASCII slug of one tag: its `[tags]` alias, its lowercase ASCII words, or
    `t-` + a short sha1 of the tag when it has non-ASCII letters (so `安全` is never dropped)."""
    alias = (aliases or {}).get(tag)
    if alias:
        slug = _ascii_slug(alias)
        if slug:
            return slug
    if tag.isascii():
        slug = _ascii_slug(tag)
        if slug:
            return slug
    return "t-" + hashlib.sha1(tag.encode("utf-8")).hexdigest()[:10]


def tag_slugs(tags: Iterable[str], aliases: dict[str, str] | None = None) -> dict[str, str]:
    """tag → unique slug. Two tags that normalise to the same slug (`AI Safety`, `ai-safety`)
    keep it only if the tag already is the slug; the others get a hash suffix, so no feed
    silently merges two tags."""
    groups: dict[str, list[str]] = {}
    for tag in sorted(set(tags)):
        groups.setdefault(base_slug(tag, aliases), []).append(tag)
    out: dict[str, str] = {}
    for slug, members in groups.items():
        for tag in members:
            if len(members) == 1 or tag == slug:
                out[tag] = slug
            else:
                out[tag] = f"{slug}-{hashlib.sha1(tag.encode('utf-8')).hexdigest()[:6]}"
    return out


# --- catalog -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedSpec:
    """One published feed (three formats): where it lives and what it selects.

    `language` is the feed language: `en`, `zh`, or `mul` (BCP 47 "multiple languages",
    also in the W3C validator's ISO 639 list) for the mixed `all` and tag feeds, whose items
    carry their own `xml:lang`/`language`. Tag feeds are per tag across all
    languages: a tag holds few stories, and a per-language split would triple the files
    while most of them would repeat each other or be empty.
    """

    key: str  # "en" | "zh" | "all" | "tag/<slug>"
    title: str
    description: str
    language: str
    tag: str | None = None
    slug: str | None = None
    home: str = ""  # the HTML page this feed mirrors, relative to base_url ("" = the index)

    @property
    def dir(self) -> str:
        return f"feeds/tags/{self.slug}" if self.tag is not None else f"feeds/{self.key}"

    def path(self, fmt: str) -> str:
        """Relative path of this feed's `fmt` file under the output dir."""
        return f"{self.dir}/{dict((f, n) for f, n, _, _ in FORMATS)[fmt]}"

    def url(self, base_url: str, fmt: str) -> str:
        return join_url(base_url, self.path(fmt))

    def links(self, base_url: str) -> list[dict[str, str]]:
        """One dict per format: fmt, type (media type), label, href (absolute), path."""
        return [{"fmt": f, "type": mt, "label": label, "href": self.url(base_url, f),
                 "path": self.path(f)} for f, _, mt, label in FORMATS]

    @property
    def feed_id(self) -> str:
        # Host-independent like the item ids: moving base_url must not look like a new feed.
        return f"urn:digest:feed:{self.key.replace('/', ':')}"


LANG_TITLES = {"en": "English", "zh": "中文", "all": "All languages · 全部语言"}


def catalog(site_title: str, description: str, slugs: dict[str, str]) -> list[FeedSpec]:
    """Every feed to publish: en, zh, all, then one per tag (sorted by slug)."""
    specs = [
        FeedSpec(key=k, title=f"{site_title} — {LANG_TITLES[k]}", description=description,
                 language="mul" if k == "all" else k)
        for k in ("en", "zh", "all")
    ]
    for tag, slug in sorted(slugs.items(), key=lambda kv: kv[1]):
        specs.append(FeedSpec(
            key=f"tag/{slug}", title=f"{site_title} — #{tag}",
            description=f"{description} — #{tag}", language="mul", tag=tag, slug=slug,
            home=f"tags/{slug}.html",
        ))
    return specs


def join_url(base_url: str, relpath: str) -> str:
    """`base_url` (with or without a trailing slash) joined with a relative path."""
    return base_url.rstrip("/") + "/" + relpath.lstrip("/")


ITEM_URN_PREFIX = "urn:digest:story:"


def item_urn(story_id: str, code: str) -> str:
    """The id of one language version (`en`, `zh-Hans`, `zh-Hant`) of a story, in every feed:
    from the story id and the language only, never the host or the build time. Feed readers
    (newsboat; the Atom spec) take one id for one item across all feeds, so the English and
    the Chinese version must not share one."""
    return f"{ITEM_URN_PREFIX}{story_id}:{code}"


def split_item_urn(urn: str) -> tuple[str, str] | None:
    """(story id, language code) of an `item_urn`, or None."""
    if not urn.startswith(ITEM_URN_PREFIX) or ":" not in urn[len(ITEM_URN_PREFIX):]:
        return None
    sid, code = urn[len(ITEM_URN_PREFIX):].rsplit(":", 1)  # codes hold no colon; ids may
    return sid, code


def item_language(feed_language: str, languages: Sequence[str]) -> str | None:
    """The one language version of a story that a feed carries: in the `en`/`zh` feeds the
    story's text in that language (`zh` takes the first Chinese script), in the mixed `all`
    and tag feeds its first language, so each story is there once, as the very item (same
    id, title, text) the `en` or `zh` feed holds."""
    for code in languages:
        if feed_language not in ("en", "zh") or code == feed_language \
                or (feed_language == "zh" and code.startswith("zh")):
            return code
    return None


# --- feed data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    id: str
    url: str
    title: str
    lang: str  # BCP 47 code of the item's text: en, zh-Hans, zh-Hant
    published: datetime
    updated: datetime
    tags: tuple[str, ...]
    summary_text: str  # TL;DR as plain text (JSON Feed `summary`)
    summary_html: str  # TL;DR as an HTML list (RSS description, Atom summary)
    content_html: str  # the whole story as HTML


@dataclass(frozen=True)
class Feed:
    title: str
    description: str
    language: str | None
    feed_id: str
    home_url: str
    urls: dict[str, str]  # fmt → absolute URL of that format's file
    author: str
    items: tuple[FeedItem, ...]
    hubs: tuple[str, ...] = ()  # WebSub hubs (absolute http(s) URLs), in config order

    @property
    def updated(self) -> datetime:
        """The newest item's `updated`: the feed changes only when an item does."""
        return max((i.updated for i in self.items), default=EMPTY_UPDATED)


def _c(text: str | None) -> str:
    return xml_text(text or "")


# --- RSS 2.0 (feedgen) -------------------------------------------------------------------


def rss_bytes(feed: Feed) -> bytes:
    """RSS 2.0 with an atom:link self, content:encoded HTML and non-permalink guids."""
    from feedgen.feed import FeedGenerator

    fg = FeedGenerator()
    fg.title(_c(feed.title))
    # Self first: feedgen 1.0 lets the last link() call set the channel <link>.
    fg.link(href=feed.urls["rss"], rel="self", type=MEDIA_TYPES["rss"])
    fg.link(href=feed.home_url, rel="alternate")
    fg.description(_c(feed.description) or _c(feed.title))
    if feed.language:
        fg.language(feed.language)
    fg.generator("digest")
    fg.lastBuildDate(feed.updated)  # feedgen's default is the build time: never use it
    for item in feed.items:
        fe = fg.add_entry(order="append")  # the default prepends: keep rank order
        fe.title(_c(item.title))
        fe.link(href=item.url)
        fe.guid(item.id, permalink=False)
        fe.pubDate(item.published)
        if item.tags:
            fe.category([{"term": _c(t)} for t in item.tags])
        fe.description(_c(item.summary_html) or _c(item.title))
        fe.content(_c(item.content_html))  # no type="CDATA": `]]>` in text would break it
    return _rss_hubs(_rss_plain(fg.rss_str(pretty=True, encoding="UTF-8")), feed.hubs)


_RSS_SELF = re.compile(rb'\n( *)<atom:link [^>]*rel="self"[^>]*/>')


def _attr(value: str) -> bytes:
    """An XML attribute value (double-quoted) for a URL."""
    return (xml_text(value).replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            .encode("utf-8"))


def _rss_hubs(xml: bytes, hubs: Sequence[str]) -> bytes:
    """One `<atom:link rel="hub">` per hub right after the channel's self link. feedgen 1.0
    writes no other atom:link in RSS; its self link is always there (`rss_bytes` sets it), in
    the `atom` prefix its root declares."""
    if not hubs:
        return xml
    m = _RSS_SELF.search(xml)
    if m is None:  # cannot happen with feedgen 1.0; refuse rather than publish no hub
        raise ValueError("RSS without an atom:link rel=self: cannot add the WebSub hub links")
    links = b"".join(b"\n" + m[1] + b'<atom:link href="' + _attr(h) + b'" rel="hub"/>' for h in hubs)
    return xml[:m.end()] + links + xml[m.end():]


# Elements of RSS 2.0 whose text is plain text (item `description` and `content:encoded`
# hold HTML; the channel's `description` is plain text, so it is taken before the first item).
_RSS_PLAIN = re.compile(rb"(<(title|category|generator|language)(?:\s[^>]*)?>)([^<]*)(</\2>)")
_CHANNEL_DESC = re.compile(rb"(<description>)([^<]*)(</description>)")


def _hex_refs(text: bytes) -> bytes:
    return text.replace(b"&amp;", b"&#x26;").replace(b"&lt;", b"&#x3C;")


def _rss_plain(xml: bytes) -> bytes:
    """`&` and `<` in RSS plain text as hexadecimal references (RSS Profile; the W3C
    validator warns otherwise). lxml writes `&amp;`/`&lt;` and has no switch for this;
    plain-text elements hold no markup, so their serialized text is rewritten in place."""
    cut = xml.find(b"<item>")
    head, items = (xml, b"") if cut < 0 else (xml[:cut], xml[cut:])
    head = _CHANNEL_DESC.sub(lambda m: m[1] + _hex_refs(m[2]) + m[3], head, count=1)
    return _RSS_PLAIN.sub(lambda m: m[1] + _hex_refs(m[3]) + m[4], head + items)


# --- Atom 1.0 (lxml) ---------------------------------------------------------------------


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    from lxml import etree

    el = etree.SubElement(parent, f"{{{ATOM_NS}}}{tag}", {k: v for k, v in attrs.items() if v})
    if text is not None:
        el.text = _c(text)
    return el


def atom_bytes(feed: Feed) -> bytes:
    """Atom 1.0 built with lxml: per-entry xml:lang, typed links, updated = newest item."""
    from lxml import etree

    root = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})
    if feed.language:
        root.set(XML_LANG, feed.language)
    _sub(root, "id", feed.feed_id)
    _sub(root, "title", feed.title, type="text")
    if feed.description:
        _sub(root, "subtitle", feed.description, type="text")
    _sub(root, "updated", iso(feed.updated))
    _sub(root, "link", rel="self", type=MEDIA_TYPES["atom"], href=feed.urls["atom"])
    for hub in feed.hubs:
        _sub(root, "link", rel="hub", href=hub)
    _sub(root, "link", rel="alternate", type="text/html", href=feed.home_url)
    author = _sub(root, "author")
    _sub(author, "name", feed.author or "digest")
    _sub(root, "generator", "digest")
    for item in feed.items:
        entry = _sub(root, "entry")
        entry.set(XML_LANG, item.lang)
        _sub(entry, "id", item.id)
        _sub(entry, "title", item.title, type="text")
        _sub(entry, "link", rel="alternate", type="text/html", href=item.url)
        _sub(entry, "published", iso(item.published))
        _sub(entry, "updated", iso(item.updated))
        for t in item.tags:
            _sub(entry, "category", term=_c(t))
        if item.summary_html:
            _sub(entry, "summary", item.summary_html, type="html")
        _sub(entry, "content", item.content_html, type="html")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# --- JSON Feed 1.1 (json) ----------------------------------------------------------------


def json_feed(feed: Feed) -> dict:
    """The JSON Feed 1.1 object (validated in tests against the official schema)."""
    out: dict = {
        "version": JSONFEED_VERSION,
        "title": _c(feed.title),
        "home_page_url": feed.home_url,
        "feed_url": feed.urls["json"],
        "description": _c(feed.description),
    }
    if feed.language:
        out["language"] = feed.language
    out["authors"] = [{"name": _c(feed.author or "digest")}]
    if feed.hubs:
        out["hubs"] = [{"type": "WebSub", "url": hub} for hub in feed.hubs]
    items = []
    for item in feed.items:
        d = {
            "id": item.id,
            "url": item.url,
            "title": _c(item.title),
            "content_html": _c(item.content_html),
            "summary": _c(item.summary_text),
            "date_published": iso(item.published),
            "date_modified": iso(item.updated),
            "language": item.lang,
        }
        if item.tags:
            d["tags"] = [_c(t) for t in item.tags]
        items.append(d)
    out["items"] = items
    return out


def json_bytes(feed: Feed) -> bytes:
    """`json.dumps(..., ensure_ascii=False, indent=2)` + newline, byte for byte, by codec
    (json's indenting encoder is pure Python: ~10x slower on 50 items of whole stories)."""
    obj = json_feed(feed)
    try:
        return codec.dumps(obj, indent=True) + b"\n"
    except codec.EncodeError:  # a lone surrogate (in an id): the old path, same error
        return (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def feed_files(spec: FeedSpec, feed: Feed) -> dict[str, bytes]:
    """relpath → bytes for the three formats of one feed."""
    build = {"rss": rss_bytes, "atom": atom_bytes, "json": json_bytes}
    return {spec.path(fmt): build[fmt](feed) for fmt, _, _, _ in FORMATS}
