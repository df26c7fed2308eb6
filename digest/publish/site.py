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

from digest import i18n
from digest.config import SiteConfig
from digest.models import Block, Story, iso
from digest.resources import WEB_TEMPLATES
from digest.templating import Environment, Template, page_environment

# Characters XML 1.0 forbids, plus DEL/C1 controls and non-characters it discourages.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")  # fullmatch: `$` passes "x\n"

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


# What a language is called in the language switch, in its own language.
LANG_NAMES = {"en": "English", "zh-Hans": "中文", "zh-Hant": "中文（繁體）"}


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
    if _SAFE_ID.fullmatch(story_id):
        return f"stories/{story_id}.html"
    import hashlib

    return f"stories/s-{hashlib.sha1(story_id.encode('utf-8')).hexdigest()[:16]}.html"


def tag_page_path(slug: str) -> str:
    return f"tags/{slug}.html"


def xml_text(text: str) -> str:
    """`text` without the characters an XML 1.0 document cannot (or should not) hold; the
    feeds (`digest.publish.feeds`) use the same function, so page fragments fit into them as is."""
    return _ILLEGAL.sub("", text)


# --- Chinese typesetting (W3C clreq), display only: stored text stays as it came ----------

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# Han, CJK symbols and punctuation (、。「」…), full-width forms (，！（）…)
_CJK = f"[{_HAN}\u3000-\u303f\uff00-\uffef]"
_FULL = {",": "，", ":": "：", ";": "；", "!": "！", "?": "？", "(": "（", ")": "）"}
_CJK_CHAR = re.compile(_CJK)
# A half-width , : ; ! ? with a Chinese character on at least one side (spaces around it
# go: a full-width mark carries its own space). Between Latin letters or digits it stays.
_PUNCT = re.compile(rf"(?:(?<={_CJK})[ \t]*([,:;!?])[ \t]*|[ \t]*([,:;!?])[ \t]*(?={_CJK}))")
_PARENS = re.compile(r"\(([^()\n]*)\)")


def _cjk(ch: str) -> bool:
    return bool(ch) and _CJK_CHAR.match(ch) is not None


def _paren(m: re.Match[str]) -> str:
    inner = m[1].strip()
    ends = (m.string[:m.start()].rstrip()[-1:], m.string[m.end():].lstrip()[:1],
            inner[:1], inner[-1:])
    return f"（{m[1]}）" if any(_cjk(c) for c in ends) else m[0]


def zh_punct(text: str) -> str:
    """Half-width `, : ; ! ? ( )` next to Chinese characters as full-width marks, for
    display (W3C clreq): `限制,部分` → `限制，部分`, `失控!` → `失控！`, `5,可能` → `5，可能`,
    `型(蒸馏)技` → `型（蒸馏）技` (a pair turns together). Marks with no Chinese character
    beside them stay: `12:30`, `1,000`, `https://`, `(AI)`. Pure; applied when rendering
    Chinese text, never to what is stored."""
    if not text or not _CJK_CHAR.search(text):
        return text
    text = _PARENS.sub(_paren, text)
    return _PUNCT.sub(lambda m: _FULL[m[1] or m[2]], text)


def typeset(text: str, code: str) -> str:
    """`text` as shown in language `code`: Chinese gets `zh_punct`, other languages as is."""
    return zh_punct(text) if code.startswith("zh") and isinstance(text, str) else text


def lang_anchor(languages: Sequence[str], code: str) -> str:
    """The fragment id of a language's section on a story page: `en`, `zh` (the first
    Chinese script; a second one keeps its code, `zh-Hant`). Mail links use these."""
    if code.startswith("zh"):
        first_zh = next((c for c in languages if c.startswith("zh")), code)
        return "zh" if code == first_zh else code
    return code


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text)


def shown(story: Story, code: str) -> dict[str, bool]:
    """Which of a language's lead parts a page shows, so that no text is said twice: the
    TL;DR unless it is an excerpt of the body shown below it; the summary unless it equals
    the TL;DR or opens the body."""
    tldr = story.tldr.get(code) or []
    body = _norm("".join(b.text for b in story.body.get(code) or []))
    summary = _norm(story.summary.get(code) or "")
    show_tldr = bool(tldr) and not (code in story.tldr_excerpt and body.startswith(_norm("".join(tldr))))
    show_summary = bool(summary) and summary != _norm("".join(tldr)) and not body.startswith(summary)
    return {"tldr": show_tldr, "summary": show_summary}


def lead_text(story: Story, code: str) -> str:
    """One line for a story in a list: its summary's or TL;DR's first sentence/point."""
    tldr = story.tldr.get(code) or []
    if tldr:
        return tldr[0]
    return (story.summary.get(code) or "").strip()


SCORE_LABELS = (("hot", "Hot"), ("quality", "Quality"), ("impact", "Impact"))


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
    env = page_environment(templates, text_filter=xml_text, globals=dict(
        labels=labels, iso=iso, human_time=_human_time, story_path=story_path,
        tag_page_path=tag_page_path, body_groups=body_groups, lang_anchor=lang_anchor,
        shown=shown, lead_text=lead_text, score_labels=SCORE_LABELS,
        lang_names=LANG_NAMES, ui=i18n.texts, ui_plain=i18n.plain, ui_message=i18n.message,
        ui_field=i18n.field_message, ui_langs_all=i18n.UI_LANGS, zone_groups=i18n.zone_groups))
    env.filters["typeset"] = typeset
    return env


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
        return self._render("story.html", story=story, root="../",
                            page_lang=story.languages[0] if story.languages else "en").encode()

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
