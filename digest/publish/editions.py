"""Editions on the web, pure: the public page of each sent edition (a digest, a date, a
language combination), an archive index per digest, and one editions feed per digest and
combination; paths, URLs, ids and bytes.

What an edition page holds: the edition of the day for that language combination, not one
subscriber's copy. `digest send` records it (digest.pipeline.sending) the first time it sends
that edition in that combination: the top `max_stories` ranked stories readable in those
languages and published within the digest's `max_age_hours` before that send, with no tag
filter and nothing already sent removed. The record (store meta `editions:<digest>`, the
newest KEEP_EDITIONS dates) is all the page is built from, so it holds no address, token or
choice of anyone's; a later send of the same edition (another time zone) keeps it.

Layout (under `[feeds] output`; the URL is known before the page exists, so a mail can link
it): `editions/<digest>/<date>/<langs>.html` (`langs` = `en`, `zh` or `en-zh`),
`editions/<digest>/index.html`, `feeds/editions/<digest>/<langs>/{rss.xml,atom.xml,feed.json}`.
Ids: `urn:digest:edition:<digest>:<date>:<langs>` for items, `urn:digest:feed:editions:<digest>:
<langs>` for feeds: never from base_url or the build time; an item's times are the record's
`at` (when the edition was first sent).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date as Date
from datetime import datetime, timedelta

from digest.i18n import HTML_LANG
from digest.mail.subjects import localized_title, long_date, reader_languages
from digest.models import Story, iso, parse_iso
from digest.publish.feeds import FORMATS, Feed, FeedItem, FeedSpec, feed_files, join_url

KEEP_EDITIONS = 400  # dates kept per digest in store meta (and so on the site)
META_PREFIX = "editions:"  # store meta key: META_PREFIX + digest name
COMBOS = ("en", "zh", "en-zh")
COMBO_TITLES = {"en": "English", "zh": "中文", "en-zh": "English · 中文"}
_DIGEST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # [[digests]] name (config checks it)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def meta_key(digest: str) -> str:
    return META_PREFIX + digest


def langs_key(languages: Sequence[str]) -> str:
    """A reader's languages as the combination the site names: `en`, `zh`, `en-zh`."""
    return "-".join(reader_languages(languages))


def combo_languages(langs: str) -> tuple[str, ...]:
    return tuple(langs.split("-"))


def edition_path(digest: str, edition: str, langs: str) -> str:
    return f"editions/{digest}/{edition}/{langs}.html"


def archive_path(digest: str) -> str:
    return f"editions/{digest}/index.html"


def edition_url(base_url: str, digest: str, edition: str, languages: Sequence[str]) -> str:
    """The public page of an edition for a reader of `languages` (View online, Archived-At)."""
    return join_url(base_url, edition_path(digest, edition, langs_key(languages)))


def edition_urn(digest: str, edition: str, langs: str) -> str:
    return f"urn:digest:edition:{digest}:{edition}:{langs}"


# --- the records send keeps ---------------------------------------------------------------


@dataclass(frozen=True)
class EditionRecord:
    """One edition as published: what send recorded the first time it sent it."""

    digest: str
    edition: str  # YYYY-MM-DD, the subscriber-local date the journal uses
    langs: str  # a COMBOS value
    stories: tuple[str, ...]
    at: datetime  # when it was first sent: the feed item's times

    def to_dict(self) -> dict:
        return {"edition": self.edition, "langs": self.langs, "stories": list(self.stories),
                "at": iso(self.at)}

    @classmethod
    def from_dict(cls, digest: str, d: object) -> EditionRecord | None:
        """The record, or None for anything malformed (a hand edit): it is skipped, never
        turned into a path."""
        if not isinstance(d, dict) or not _DIGEST.fullmatch(digest):
            return None
        edition, langs, stories = d.get("edition"), d.get("langs"), d.get("stories")
        if not isinstance(edition, str) or not _DATE.fullmatch(edition) or langs not in COMBOS \
                or not isinstance(stories, list):
            return None
        try:
            Date.fromisoformat(edition)
            at = parse_iso(str(d.get("at") or ""))
        except ValueError:
            return None
        return cls(digest, edition, str(langs), tuple(str(s) for s in stories), at)


