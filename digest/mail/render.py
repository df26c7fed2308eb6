"""Render digest / confirmation emails to message bytes (owns css_inline; the Jinja2
environments come from digest.templating); pure apart from reading the templates once.

Language rules (issue 13): a reader sees only the languages they chose. A story with no
text in any of them is left out (planning already skips it; rendering re-checks for
resends); UI labels, dates and the footer are in the reader's languages; an English-only
reader sees tags by their English `[tags]` alias (a CJK tag without one is not shown);
every link lands on the story page at the half in the block's language (`#en` / `#zh`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import css_inline

from digest.mail.subjects import (
    READER_LANGUAGES,
    SUBJECT_WIDTH,
    clean,
    display_width,
    encode_words,
    has_cjk,
    localized_title,
    long_date,
    reader_languages,
    shorten,
    subject_for,
)
from digest.mail.wire import (
    ADDR_MARK,
    PREFS_MARK,
    UNSUB_MARK,
    MessageWriter,
    RenderedBody,
    _boundary,
    domain_of,
    message_id,
    personalize,
    sender_parts,
)
from digest.models import Story
from digest.publish.site import lang_anchor, story_path, typeset
from digest.resources import EMAIL_TEMPLATES
from digest.subscribers import InvalidAddress, normalize_email
from digest.templating import mail_html_environment, mail_text_environment

# re-exported: addresses are checked here too, and subjects.py / wire.py were split out of here
__all__ = ["ADDR_MARK", "PREFS_MARK", "READER_LANGUAGES", "SUBJECT_WIDTH", "UNSUB_MARK",
           "InvalidAddress", "MessageWriter", "RenderedBody", "clean", "display_width",
           "domain_of", "encode_words", "has_cjk", "localized_title", "long_date",
           "message_id", "normalize_email", "personalize", "reader_languages", "sender_parts",
           "shorten", "subject_for"]

# Gmail clips at ~102 KB; the budget is 80 KB for the HTML part as sent, so the
# rendered body (links still markers) stays a little under that.
MAX_HTML_BYTES = 78_000
MAX_TEXT_BYTES = 60_000
MAX_BULLETS = 3  # TL;DR lines per language block; the story page has the rest


UI = {
    "en": {
        "toc": "In this issue",
        "colon": ": ",
        "read": "Read more",
        "more": "More stories are on the site:",
        "sent_to": "Sent to",
        "view_online": "View online",
        "preferences": "Preferences",
        "unsubscribe": "Unsubscribe",
        "excerpt": "Excerpt from the article (no TL;DR was given)",
        "missing": "No English version yet",
        "scores": ("Hot", "Quality", "Impact"),
        "confirm_intro": "Please confirm your subscription to this digest.",
        "confirm_button": "Confirm my subscription",
        "confirm_link": "Or open this link",
        "confirm_ignore": "If you did not ask for this, ignore this email; nothing will be sent.",
        "confirm_subject": "Confirm your subscription",
    },
    "zh": {
        "toc": "本期要点",
        "colon": "：",
        "read": "阅读全文",
        "more": "更多资讯请访问：",
        "sent_to": "本邮件发送至",
        "view_online": "在线查看",
        "preferences": "偏好设置",
        "unsubscribe": "退订",
        "excerpt": "摘自原文（原文未提供要点）",
        "missing": "暂无中文版",
        "scores": ("热度", "质量", "影响力"),
        "confirm_intro": "请确认订阅本摘要。",
        "confirm_button": "确认订阅",
        "confirm_link": "或打开此链接",
        "confirm_ignore": "如果这不是你本人的操作，请忽略此邮件，我们不会再发送任何内容。",
        "confirm_subject": "请确认订阅",
    },
}



def readable(story: Story, langs: Sequence[str]) -> bool:
    """Does the story have text in any of the reader's languages?"""
    return any(story.text_in(x) for x in reader_languages(langs))


def story_url(base_url: str, story_id: str, anchor: str = "") -> str:
    """The public page of a story, at the path the site builder writes it to; with
    `anchor`, at that language's half of the page (`#en`, `#zh`: `site.lang_anchor`)."""
    url = f"{base_url.rstrip('/')}/{story_path(story_id)}"
    return f"{url}#{anchor}" if anchor else url


