"""Render digest / confirmation emails to message bytes (owns css_inline; the Jinja2
environments come from digest.templating); pure apart from reading the templates once.

Language rules (issue 13): a reader sees only the languages they chose. A story with no
text in any of them is left out (planning already skips it; rendering re-checks for
resends); UI labels, dates and the footer are in the reader's languages; an English-only
reader sees tags by their English `[tags]` alias (a CJK tag without one is not shown);
every link lands on the story page at the half in the block's language (`#en` / `#zh`).
"""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime
from email.utils import format_datetime, formataddr, parseaddr

import css_inline

from digest.models import Story, feed_language
from digest.publish.site import lang_anchor, story_path, typeset
from digest.resources import EMAIL_TEMPLATES
from digest.subscribers import InvalidAddress, normalize_email
from digest.templating import mail_html_environment, mail_text_environment

__all__ = ["InvalidAddress", "normalize_email"]  # re-exported: addresses are checked here too

READER_LANGUAGES = ("en", "zh")  # the order blocks appear in: English, then Chinese
# Gmail clips at ~102 KB; the budget is 80 KB for the HTML part as sent, so the
# rendered body (links still markers) stays a little under that.
MAX_HTML_BYTES = 78_000
MAX_TEXT_BYTES = 60_000
MAX_BULLETS = 3  # TL;DR lines per language block; the story page has the rest
SUBJECT_WIDTH = 78  # display columns (a CJK character takes two) of the decoded subject
# Per-subscriber values are spliced into a body rendered once per distinct content.
# They are plain ASCII, survive autoescaping and CSS inlining, and `clean` defuses them in
# story text, so a story cannot plant a marker.
UNSUB_MARK = "%%DIGEST-UNSUBSCRIBE-URL%%"
PREFS_MARK = "%%DIGEST-PREFERENCES-URL%%"
ADDR_MARK = "%%DIGEST-RECIPIENT%%"

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_NEWLINES = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")
_TRAILING_PUNCT = re.compile(r"[\s,.;:·—\-,、。:;]+$")
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")

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
_EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")
_EN_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ZH_DAYS = "一二三四五六日"


# --- small pure helpers ---------------------------------------------------------------------


_MARKER_PREFIX = re.compile(r"%{2,}(?=DIGEST-)")


def clean(text: str) -> str:
    """Untrusted story text → one safe line: no control characters, no line breaks."""
    text = _NEWLINES.sub(" ", _CTRL.sub("", text or "")).strip()
    # Story text can never forge a link marker: collapse any run of %s before DIGEST-
    # (a single replace would turn "%%%DIGEST-" back into "%%DIGEST-").
    return _MARKER_PREFIX.sub("%", text)


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def reader_languages(langs: Sequence[str]) -> tuple[str, ...]:
    """Subscriber languages in block order, restricted to en/zh (zh-Hans → zh)."""
    chosen = {feed_language(x.strip()) for x in langs if x and x.strip()}
    out = tuple(x for x in READER_LANGUAGES if x in chosen)
    return out or READER_LANGUAGES


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


def sender_parts(sender: str) -> tuple[str, str]:
    """`AI News <digest@example.com>` → (display name, address); validates the address."""
    if any(c in sender for c in "\r\n"):
        raise InvalidAddress("[smtp] sender: line breaks are not allowed",
                             'set sender = "Name <address@example.com>" in config.toml')
    name, addr = parseaddr(sender)
    return clean(name), normalize_email(addr, "[smtp] sender", local_ok=True)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def message_id(digest: str, edition: str, email: str, domain: str) -> str:
    """Deterministic per (digest, edition, subscriber): a resend is recognisably the same."""
    h = hashlib.sha256(f"{digest}\x00{edition}\x00{email}".encode()).hexdigest()[:32]
    return f"<{h}@{domain}>"


def encode_words(text: str, limit_bytes: int = 42) -> str:
    """RFC 2047 B-encoding split on character boundaries; every encoded word ≤ 75 chars.

    42 UTF-8 bytes → 56 base64 chars → 68-char words, so even `Subject: ` + the first word
    stays within 78 columns. Python's own folding can emit 76-char words for CJK text.
    """
    text = clean(text)
    # ASCII goes as is, unless it looks like an encoded word (a story title in the subject
    # must not be decoded by the client into something else).
    if text.isascii() and len(text) <= 900 and "=?" not in text:
        return text
    words, chunk, size = [], [], 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > limit_bytes and chunk:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    if chunk:
        words.append("".join(chunk))
    encoded = (base64.b64encode(w.encode("utf-8")).decode("ascii") for w in words)
    return "\r\n ".join(f"=?utf-8?b?{e}?=" for e in encoded)


