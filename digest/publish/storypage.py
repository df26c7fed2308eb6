"""story.html written out in Python: the same bytes as the Jinja templates at about a third
of the cost per page (a full publish renders every story). `Site.story_page` uses it only
while the story templates are exactly the ones mirrored here (STORY_TEMPLATES_DIGEST) and the
first page of each Site matches Jinja's rendering; otherwise Jinja renders every page."""

from __future__ import annotations

from typing import Any

from digest.models import Story, iso
from digest.publish.text import (
    _ILLEGAL,
    LANG_NAMES,
    SCORE_LABELS,
    _human_time,
    body_groups,
    labels,
    lang_anchor,
    shown,
    story_path,
    tag_page_path,
    zh_punct,
)
from digest.templating import Environment

STORY_TEMPLATES = ("story.html", "_story_body.html", "_tldr.html", "_scores.html",
                   "_scores_help.html")
# blake2b-128 of those files (name, NUL, bytes, NUL each): tests/publish/test_story_fast.py
# fails when a template changes, so this renderer is updated with it.
STORY_TEMPLATES_DIGEST = "f81301bfc4b453a309714dc54355b5ff"


def story_templates_digest(env: Environment) -> str | None:
    """The digest of the story page's templates as `env` loads them (None if one is missing)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    assert env.loader is not None
    for name in STORY_TEMPLATES:
        try:
            source = env.loader.get_source(env, name)[0]
        except Exception:  # noqa: BLE001 - no such template: no fast path
            return None
        h.update(name.encode() + b"\0" + source.encode("utf-8") + b"\0")
    return h.hexdigest()


def esc(s: Any) -> str:
    """markupsafe.escape, for the plain values a story page prints."""
    if type(s) is not str:
        s = str(s)
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    if "'" in s:
        s = s.replace("'", "&#39;")
    if '"' in s:
        s = s.replace('"', "&#34;")
    return s


_SENTINEL = "\ue000digest-frame\ue000"


class StoryPage:
    """story.html in Python for one `Site` (see above). Only `Site.story_page` calls it: an
    error or a character to drop (None) sends the page to Jinja."""

    def __init__(self, site: Any, frame: list[str], scores_help: str) -> None:
        self.frame = frame  # base.html's text around page_lang, title, head and main
        self.base_url = site.base_url
        self.slugs = site.slugs
        self.site_title = esc(site.site.title)
        self.scores_help = scores_help  # _scores_help.html as Jinja renders it
        self.checked = False  # the first page is compared with Jinja's

    def render(self, story: Story) -> str | None:
        """The page, or None when a value holds a character `xml_text` drops."""
        langs = story.languages
        first = langs[0]
        zh_first = first.startswith("zh")
        title = story.title.get(first, story.id)
        headline = esc(zh_punct(title) if zh_first and isinstance(title, str) else title)
        desc = " ".join(story.tldr.get(first) or [story.summary.get(first, "")])
        desc = esc(zh_punct(desc) if zh_first else desc)
        url = esc(self.base_url + story_path(story.id))
        published, updated = esc(iso(story.published)), esc(iso(story.updated))
        head = [f'<link rel="canonical" href="{url}">\n']
        if desc:
            head.append(f'<meta name="description" content="{desc}">\n')
        head.append('<meta property="og:type" content="article">\n'
                    f'<meta property="og:site_name" content="{self.site_title}">\n'
                    f'<meta property="og:title" content="{headline}">\n'
                    f'<meta property="og:url" content="{url}">\n')
        if desc:
            head.append(f'<meta property="og:description" content="{desc}">\n')
        head.append(f'<meta property="article:published_time" content="{published}">\n'
                    f'<meta property="article:modified_time" content="{updated}">\n')
        for tag in story.tags:
            head.append(f'<meta property="article:tag" content="{esc(tag)}">\n')
        head.append('<meta name="twitter:card" content="summary">\n'
                    f'<meta name="twitter:title" content="{headline}">\n')
        if desc:
            head.append(f'<meta name="twitter:description" content="{desc}">\n')

        out = ['<article class="story">\n']
        if len(langs) > 1:
            out.append('<nav class="langs" aria-label="Language · 语言">')
            last = len(langs) - 1
            for i, code in enumerate(langs):
                c = esc(code)
                out.append(f'<a href="#{esc(lang_anchor(langs, code))}" lang="{c}" hreflang="{c}">'
                           f'{esc(LANG_NAMES.get(code, code))}</a>')
                if i != last:
                    out.append(' <span aria-hidden="true">|</span> ')
            out.append('</nav>\n')
        L0 = labels(first)
        out.append(f'<h1 lang="{esc(first)}">{headline}</h1>\n<p class="meta">\n'
                   f'{esc(L0["published"])} <time datetime="{published}">'
                   f'{esc(_human_time(story.published))}</time>\n')
        if story.updated != story.published:
            out.append(f' · {esc(L0["updated"])} <time datetime="{updated}">'
                       f'{esc(_human_time(story.updated))}</time>')
        scores = story.scores
        if scores:
            out.append(' · <span class="scores">')
            n = 0
            for key, label in SCORE_LABELS:
                v = scores.get(key)
                if v is None:
                    continue
                if n:
                    out.append(" · ")
                n += 1
                out.append(f'<span class="score">{esc(label)} {esc(v)}<span aria-hidden="true">/100'
                           '</span><span class="visually-hidden"> out of 100</span></span>')
            out.append('</span>\n')
        out.append('</p>\n')
        if story.tags:
            out.append('<p class="tags">')
            for tag in story.tags:
                slug = self.slugs[tag]
                out.append(f'<a href="../{esc(tag_page_path(slug))}">#{esc(tag)}')
                if slug != tag.lower() and not slug.startswith("t-"):
                    out.append(f'<span lang="en"> · {esc(slug)}</span>')
                out.append('</a>')
            out.append('</p>\n')
        self._body(story, out)
        if scores:
            out.append(self.scores_help)
        out.append('</article>\n')
        head_s, main_s = "".join(head), "".join(out)
        if _ILLEGAL.search(head_s) or _ILLEGAL.search(main_s):
            return None  # every value printed is in these two (the frame is Jinja's)
        f = self.frame
        return "".join((f[0], esc(first), f[1], f"{headline} · {self.site_title}", f[2],
                        head_s, f[3], main_s, f[4]))

    @staticmethod
    def _body(story: Story, out: list[str]) -> None:
        """_story_body.html for a page: every language, anchors on, the first one untitled."""
        langs = story.languages
        first = langs[0]
        many = len(langs) > 1
        for code in langs:
            zh = code.startswith("zh")

            def ts(text: Any, zh: bool = zh) -> str:
                return esc(zh_punct(text) if zh and isinstance(text, str) else text)

            L = labels(code)
            show = shown(story, code)
            titled = many and story.title.get(code) and code != first
            h = "h3" if titled else "h2"
            out.append(f'<section class="lang-block" lang="{esc(code)}" id="{esc(lang_anchor(langs, code))}">\n')
            if titled:
                out.append(f'<h2>{ts(story.title[code])}</h2>\n')
            if show["summary"]:
                out.append(f'<p class="summary">{ts(story.summary[code])}</p>\n')
            if show["tldr"]:
                out.append(f'<{h}>{esc(L["tldr"])}</{h}>\n')
                if code in story.tldr_excerpt:
                    out.append(f'<p class="note">{esc(L["excerpt"])}</p>')
                out.append('<ul>\n')
                out += [f'<li>{ts(item)}</li>\n' for item in story.tldr[code]]
                out.append('</ul>\n')
            key_data = story.key_data.get(code)
            if key_data:
                out.append(f'<{h}>{esc(L["key_data"])}</{h}>\n<table>\n<thead><tr>')
                out += [f'<th>{ts(cell)}</th>' for cell in key_data[0]]
                out.append('</tr></thead>\n<tbody>\n')
                for row in key_data[1:]:
                    out.append('<tr>' + "".join([f'<td>{ts(cell)}</td>' for cell in row]) + '</tr>\n')
                out.append('</tbody>\n</table>\n')
            analysis = story.analysis.get(code)
            if analysis:
                out.append(f'<{h}>{esc(L["analysis"])}</{h}>\n')
                out += [f'<p>{ts(para)}</p>\n' for para in analysis]
            insights = story.insights.get(code)
            if insights:
                out.append(f'<{h}>{esc(L["insights"])}</{h}>\n<ol>\n')
                out += [f'<li>{ts(item)}</li>\n' for item in insights]
                out.append('</ol>\n')
            faq = story.faq.get(code)
            if faq:
                q, a = esc(L["q"]), esc(L["a"])
                out.append(f'<{h}>{esc(L["faq"])}</{h}>\n<dl>\n')
                out += [f'<dt>{q}: {ts(f.q)}</dt>\n<dd>{a}: {ts(f.a)}</dd>\n' for f in faq]
                out.append('</dl>\n')
            body = story.body.get(code)
            if body:
                headed = key_data or analysis or insights or faq or show["tldr"]
                if headed:
                    out.append(f'<{h}>{esc(L["body"])}</{h}>\n')
                sub = ("h4" if titled else "h3") if headed else h
                for kind, text in body_groups(body):
                    if kind == "h":
                        out.append(f'<{sub}>{ts(text)}</{sub}>\n')
                    elif kind == "ul":
                        out.append('<ul>\n')
                        out += [f'<li>{ts(t)}</li>\n' for t in text]
                        out.append('</ul>\n')
                    else:
                        out.append(f'<p>{ts(text)}</p>\n')
            out.append('</section>\n')
        if story.source:
            out.append(f'<p class="source">{esc(labels(langs[0] if langs else "en")["source"])}: '
                       f'{esc(story.source)}</p>\n')


def story_frame(site: Any) -> list[str] | None:
    """base.html's text around what a story page fills in: page_lang, the title, head and
    main blocks (rendered through base.html with a marker in each place); None when base.html
    does not take them once each, in that order."""
    assert site.env is not None
    mark = _SENTINEL
    child = site.env.from_string("{% extends 'base.html' %}{% block title %}" + mark
                                 + "{% endblock %}{% block head %}" + mark
                                 + "{% endblock %}{% block main %}" + mark + "{% endblock %}")
    text = child.render(site=site.site, base_url=site.base_url, slugs=site.slugs, root="../",
                        page_lang=mark)
    parts = text.split(mark)
    return parts if len(parts) == 5 else None