def site_link(base_url: str, route: str, token: str) -> str:
    """A web route with a signed token: `<base>unsubscribe?t=…`."""
    return f"{base_url.rstrip('/')}/{route}?t={token}"



# --- rendering ------------------------------------------------------------------------------


@dataclass
class LangBlock:
    lang: str  # BCP 47 code of the text shown
    note_lang: str  # language of the note / labels (the reader's: en or zh)
    title: str = ""
    bullets: list[str] = field(default_factory=list)
    excerpt: bool = False
    excerpt_label: str = ""
    note: str = ""
    url: str = ""  # the story page at this language's half
    read: str = ""  # "Read more" in the reader's language
    colon: str = ": "  # before a URL in the text part: full-width in Chinese


@dataclass
class StoryView:
    id: str
    url: str  # at the reader's first language
    blocks: list[LangBlock]
    scores: list[tuple[str, int]]
    tags: list[str]

    @property
    def lead(self) -> LangBlock:
        """The block in the reader's first language the story has (the title the TOC and
        the subject use)."""
        shown = [b for b in self.blocks if b.url]  # not a "no English version" note
        return next((b for b in shown if b.title), shown[0])

    @property
    def alt(self) -> LangBlock | None:
        """A second titled block (bilingual reader, story in both): the TOC's second line."""
        titled = [b for b in self.blocks if b.title]
        return titled[1] if len(titled) > 1 else None


def _joined(langs: Sequence[str], key: str) -> str:
    return " · ".join(UI[x][key] for x in langs)


def _block(story: Story, code: str, reader: str, base_url: str) -> LangBlock:
    """The story in language `code` for a reader of `reader`: Chinese typeset as on the
    story page (full-width punctuation between Han), links at the page's `code` half."""
    def text(value: str) -> str:
        return typeset(clean(value), code)

    bullets = [b for b in (text(x) for x in story.tldr.get(code, [])) if b]
    return LangBlock(
        lang=code,
        note_lang=reader,
        title=text(story.title.get(code, "")),
        bullets=bullets[:MAX_BULLETS],
        excerpt=code in story.tldr_excerpt,
        excerpt_label=UI[reader]["excerpt"],
        url=story_url(base_url, story.id, lang_anchor(story.languages, code)),
        read=UI[reader]["read"],
        colon=UI[reader]["colon"],
    )


def shown_tags(tags: Sequence[str], langs: Sequence[str],
               aliases: Mapping[str, str] | None = None) -> list[str]:
    """Tags as a reader of `langs` sees them: an English-only reader gets a Chinese tag by
    its `[tags]` alias (a slug such as `security`) and not at all without one."""
    out: list[str] = []
    english_only = tuple(langs) == ("en",)
    for t in (clean(x) for x in tags):
        if english_only and has_cjk(t):
            t = clean((aliases or {}).get(t, ""))
            if has_cjk(t):
                t = ""
        if t and t not in out:
            out.append(t)
    return out


def story_view(story: Story, langs: Sequence[str], base_url: str,
               aliases: Mapping[str, str] | None = None) -> StoryView | None:
    """One block per reader language the story has (English first, then Chinese); a
    bilingual reader is told which language is missing. None: nothing the reader reads."""
    langs = reader_languages(langs)
    if not readable(story, langs):
        return None
    blocks = [_block(story, code, reader, base_url) if code else
              LangBlock(lang=reader, note_lang=reader, note=UI[reader]["missing"])
              for reader, code in ((x, story.text_in(x)) for x in langs)]
    labels = [" / ".join(UI[x]["scores"][i] for x in langs) for i in range(3)]
    scores = []
    if story.scores:
        scores = [(labels[i], int(story.scores.get(k, 0))) for i, k in
                  enumerate(("hot", "quality", "impact")) if k in story.scores]
    return StoryView(id=story.id, url=blocks[0].url, blocks=blocks, scores=scores,
                     tags=shown_tags(story.tags, langs, aliases))


def footer_lines(langs: Sequence[str]) -> list[dict[str, str]]:
    """The footer, one line per reader language: `Sent to ADDRESS · View online ·
    Preferences · Unsubscribe` (the address is a marker until `build_message`)."""
    return [dict(lang=x, **{k: UI[x][k] for k in ("sent_to", "view_online", "preferences",
                                                  "unsubscribe", "colon")}) for x in langs]



