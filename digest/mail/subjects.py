"""Subject and header text: `clean`, reader languages, RFC 2047 `encode_words`, display
widths, localized titles and dates, `subject_for`; pure, no templates."""

from __future__ import annotations

import base64
import re
import string
import unicodedata
from collections.abc import Sequence
from datetime import date as Date

from digest.models import feed_language

READER_LANGUAGES = ("en", "zh")  # the order blocks appear in: English, then Chinese
SUBJECT_WIDTH = 78  # display columns (a CJK character takes two) of the decoded subject

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_NEWLINES = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")
_TRAILING_PUNCT = re.compile(r"[\s,.;:·—\-,、。:;]+$")
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
_EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")
_EN_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ZH_DAYS = "一二三四五六日"


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
