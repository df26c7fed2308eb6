"""Render digest / confirmation emails to message bytes (owns css_inline; the Jinja2
environments come from digest.templating); pure apart from reading the templates once."""

from __future__ import annotations

import base64
import hashlib
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, formataddr, parseaddr

import css_inline

from digest.models import Story, feed_language
from digest.publish.site import story_path
from digest.resources import EMAIL_TEMPLATES
from digest.subscribers import InvalidAddress, normalize_email
from digest.templating import mail_html_environment, mail_text_environment

__all__ = ["InvalidAddress", "normalize_email"]  # re-exported: addresses are checked here too

READER_LANGUAGES = ("en", "zh")  # the order blocks appear in: English, then Chinese
MAX_HTML_BYTES = 90_000  # Gmail clips at ~102 KB; leave room for headers and encoding
MAX_TEXT_BYTES = 60_000
# Per-subscriber values are spliced into a body rendered once per distinct content.
# They are plain ASCII, survive autoescaping and CSS inlining, and `clean` defuses them in
# story text, so a story cannot plant a marker.
UNSUB_MARK = "%%DIGEST-UNSUBSCRIBE-URL%%"
PREFS_MARK = "%%DIGEST-PREFERENCES-URL%%"

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_NEWLINES = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")

UI = {
    "en": {
        "read": "Read the story",
        "more": "More stories are on the site:",
        "why": "You receive this digest because you subscribed to it.",
        "preferences": "Preferences",
        "unsubscribe": "Unsubscribe",
        "excerpt": "Excerpt from the article (no TL;DR was given)",
        "fallback": "Not available in English; shown in Chinese",
        "missing": "No English version yet",
        "scores": ("Hot", "Quality", "Impact"),
        "confirm_intro": "Please confirm your subscription to this digest.",
        "confirm_button": "Confirm my subscription",
        "confirm_ignore": "If you did not ask for this, ignore this email; nothing will be sent.",
        "confirm_subject": "Confirm your subscription",
    },
    "zh": {
        "read": "阅读全文",
        "more": "更多资讯请访问:",
        "why": "你收到这封邮件,是因为订阅了本摘要。",
        "preferences": "偏好设置",
        "unsubscribe": "退订",
        "excerpt": "摘自原文(原文未提供要点)",
        "fallback": "暂无中文版,以下为英文内容",
        "missing": "暂无中文版",
        "scores": ("热度", "质量", "影响力"),
        "confirm_intro": "请确认订阅本摘要。",
        "confirm_button": "确认订阅",
        "confirm_ignore": "如果这不是你本人的操作,请忽略此邮件,我们不会再发送任何内容。",
        "confirm_subject": "请确认订阅",
    },
}


# --- small pure helpers ---------------------------------------------------------------------


_MARKER_PREFIX = re.compile(r"%{2,}(?=DIGEST-)")


def clean(text: str) -> str:
    """Untrusted story text → one safe line: no control characters, no line breaks."""
    text = _NEWLINES.sub(" ", _CTRL.sub("", text or "")).strip()
    # Story text can never forge a link marker: collapse any run of %s before DIGEST-
    # (a single replace would turn "%%%DIGEST-" back into "%%DIGEST-").
    return _MARKER_PREFIX.sub("%", text)


def reader_languages(langs: Sequence[str]) -> tuple[str, ...]:
    """Subscriber languages in block order, restricted to en/zh (zh-Hans → zh)."""
    chosen = {feed_language(x.strip()) for x in langs if x and x.strip()}
    out = tuple(x for x in READER_LANGUAGES if x in chosen)
    return out or READER_LANGUAGES


def story_url(base_url: str, story_id: str) -> str:
    """The public page of a story, at the path the site builder writes it to."""
    return f"{base_url.rstrip('/')}/{story_path(story_id)}"


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
    if text.isascii() and len(text) <= 900:
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
    kept = [p for p in parts if bool(_CJK.search(p)) == want_zh]
    return " · ".join(kept or parts)


def subject_for(template: str, langs: Sequence[str], date: str) -> str:
    """The subject in the reader's languages, dated; from config only, never from stories."""
    _, suffix = _date_suffix(template)
    return clean(localized_title(template, langs) + _fill(suffix, date))


# --- rendering ------------------------------------------------------------------------------