def remember(stored: object, new: EditionRecord, keep: int = KEEP_EDITIONS) -> list[dict] | None:
    """The meta value with `new` added, or None when that edition and combination is already
    recorded (the first send's selection stands). Only the newest `keep` dates stay."""
    records = [r for r in stored if isinstance(r, dict)] if isinstance(stored, list) else []
    if any(r.get("edition") == new.edition and r.get("langs") == new.langs for r in records):
        return None
    records.append(new.to_dict())
    records.sort(key=lambda r: (str(r.get("edition")), str(r.get("langs"))))
    dates = sorted({str(r.get("edition")) for r in records})
    if len(dates) > keep:
        oldest = dates[-keep]
        records = [r for r in records if str(r.get("edition")) >= oldest]
    return records


def load_records(digest: str, stored: object) -> list[EditionRecord]:
    """The valid records of one digest's meta value, oldest first."""
    out = [EditionRecord.from_dict(digest, r) for r in stored] if isinstance(stored, list) else []
    return sorted((r for r in out if r is not None), key=lambda r: (r.edition, r.langs))


# --- pages and feeds ----------------------------------------------------------------------


@dataclass(frozen=True)
class DigestInfo:
    """What pages need of a [[digests]] table."""

    name: str
    subject: str


class Renderer:
    """Renders one publish's edition files; `render(name, **ctx)` is the site's page
    renderer (digest.publish.site.Site.render_page), `stories` the stored stories by id
    (index records suffice: titles and TL;DRs)."""

    def __init__(self, base_url: str, site_title: str, description: str, author: str,
                 render: Callable[..., str], stories: Mapping[str, Story],
                 aliases: Mapping[str, str] | None = None, feed_items: int = 50,
                 hubs: Sequence[str] = ()) -> None:
        self.base = base_url.rstrip("/") + "/"
        self.hubs = tuple(hubs)  # WebSub hubs: editions feeds announce them like every feed
        self.site_title, self.description, self.author = site_title, description, author
        self._render, self.stories = render, stories
        self.aliases = dict(aliases or {})
        self.feed_items = max(0, feed_items)

    def views(self, rec: EditionRecord) -> list:
        """The record's stories still stored, as the mail shows them (mail.render.story_view)."""
        # Imported here: mail.render brings css_inline, which a publish without editions
        # (and the check whether anything changed) does not need.
        from digest.mail.render import story_view

        langs = combo_languages(rec.langs)
        shown = (story_view(s, langs, self.base, self.aliases)
                 for s in (self.stories.get(i) for i in rec.stories) if s is not None)
        return [v for v in shown if v is not None]

    def heading(self, info: DigestInfo, langs: str) -> str:
        return localized_title(info.subject, combo_languages(langs))

    def when(self, rec: EditionRecord) -> str:
        return " · ".join(long_date(rec.edition, x) for x in combo_languages(rec.langs))

    def spec(self, info: DigestInfo, langs: str) -> FeedSpec:
        heading = self.heading(info, langs)
        return FeedSpec(key=f"editions/{info.name}/{langs}",
                        title=f"{heading} — {COMBO_TITLES[langs]}",
                        description=f"{self.description} — {heading}",
                        language="mul" if langs == "en-zh" else langs,
                        home=archive_path(info.name))

    def page(self, info: DigestInfo, rec: EditionRecord, spec: FeedSpec) -> bytes:
        return self._render("edition.html", heading=self.heading(info, rec.langs),
                            date_text=self.when(rec), record=rec, stories=self.views(rec),
                            page_url=self.base + edition_path(rec.digest, rec.edition, rec.langs),
                            feeds=[spec], root="../../../",
                            page_lang=HTML_LANG["zh"] if rec.langs == "zh" else "en").encode()

    def archive(self, info: DigestInfo, records: Sequence[EditionRecord],
                specs: Sequence[FeedSpec]) -> bytes:
        by_date: dict[str, list[EditionRecord]] = {}
        for r in records:
            by_date.setdefault(r.edition, []).append(r)
        dates = [(d, by_date[d]) for d in sorted(by_date, reverse=True)]
        return self._render("editions.html", heading=localized_title(info.subject, ("en", "zh")),
                            digest=info.name, dates=dates, combo_titles=COMBO_TITLES,
                            page_url=self.base + archive_path(info.name), feeds=list(specs),
                            root="../../", page_lang="en").encode()

    def item(self, info: DigestInfo, rec: EditionRecord) -> FeedItem:
        views = self.views(rec)
        lang = "mul" if rec.langs == "en-zh" else rec.langs
        return FeedItem(
            id=edition_urn(rec.digest, rec.edition, rec.langs),
            url=self.base + edition_path(rec.digest, rec.edition, rec.langs),
            title=f"{self.heading(info, rec.langs)} — {rec.edition}",
            lang=lang, published=rec.at, updated=rec.at, tags=(),
            summary_text=" · ".join(v.lead.title for v in views),
            summary_html="",
            content_html=self._render("_edition_stories.html", stories=views).strip(),
        )

    def feed(self, info: DigestInfo, spec: FeedSpec, records: Sequence[EditionRecord]
             ) -> dict[str, bytes]:
        """The three files of one editions feed: its newest `feed_items` editions first."""
        newest = sorted(records, key=lambda r: r.edition, reverse=True)[:self.feed_items]
        items, taken = [], set()
        for r in newest:  # editions of two dates first sent in one run: one `updated` each
            at = r.at.replace(microsecond=0)
            while at in taken:
                at -= timedelta(seconds=1)
            taken.add(at)
            item = self.item(info, r)
            items.append(replace(item, published=at, updated=at) if at != r.at else item)
        feed = Feed(title=spec.title, description=spec.description, language=spec.language,
                    feed_id=spec.feed_id, home_url=join_url(self.base, spec.home),
                    urls={link["fmt"]: link["href"] for link in spec.links(self.base)},
                    author=self.author, items=tuple(items), hubs=self.hubs)
        return feed_files(spec, feed)