def display_width(text: str) -> int:
    """Columns a mail client's list gives `text`: wide (CJK) characters count two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def shorten(text: str, width: int) -> str:
    """`text` cut to at most `width` display columns, with `…` when cut."""
    if display_width(text) <= width:
        return text
    out, used = [], 1  # room for the ellipsis
    for c in text:
        w = display_width(c)
        if used + w > width:
            break
        out.append(c)
        used += w
    return _TRAILING_PUNCT.sub("", "".join(out)) + "…"


def long_date(iso_date: str, lang: str) -> str:
    """The edition date for people: `Sunday, 22 November 2026` / `11月22日 周日`."""
    try:
        d = Date.fromisoformat(iso_date)
    except ValueError:
        return clean(iso_date)
    if lang == "zh":
        return f"{d.month}月{d.day}日 周{_ZH_DAYS[d.weekday()]}"
    return f"{_EN_DAYS[d.weekday()]}, {d.day} {_EN_MONTHS[d.month - 1]} {d.year}"


def _date_suffix(template: str) -> tuple[str, str]:
    """Split `AI News Daily · AI资讯日报 — {date}` into title and ` — {date}`."""
    m = re.search(r"\s*[—–\-:|]?\s*\{date\}\s*$", template)
    if m:
        return template[: m.start()], template[m.start():]
    return template, ""


def _fill(template: str, date: str) -> str:
    """`{date}` → date and `{{`/`}}` → a literal brace, as str.format would (config allows no
    other placeholder; anything unparsable is kept as written)."""
    try:
        return "".join(lit + (date if f is not None else "")
                       for lit, f, _spec, _conv in string.Formatter().parse(template))
    except ValueError:
        return template


def localized_title(template: str, langs: Sequence[str]) -> str:
    """Keep the ` · `-separated parts of the title in the reader's languages."""
    title, _ = _date_suffix(template)
    title = _fill(title, "").strip()
    parts = [p.strip() for p in title.split("·") if p.strip()]
    langs = reader_languages(langs)
    if len(parts) < 2 or len(langs) == 2:
        return " · ".join(parts) or title
    want_zh = langs == ("zh",)
    kept = [p for p in parts if has_cjk(p) == want_zh]
    return " · ".join(kept or parts)


def subject_for(template: str, langs: Sequence[str], date: str, lead: str = "") -> str:
    """The subject in the reader's languages, dated: the config's title and date, led by
    the lead story's title (`lead`, in the reader's language) cut so the whole subject fits
    SUBJECT_WIDTH display columns: `China may have accessed Mythos | AI News Daily — 2026-…`."""
    _, suffix = _date_suffix(template)
    base = clean(localized_title(template, langs) + _fill(suffix, date))
    lead = clean(lead)
    if not lead:
        return base
    room = max(24, SUBJECT_WIDTH - display_width(base) - 3)
    return f"{shorten(lead, room)} | {base}"


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


@dataclass(frozen=True)
class RenderedBody:
    """One digest body shared by every subscriber with the same content; per-subscriber
    links and the address are markers until `build_message`."""

    text: str
    html: str
    story_ids: tuple[str, ...]
    boundary: str
    subject: str  # already RFC 2047-encoded
    html_lang: str
    archived_at: str = ""  # the public copy (`view_url`): the Archived-At header (RFC 5064)
    # Per part: the base64 lines of its text up to the first per-subscriber marker, cut at
    # a whole line (57 bytes → 76 chars), so each message encodes only the tail; and
    # "prepared": the recipient-independent header pieces as bytes. Filled by the first
    # build_message; the bytes equal building the whole message every time.
    encoded: dict[str, tuple] = field(default_factory=dict, compare=False, repr=False)


def _boundary(key: str) -> str:
    # "=_" never occurs in base64 bodies, so the boundary cannot collide with content.
    return "==_digest_" + hashlib.sha256(key.encode()).hexdigest()[:24]


