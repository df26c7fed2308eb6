"""Story pages, index.html, tag pages and feeds.opml as bytes from Jinja2 templates; pure.

Every story string is untrusted: autoescape is on for HTML and OPML, and `finalize` strips
the control characters XML cannot hold (the same fragments go into the feeds).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from digest import i18n
from digest.config import SiteConfig
from digest.models import Story, iso
from digest.publish.storypage import (
    STORY_TEMPLATES_DIGEST,
    StoryPage,
    story_frame,
    story_templates_digest,
)
from digest.publish.text import (  # noqa: F401 - re-exported: pages, feeds and mail use them
    LABELS,
    LANG_NAMES,
    SCORE_LABELS,
    _human_time,
    body_groups,
    labels,
    lang_anchor,
    lead_text,
    shown,
    story_path,
    tag_page_path,
    typeset,
    xml_text,
    zh_punct,
)
from digest.resources import WEB_TEMPLATES
from digest.templating import Environment, Template, page_environment


class FeedLike(Protocol):
    """What pages need from a feed (digest.publish.feeds.FeedSpec), without importing that module."""

    title: str
    language: str
    tag: str | None
    slug: str | None
    home: str

    def links(self, base_url: str) -> list[dict[str, str]]: ...


def environment(templates: Path = WEB_TEMPLATES) -> Environment:
    """The web pages' environment (digest.templating's page settings) with the helpers the
    templates call; every printed value loses the characters XML cannot hold."""
    env = page_environment(templates, text_filter=xml_text, globals=dict(
        labels=labels, iso=iso, human_time=_human_time, story_path=story_path,
        tag_page_path=tag_page_path, body_groups=body_groups, lang_anchor=lang_anchor,
        shown=shown, lead_text=lead_text, score_labels=SCORE_LABELS,
        lang_names=LANG_NAMES, ui=i18n.texts, ui_plain=i18n.plain, ui_message=i18n.message,
        ui_field=i18n.field_message, ui_langs_all=i18n.UI_LANGS, zone_groups=i18n.zone_groups))
    env.filters["typeset"] = typeset
    _PAGE_ENVS.add(env)
    return env


_PUBLISH_ENVS: dict[tuple, Environment] = {}
# Environments made by `environment()`: their helpers, filter and settings are the ones the
# Python story page (`StoryPage`) mirrors.
_PAGE_ENVS: weakref.WeakSet[Environment] = weakref.WeakSet()


def publishing_environment(templates: Path = WEB_TEMPLATES) -> Environment:
    """`environment()` without Jinja's per-lookup mtime check (3 stats per story page),
    kept while no template file changes: a daemon publishing again reuses the compiled
    templates, and an edited template (new size, mtime or inode) gets a fresh one."""
    sig = tuple(sorted((p.name, st.st_ino, st.st_size, st.st_mtime_ns)
                       for p in Path(templates).iterdir() if p.is_file()
                       for st in (p.stat(),)))
    key = (str(templates), sig)
    env = _PUBLISH_ENVS.get(key)
    if env is None:
        env = environment(templates)
        env.auto_reload = False
        _PUBLISH_ENVS.clear()  # only the current templates are worth keeping
        _PUBLISH_ENVS[key] = env
    return env


# Atom: per-entry language and `updated`, read by newsboat, rss2email and every reader
# that reads RSS (JSON Feed is not: newsboat and rss2email fail on it).
OPML_FORMAT = "atom"


@dataclass
class Site:
    """Renders every page of the published site; holds what all pages share."""

    site: SiteConfig
    slugs: dict[str, str]  # tag → slug
    feeds: Sequence[FeedLike]
    env: Environment | None = None

    def __post_init__(self) -> None:
        if self.env is None:
            self.env = publishing_environment()
        self.base_url = self.site.base_url.rstrip("/") + "/"
        # One lookup per top-level template per Site (extends/includes hit Jinja's cache).
        self._templates: dict[str, Template] = {}
        self._story_fast: StoryPage | bool | None = None  # None: not looked at yet

    def _render(self, name: str, **ctx: Any) -> str:
        t = self._templates.get(name)
        if t is None:
            assert self.env is not None
            t = self._templates[name] = self.env.get_template(name)
        return t.render(site=self.site, base_url=self.base_url, slugs=self.slugs, **ctx)

    def render_page(self, name: str, **ctx: Any) -> str:
        """Any page template with what every page gets (the editions pages use it)."""
        return self._render(name, **ctx)

    def abs_url(self, relpath: str) -> str:
        return self.base_url + relpath

    # --- fragments used inside feeds ------------------------------------------------------

    def story_html(self, story: Story, codes: Sequence[str]) -> str:
        """The whole story in `codes` as an HTML fragment (feed `content`); absolute links only."""
        return self._render("_story_body.html", story=story, codes=list(codes), root=self.base_url,
                            skip_title="", anchors=False).strip()

    def tldr_html(self, story: Story, code: str) -> str:
        """The TL;DR of one language as an HTML list (feed summary); empty if it has none."""
        items = story.tldr.get(code) or []
        if not items:
            return ""
        return self._render("_tldr.html", story=story, code=code).strip()

    # --- pages -------------------------------------------------------------------------

    def story_page(self, story: Story) -> bytes:
        fast = self._story_fast
        if fast is None:
            fast = self._story_fast = _story_page_renderer(self) or False
        if fast:
            try:
                text: str | None = fast.render(story)
            except Exception:  # noqa: BLE001 - odd data: the template renders it (or says why)
                text = None
            if text is not None:
                if fast.checked:
                    return text.encode()
                slow = self._story_jinja(story)
                fast.checked = text == slow
                if not fast.checked:  # the templates say otherwise: they win, from now on
                    self._story_fast = False
                return slow.encode()
        return self._story_jinja(story).encode()

    def _story_jinja(self, story: Story) -> str:
        return self._render("story.html", story=story, root="../",
                            page_lang=story.languages[0] if story.languages else "en")

    def index_page(self, stories: Sequence[Story], tag_choices: Sequence[Any] = (),
                   more_feeds: Sequence[FeedLike] = ()) -> bytes:
        """`tag_choices` (digest.subscribers.TagChoice) are the subscribe form's tags;
        `more_feeds` (the editions feeds) are listed and autodiscovered after the others."""
        return self._render("index.html", stories=list(stories),
                            feeds=[*self.feeds, *more_feeds],
                            root="", page_lang="en", tag_choices=list(tag_choices)).encode()

    def tag_page(self, feed: FeedLike, stories: Sequence[Story], alias: str | None = None) -> bytes:
        return self._render("tag.html", stories=list(stories), feed=feed, feeds=[feed],
                            alias=alias or feed.tag or "", root="../", page_lang="en").encode()

    def opml(self, more_feeds: Sequence[FeedLike] = ()) -> bytes:
        """One outline per feed, in one format (OPML_FORMAT): importing it subscribes a
        reader once to each feed, in a format every reader reads; the index page offers
        the other formats. `more_feeds`: the editions feeds."""
        return self._render("feeds.opml", feeds=[*self.feeds, *more_feeds],
                            fmt=OPML_FORMAT).encode()


# --- story pages without Jinja's per-value overhead -----------------------------------------
#
# A full publish renders every story page (10k at a time: ~0.4 ms each through Jinja, most of
# it Jinja's per-value machinery: a generator yield per piece, context lookups, `finalize`).
# `StoryPage` is story.html (+ _story_body, _tldr, _scores, _scores_help) written out in
# Python, emitting the very same bytes. It is used only while those templates are the ones it
# was written from (`STORY_TEMPLATES_DIGEST`; an edited or overridden template is rendered by
# Jinja), the page frame (head, header, footer) is taken from base.html itself, and the first
# page of each `Site` is rendered both ways and compared. A page holding a character `xml_text`
# would drop is rendered by Jinja, which drops it value by value.

# The helpers story.html calls, as `environment()` sets them: `StoryPage` calls these.
_STORY_HELPERS = {"labels": labels, "iso": iso, "human_time": _human_time,
                  "story_path": story_path, "tag_page_path": tag_page_path,
                  "body_groups": body_groups, "lang_anchor": lang_anchor, "shown": shown,
                  "score_labels": SCORE_LABELS, "lang_names": LANG_NAMES}


def _story_page_renderer(site: Site) -> StoryPage | None:
    """The Python story page for `site`, or None when its environment or templates are not
    the ones it mirrors: then Jinja renders every story page."""
    env = site.env
    if env is None or env not in _PAGE_ENVS or env.filters.get("typeset") is not typeset \
            or any(env.globals.get(k) is not v for k, v in _STORY_HELPERS.items()) \
            or story_templates_digest(env) != STORY_TEMPLATES_DIGEST:
        return None
    try:
        frame = story_frame(site)
        scores_help = env.get_template("_scores_help.html").render()
    except Exception:  # noqa: BLE001 - a base.html this cannot use: Jinja renders the pages
        return None
    return StoryPage(site, frame, scores_help) if frame is not None else None