@dataclass
class LangBlock:
    lang: str  # BCP 47 code of the text shown
    note_lang: str  # language of the note / labels
    title: str = ""
    bullets: list[str] = field(default_factory=list)
    excerpt: bool = False
    excerpt_label: str = ""
    note: str = ""


@dataclass
class StoryView:
    id: str
    url: str
    blocks: list[LangBlock]
    scores: list[tuple[str, int]]
    tags: list[str]


def _joined(langs: Sequence[str], key: str) -> str:
    return " · ".join(UI[x][key] for x in langs)


def _block(story: Story, code: str, reader: str) -> LangBlock:
    return LangBlock(
        lang=code,
        note_lang=reader,
        title=clean(story.title.get(code, "")),
        bullets=[clean(b) for b in story.tldr.get(code, []) if clean(b)],
        excerpt=code in story.tldr_excerpt,
        excerpt_label=UI[reader]["excerpt"],
    )


def story_view(story: Story, langs: Sequence[str], base_url: str) -> StoryView:
    """English block then Chinese block; a language the story lacks falls back, saying so."""
    blocks: list[LangBlock] = []
    missing: list[str] = []
    for reader in langs:
        code = story.text_in(reader)
        if code:
            blocks.append(_block(story, code, reader))
        else:
            missing.append(reader)
    if not blocks:  # none of the reader's languages: show the story's own, labelled
        reader = langs[0]
        b = _block(story, story.languages[0], reader)
        b.note = UI[reader]["fallback"]
        blocks.append(b)
    else:
        for reader in missing:
            blocks.append(LangBlock(lang=reader, note_lang=reader, note=UI[reader]["missing"]))
    labels = [" / ".join(UI[x]["scores"][i] for x in langs) for i in range(3)]
    scores = []
    if story.scores:
        scores = [(labels[i], int(story.scores.get(k, 0))) for i, k in
                  enumerate(("hot", "quality", "impact")) if k in story.scores]
    return StoryView(id=story.id, url=story_url(base_url, story.id), blocks=blocks,
                     scores=scores, tags=[clean(t) for t in story.tags if clean(t)])


@dataclass(frozen=True)
class RenderedBody:
    """One digest body shared by every subscriber with the same content; per-subscriber
    links are markers until `build_message`."""

    text: str
    html: str
    story_ids: tuple[str, ...]
    boundary: str
    subject: str  # already RFC 2047-encoded
    html_lang: str
    # Per part: the base64 lines of its text up to the first per-subscriber marker, cut at
    # a whole line (57 bytes → 76 chars), so each message encodes only the tail. Filled by
    # the first build_message; the bytes equal encoding the whole part every time.
    encoded: dict[str, tuple[bytes, bytes, str]] = field(default_factory=dict, compare=False,
                                                          repr=False)


def _boundary(key: str) -> str:
    # "=_" never occurs in base64 bodies, so the boundary cannot collide with content.
    return "==_digest_" + hashlib.sha256(key.encode()).hexdigest()[:24]