class Renderer(MessageWriter):
    """Templates loaded once; renders digest bodies and confirmation mails."""

    def __init__(self, base_url: str, subject_template: str, sender: str,
                 list_name: str = "daily", tag_aliases: Mapping[str, str] | None = None) -> None:
        self.html_env = mail_html_environment(EMAIL_TEMPLATES)
        self.text_env = mail_text_environment(EMAIL_TEMPLATES)
        # The templates are the package's and a Renderer lives for one run: no `stat` of
        # every template (and each include, per story) on every render to see if it changed.
        self.html_env.auto_reload = self.text_env.auto_reload = False
        self.inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.subject_template = subject_template
        self.tag_aliases = dict(tag_aliases or {})
        super().__init__(sender, list_name)

    def _html(self, name: str, ctx: dict) -> str:
        return self.inliner.inline(self.html_env.get_template(name).render(**ctx))

    def render_digest(self, stories: Sequence[Story], langs: Sequence[str], date: str,
                      digest_name: str = "", view_url: str = "") -> RenderedBody:
        """Text and HTML for these stories in these languages, under the size caps.

        Stories with no text in the reader's languages are left out. `view_url` (the web
        copy of this edition) fills the footer's "View online" slot; empty shows nothing.
        """
        langs = reader_languages(langs)
        views = [v for v in (story_view(s, langs, self.base_url, self.tag_aliases)
                             for s in stories) if v is not None]
        heading = localized_title(self.subject_template, langs)
        ui = {k: _joined(langs, k) for k in ("toc", "more")}
        html_lang = "zh" if langs == ("zh",) else "en"
        when = " · ".join(long_date(date, x) for x in langs)
        n = len(views)
        while True:
            shown = views[:n]
            ctx = dict(html_lang=html_lang, title=f"{heading} — {when}", heading=heading,
                       date=when, preheader=shorten(" · ".join(v.lead.title for v in shown), 140),
                       stories=shown, truncated=n < len(views), ui=ui, site_url=self.base_url,
                       footer=footer_lines(langs), view_url=view_url, address=ADDR_MARK,
                       unsubscribe_url=UNSUB_MARK, preferences_url=PREFS_MARK)
            html = self._html("digest.html", ctx)
            text = self.text_env.get_template("digest.txt").render(**ctx)
            if n <= 1 or (len(html.encode()) <= MAX_HTML_BYTES
                          and len(text.encode()) <= MAX_TEXT_BYTES):
                break
            n -= 1  # over the cap: drop the lowest-ranked story and say more are online
        ids = tuple(v.id for v in shown)
        lead = shown[0].lead.title if shown else ""
        subject = encode_words(subject_for(self.subject_template, langs, date, lead))
        key = f"{digest_name}\x00{date}\x00{','.join(langs)}\x00{','.join(ids)}\x00{view_url}"
        return RenderedBody(text=text, html=html, story_ids=ids, boundary=_boundary(key),
                            subject=subject, html_lang=html_lang, archived_at=view_url)

    def render_confirm(self, langs: Sequence[str], confirm_url: str) -> RenderedBody:
        langs = reader_languages(langs)
        heading = localized_title(self.subject_template, langs)
        messages = [dict(lang=x, intro=UI[x]["confirm_intro"], ignore=UI[x]["confirm_ignore"])
                    for x in langs]
        ctx = dict(html_lang="zh" if langs == ("zh",) else "en", title=heading,
                   heading=heading, preheader=_joined(langs, "confirm_intro"),
                   messages=messages, button=_joined(langs, "confirm_button"),
                   button_lang=langs[0] if len(langs) == 1 else "",
                   link_label=" / ".join(UI[x]["confirm_link"] for x in langs)
                   + UI[langs[-1]]["colon"].rstrip(),
                   link_colon=UI[langs[-1]]["colon"].rstrip(),
                   site_url=self.base_url, confirm_url=confirm_url)
        subject = encode_words(f"{_joined(langs, 'confirm_subject')} — {heading}")
        return RenderedBody(
            text=self.text_env.get_template("confirm.txt").render(**ctx),
            html=self._html("confirm.html", ctx), story_ids=(),
            boundary=_boundary("confirm\x00" + confirm_url), subject=subject,
            html_lang=ctx["html_lang"])