def specs_for(renderer: Renderer, infos: Iterable[DigestInfo],
              records: Mapping[str, Sequence[EditionRecord]]) -> list[FeedSpec]:
    """One editions feed per digest and combination that has at least one edition."""
    out = []
    for info in infos:
        combos = {r.langs for r in records.get(info.name, ())}
        out += [renderer.spec(info, c) for c in COMBOS if c in combos]
    return out


def _key(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode("utf-8", "surrogatepass"),
                           digest_size=12).hexdigest()


def signature(records: Mapping[str, Sequence[EditionRecord]]) -> str:
    """Changes whenever the recorded editions do ("" when there are none: a site that never
    sent keeps the manifest it had)."""
    rows = [(d, [r.to_dict() for r in recs]) for d, recs in sorted(records.items()) if recs]
    return _key("editions/1", rows) if rows else ""


@dataclass(frozen=True)
class Group:
    """Files built together (a page, or the three formats of a feed) and their build key:
    the records and the signatures of the stories they show (`sigs`, story id → the
    publisher's story signature); templates, settings and code are in the tree's build key."""

    key: str
    paths: tuple[str, ...]
    make: Callable[[], dict[str, bytes]]


def plan_files(renderer: Renderer, infos: Sequence[DigestInfo],
               records: Mapping[str, Sequence[EditionRecord]],
               sigs: Mapping[str, str]) -> tuple[list[FeedSpec], list[Group]]:
    """The editions feeds and every editions file of the site, built on demand."""
    specs = specs_for(renderer, infos, records)
    by_key = {s.key: s for s in specs}
    groups: list[Group] = []
    for info in infos:
        recs = list(records.get(info.name, ()))
        if not recs:
            continue
        mine = [by_key[f"editions/{info.name}/{c}"] for c in COMBOS
                if f"editions/{info.name}/{c}" in by_key]

        def shows(r: EditionRecord) -> list:
            return [r.to_dict(), [sigs.get(i) for i in r.stories]]

        for r in recs:
            spec = by_key[f"editions/{info.name}/{r.langs}"]
            rel = edition_path(r.digest, r.edition, r.langs)
            groups.append(Group(_key("edition", info, shows(r)), (rel,),
                                lambda i=info, r=r, sp=spec, rel=rel: {rel: renderer.page(i, r, sp)}))
        rel = archive_path(info.name)
        groups.append(Group(_key("archive", info, [r.to_dict() for r in recs],
                                 [(s.key, s.title) for s in mine]), (rel,),
                            lambda i=info, rs=recs, m=mine, rel=rel: {rel: renderer.archive(i, rs, m)}))
        for spec in mine:
            langs = spec.key.rsplit("/", 1)[1]
            feed_recs = [r for r in recs if r.langs == langs]
            newest = sorted(feed_recs, key=lambda r: r.edition)[-renderer.feed_items:] \
                if renderer.feed_items else []
            groups.append(Group(_key("feed", info, spec, [shows(r) for r in newest]),
                                tuple(spec.path(fmt) for fmt, _, _, _ in FORMATS),
                                lambda i=info, sp=spec, rs=feed_recs: renderer.feed(i, sp, rs)))
    return specs, groups


__all__ = ["COMBOS", "DigestInfo", "EditionRecord", "KEEP_EDITIONS", "Renderer", "archive_path",
           "combo_languages", "edition_path", "edition_url", "edition_urn", "langs_key",
           "load_records", "meta_key", "plan_files", "remember", "signature", "specs_for"]