class Renderer:
    """Templates loaded once; renders digest bodies and confirmation mails."""

    def __init__(self, base_url: str, subject_template: str, sender: str,
                 list_name: str = "daily", tag_aliases: Mapping[str, str] | None = None) -> None:
        self.html_env = mail_html_environment(EMAIL_TEMPLATES)
        self.text_env = mail_text_environment(EMAIL_TEMPLATES)
        self.inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.subject_template = subject_template
        self.tag_aliases = dict(tag_aliases or {})
        name, addr = sender_parts(sender)
        self.sender_addr = addr
        self.domain = domain_of(addr)
        self.from_header = formataddr((name, addr), charset="utf-8") if name else addr
        if any(c in self.from_header for c in "\r\n"):
            raise InvalidAddress("[smtp] sender: cannot be encoded", "simplify the display name")
        slug = re.sub(r"[^a-z0-9-]+", "-", list_name.lower()).strip("-")[:40] or "digest"
        self.list_id = f"{slug} <{slug}.{self.domain}>"
        self._date: tuple[datetime | None, str] = (None, "")

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

    def build_message(self, body: RenderedBody, to: str, msg_id: str, date: datetime,
                      unsubscribe_url: str = "", preferences_url: str = "",
                      unsubscribe_mailto: str = "") -> bytes:
        """The full RFC 5322 message (CRLF line ends): headers as bytes around the body.

        `to` must already be validated (normalize_email); the URLs are built from our own
        base_url and URL-safe tokens, so nothing untrusted reaches a header.
        `unsubscribe_mailto` (`addr?subject=…`, the signed VERP address of mail/verp.py)
        replaces the sender's address in List-Unsubscribe's mailto.
        """
        mailto = unsubscribe_mailto or f"{self.sender_addr}?subject=unsubscribe"
        if any(c in to for c in "\r\n<>,;") or any(c in unsubscribe_url + mailto
                                                   for c in "\r\n<> "):
            raise InvalidAddress(f"refusing unsafe header value for {to[:80]!r}",
                                 "validate addresses with normalize_email first")
        url = body.archived_at
        archived = bool(url and url.isascii() and not any(c in url for c in "\r\n<> "))
        key = (self.from_header, self.list_id, date)
        pre = body.encoded.get("prepared")
        if pre is None or pre[0] != key:  # recipient-independent pieces, once per body
            if self._date[0] != date:  # one run stamps every message with the same time
                self._date = (date, format_datetime(date))
            b = body.boundary
            lead = f"From: {self.from_header}\r\nTo: ".encode("ascii")
            mid_part = f"\r\nSubject: {body.subject}\r\nDate: {self._date[1]}\r\nMessage-ID: " \
                .encode("ascii")
            after = f"\r\nArchived-At: <{url}>" if archived else ""  # RFC 5064: the web copy
            mime = (f"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; "
                    f'boundary="{b}"\r\n\r\nThis is a multi-part message in MIME format.\r\n')
            listed = (f"{after}\r\nList-Id: {self.list_id}\r\nList-Unsubscribe: <").encode("ascii")
            tail = ("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                    "Precedence: bulk\r\nAuto-Submitted: auto-generated" + mime).encode("ascii")
            pre = body.encoded["prepared"] = (key, lead, mid_part, listed, tail,
                                              (after + mime).encode("ascii"),
                                              f"--{b}--\r\n".encode("ascii"))
        _, lead, mid_part, listed, tail, plain, end = pre
        if unsubscribe_url:
            head = [lead, to.encode("ascii"), mid_part, msg_id.encode("ascii"), listed,
                    unsubscribe_url.encode("ascii"), b">,\r\n <mailto:", mailto.encode("ascii"),
                    b">", tail]
        else:
            head = [lead, to.encode("ascii"), mid_part, msg_id.encode("ascii"), plain]
        # An address may hold `&` or `'` (dot-atom); the HTML part gets it escaped.
        return b"".join((
            *head,
            *_part(body, "text/plain", body.text, (unsubscribe_url, preferences_url, to)),
            *_part(body, "text/html", body.html,
                   (unsubscribe_url, preferences_url, html_lib.escape(to))),
            end,
        ))


def personalize(content: str, unsubscribe_url: str, preferences_url: str, address: str) -> str:
    """Replace the per-subscriber markers (`address` already escaped for the part)."""
    return (content.replace(UNSUB_MARK, unsubscribe_url).replace(PREFS_MARK, preferences_url)
            .replace(ADDR_MARK, address))


_LINE = 57  # bytes per 76-character base64 line (RFC 2045)
_MARKS = (UNSUB_MARK, PREFS_MARK, ADDR_MARK)


def _b64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"\r\n".join([encoded[i:i + 76] for i in range(0, len(encoded), 76)])


def _part(body: RenderedBody, ctype: str, content: str, links: tuple[str, str, str]
          ) -> tuple[bytes, bytes, bytes]:
    """One base64 MIME part with the subscriber's links and address spliced in, as pieces
    to join: the cached head (boundary, part headers, shared lines), the encoded tail, the
    line end."""
    cached = body.encoded.get(ctype)
    if cached is None:
        marks = [i for i in (content.find(m) for m in _MARKS) if i >= 0]
        first = min(marks, default=len(content))
        head = content[:first].encode("utf-8")
        cut = len(head) // _LINE * _LINE
        prefix = (f"--{body.boundary}\r\nContent-Type: {ctype}; charset=\"utf-8\"\r\n"
                  f"Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii")
        shared = _b64_lines(head[:cut])
        cached = body.encoded[ctype] = (prefix + shared + b"\r\n" if shared else prefix,
                                        head[cut:], content[first:], bool(shared))
    start, carry, tail, shared_lines = cached
    rest = _b64_lines(carry + personalize(tail, *links).encode("utf-8"))
    if rest:
        return start, rest, b"\r\n"
    return start, b"", b"" if shared_lines else b"\r\n"