class Renderer:
    """Templates loaded once; renders digest bodies and confirmation mails."""

    def __init__(self, base_url: str, subject_template: str, sender: str,
                 list_name: str = "daily") -> None:
        self.html_env = mail_html_environment(EMAIL_TEMPLATES)
        self.text_env = mail_text_environment(EMAIL_TEMPLATES)
        self.inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.subject_template = subject_template
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
                      digest_name: str = "") -> RenderedBody:
        """Text and HTML for these stories in these languages, under the size caps."""
        langs = reader_languages(langs)
        views = [story_view(s, langs, self.base_url) for s in stories]
        heading = localized_title(self.subject_template, langs)
        ui = {k: _joined(langs, k) for k in ("read", "more", "why", "preferences", "unsubscribe")}
        html_lang = "zh" if langs == ("zh",) else "en"
        n = len(views)
        while True:
            shown = views[:n]
            titles = [b.title for v in shown for b in v.blocks if b.title]
            ctx = dict(html_lang=html_lang, title=heading, heading=heading, date=date,
                       preheader=clean(" · ".join(titles))[:140], stories=shown,
                       truncated=n < len(views), ui=ui, site_url=self.base_url,
                       unsubscribe_url=UNSUB_MARK, preferences_url=PREFS_MARK)
            html = self._html("digest.html", ctx)
            text = self.text_env.get_template("digest.txt").render(**ctx)
            if n <= 1 or (len(html.encode()) <= MAX_HTML_BYTES
                          and len(text.encode()) <= MAX_TEXT_BYTES):
                break
            n -= 1  # over the cap: drop the lowest-ranked story and say more are online
        ids = tuple(v.id for v in shown)
        subject = encode_words(subject_for(self.subject_template, langs, date))
        key = f"{digest_name}\x00{date}\x00{','.join(langs)}\x00{','.join(ids)}"
        return RenderedBody(text=text, html=html, story_ids=ids, boundary=_boundary(key),
                            subject=subject, html_lang=html_lang)

    def render_confirm(self, langs: Sequence[str], confirm_url: str) -> RenderedBody:
        langs = reader_languages(langs)
        heading = localized_title(self.subject_template, langs)
        messages = [dict(lang=x, intro=UI[x]["confirm_intro"], button=UI[x]["confirm_button"],
                         ignore=UI[x]["confirm_ignore"]) for x in langs]
        ctx = dict(html_lang="zh" if langs == ("zh",) else "en", title=heading,
                   heading=heading, preheader=_joined(langs, "confirm_intro"),
                   messages=messages, site_url=self.base_url, confirm_url=confirm_url)
        subject = encode_words(f"{_joined(langs, 'confirm_subject')} — {heading}")
        return RenderedBody(
            text=self.text_env.get_template("confirm.txt").render(**ctx),
            html=self._html("confirm.html", ctx), story_ids=(),
            boundary=_boundary("confirm\x00" + confirm_url), subject=subject,
            html_lang=ctx["html_lang"])

    def build_message(self, body: RenderedBody, to: str, msg_id: str, date: datetime,
                      unsubscribe_url: str = "", preferences_url: str = "") -> bytes:
        """The full RFC 5322 message (CRLF line ends): headers as bytes around the body.

        `to` must already be validated (normalize_email); the URLs are built from our own
        base_url and URL-safe tokens, so nothing untrusted reaches a header.
        """
        if any(c in to for c in "\r\n<>,;") or any(c in unsubscribe_url for c in "\r\n<> "):
            raise InvalidAddress(f"refusing unsafe header value for {to[:80]!r}",
                                 "validate addresses with normalize_email first")
        links = (unsubscribe_url, preferences_url)
        if self._date[0] != date:  # one run stamps every message with the same time
            self._date = (date, format_datetime(date))
        head = [
            f"From: {self.from_header}",
            f"To: {to}",
            f"Subject: {body.subject}",
            f"Date: {self._date[1]}",
            f"Message-ID: {msg_id}",
        ]
        if unsubscribe_url:
            head += [
                f"List-Id: {self.list_id}",
                f"List-Unsubscribe: <{unsubscribe_url}>,\r\n"
                f" <mailto:{self.sender_addr}?subject=unsubscribe>",
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                "Precedence: bulk",
                "Auto-Submitted: auto-generated",
            ]
        b = body.boundary
        head += ["MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{b}"']
        return b"".join((
            "\r\n".join(head).encode("ascii"),
            b"\r\n\r\nThis is a multi-part message in MIME format.\r\n",
            _part(body, "text/plain", body.text, links),
            _part(body, "text/html", body.html, links),
            f"--{b}--\r\n".encode("ascii"),
        ))


_LINE = 57  # bytes per 76-character base64 line (RFC 2045)


def _b64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"\r\n".join([encoded[i:i + 76] for i in range(0, len(encoded), 76)])


def _part(body: RenderedBody, ctype: str, content: str, links: tuple[str, str]) -> bytes:
    """One base64 MIME part with the subscriber's links spliced in for the markers."""
    cached = body.encoded.get(ctype)
    if cached is None:
        marks = [i for i in (content.find(UNSUB_MARK), content.find(PREFS_MARK)) if i >= 0]
        first = min(marks, default=len(content))
        head = content[:first].encode("utf-8")
        cut = len(head) // _LINE * _LINE
        cached = body.encoded[ctype] = (_b64_lines(head[:cut]), head[cut:], content[first:])
    shared, carry, tail = cached
    tail = tail.replace(UNSUB_MARK, links[0]).replace(PREFS_MARK, links[1])
    lines = b"\r\n".join([x for x in (shared, _b64_lines(carry + tail.encode("utf-8"))) if x])
    return (f"--{body.boundary}\r\nContent-Type: {ctype}; charset=\"utf-8\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii") + lines + b"\r\n"
