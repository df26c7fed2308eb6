"""Story pages, index.html, tag pages and feeds.opml as bytes from Jinja2 templates; pure.

Every story string is untrusted: autoescape is on for HTML and OPML, and `finalize` strips
the control characters XML cannot hold (the same fragments go into the feeds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from digest.config import SiteConfig
from digest.models import Block, Story, iso
from digest.resources import WEB_TEMPLATES
from digest.templating import Environment, Template, page_environment

# Characters XML 1.0 forbids, plus DEL/C1 controls and non-characters it discourages.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")

# Section headings in each story language; `zh-Hant` gets its own script, not zh-Hans.
LABELS: dict[str, dict[str, str]] = {
    "en": {"summary": "Summary", "tldr": "TL;DR", "key_data": "Key Data",
           "analysis": "Deep Analysis", "insights": "Industry Insights", "faq": "FAQ",
           "body": "Article", "source": "Source", "excerpt": "Excerpt: the article's opening sentences",
           "q": "Q", "a": "A", "published": "Published", "updated": "Updated"},
    "zh-Hans": {"summary": "摘要", "tldr": "要点", "key_data": "核心数据", "analysis": "深度解读",
                "insights": "行业启示", "faq": "常见问题", "body": "正文", "source": "来源",
                "excerpt": "摘录：文章开头的句子", "q": "问", "a": "答", "published": "发布",
                "updated": "更新"},
    "zh-Hant": {"summary": "摘要", "tldr": "要點", "key_data": "核心數據", "analysis": "深度解讀",
                "insights": "行業啟示", "faq": "常見問題", "body": "正文", "source": "來源",
                "excerpt": "摘錄：文章開頭的句子", "q": "問", "a": "答", "published": "發佈",
                "updated": "更新"},
}


class FeedLike(Protocol):
    """What pages need from a feed (digest.publish.feeds.FeedSpec), without importing that module."""

    title: str
    language: str
    tag: str | None
    slug: str | None
    home: str

    def links(self, base_url: str) -> list[dict[str, str]]: ...


def labels(code: str) -> dict[str, str]:
    return LABELS.get(code) or (LABELS["zh-Hans"] if code.startswith("zh") else LABELS["en"])


def story_path(story_id: str) -> str:
    """Relative path of a story's page; ids are URL-safe by construction, this keeps it so."""
    if _SAFE_ID.match(story_id):
        return f"stories/{story_id}.html"
    import hashlib

    return f"stories/s-{hashlib.sha1(story_id.encode('utf-8')).hexdigest()[:16]}.html"


def tag_page_path(slug: str) -> str:
    return f"tags/{slug}.html"


def xml_text(text: str) -> str:
    """`text` without the characters an XML 1.0 document cannot (or should not) hold; the
    feeds (`digest.publish.feeds`) use the same function, so page fragments fit into them as is."""
    return _ILLEGAL.sub("", text)


def _human_time(dt: Any) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC")


def body_groups(blocks: Sequence[Block]) -> list[tuple[str, Any]]:
    """Article blocks with consecutive list items gathered into one list: [(kind, text|[texts])]."""
    out: list[tuple[str, Any]] = []
    for b in blocks:
        if b.kind == "li":
            if out and out[-1][0] == "ul":
                out[-1][1].append(b.text)
            else:
                out.append(("ul", [b.text]))
        else:
            out.append(("h" if b.kind == "h" else "p", b.text))
    return out


def environment(templates: Path = WEB_TEMPLATES) -> Environment:
    """The web pages' environment (digest.templating's page settings) with the helpers the
    templates call; every printed value loses the characters XML cannot hold."""
    return page_environment(templates, text_filter=xml_text, globals=dict(
        labels=labels, iso=iso, human_time=_human_time, story_path=story_path,
        tag_page_path=tag_page_path, body_groups=body_groups))


_PUBLISH_ENVS: dict[tuple, Environment] = {}


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

    def _render(self, name: str, **ctx: Any) -> str:
        t = self._templates.get(name)
        if t is None:
            assert self.env is not None
            t = self._templates[name] = self.env.get_template(name)
        return t.render(site=self.site, base_url=self.base_url, slugs=self.slugs, **ctx)

    def abs_url(self, relpath: str) -> str:
        return self.base_url + relpath

    # --- fragments used inside feeds ------------------------------------------------------

    def story_html(self, story: Story, codes: Sequence[str]) -> str:
        """The whole story in `codes` as an HTML fragment (feed `content`); absolute links only."""
        return self._render("_story_body.html", story=story, codes=list(codes), root=self.base_url,
                            skip_title="").strip()

    def tldr_html(self, story: Story, code: str) -> str:
        """The TL;DR of one language as an HTML list (feed summary); empty if it has none."""
        items = story.tldr.get(code) or []
        if not items:
            return ""
        return self._render("_tldr.html", story=story, code=code).strip()

    # --- pages -------------------------------------------------------------------------

    def story_page(self, story: Story) -> bytes:
        return self._render("story.html", story=story, root="../",
                            page_lang=story.languages[0] if story.languages else "en").encode()

    def index_page(self, stories: Sequence[Story]) -> bytes:
        return self._render("index.html", stories=list(stories), feeds=list(self.feeds),
                            root="", page_lang="en").encode()

    def tag_page(self, feed: FeedLike, stories: Sequence[Story]) -> bytes:
        return self._render("tag.html", stories=list(stories), feed=feed, feeds=[feed],
                            root="../", page_lang="en").encode()

    def opml(self) -> bytes:
        return self._render("feeds.opml", feeds=list(self.feeds)).encode()
