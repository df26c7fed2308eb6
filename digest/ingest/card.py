"""The bilingual news-card format (seeds 001/004): header ages, scores, EN + ZH sections."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digest.errors import ParseError
from digest.ingest.limits import check_limits
from digest.ingest.text import (
    chinese_script,
    cjk_ratio,
    clean_lines,
    derive_id,
    has_cjk,
    latest_allowed,
    split_bilingual,
)
from digest.models import FAQ, Story, parse_iso

# --- header --------------------------------------------------------------------------

_UNITS = {
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "wks": 604800, "week": 604800, "weeks": 604800,
    "分钟": 60, "分鐘": 60, "小时": 3600, "小時": 3600, "天": 86400, "周": 604800, "週": 604800,
}
# Bounded quantifiers only: the header is matched against untrusted text.
_AGE = re.compile(
    r"(?P<upd>Updated\s{1,3}|更新于\s{0,3}|更新於\s{0,3})?"
    r"(?:(?P<n>\d{1,5})\s{0,2}(?P<u>minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w)"
    r"\s{1,3}ago\b"
    r"|(?P<zn>\d{1,5})\s{0,2}(?P<zu>分钟|分鐘|小时|小時|天|周|週)前"
    r"|(?P<now>just now|刚刚|剛剛))",
    re.IGNORECASE,
)
_ABS = re.compile(r"(?P<upd>Updated\s{1,3}|更新于\s{0,3})?(?P<d>\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?(?:Z|[+-]\d{2}:?\d{2})?)")
_BRAND = re.compile(r"^(AI News|AI资讯|AI資訊)\b")


def looks_like_card(first_line: str, text: str) -> bool:
    """A card opens with the brand or a relative age and has a TL;DR heading."""
    if _BRAND.match(first_line):
        return True
    return len(first_line) < 200 and _AGE.search(first_line) is not None and "\nTL;DR" in text


def header_is_relative(header: str) -> bool:
    """True when the header's times are ages ('9h ago') or absent, i.e. derived from as_of."""
    return _AGE.search(header) is not None or _ABS.search(header) is None


def resolve_header(header: str, as_of: datetime, source: str, line: int,
                   not_after: datetime | None = None) -> tuple[datetime, datetime]:
    """'9h ago Updated 2h ago 更新于 2小时前' → (published, updated), exact to as_of's second.
    An ISO date later than `not_after` (default: a day after as_of) is a ParseError."""
    latest = latest_allowed(as_of, not_after)
    as_of = as_of.replace(microsecond=0)
    published = updated = None
    for m in _AGE.finditer(header):
        if m.group("now"):
            seconds = 0
        elif m.group("n"):
            seconds = int(m.group("n")) * _UNITS[m.group("u").lower()]
        else:
            seconds = int(m.group("zn")) * _UNITS[m.group("zu")]
        try:
            when = as_of - timedelta(seconds=seconds)
        except OverflowError as e:  # '99999 weeks ago' from an as_of (mtime) near year 1
            raise ParseError(source, line, f"age {m.group(0).strip()!r} reaches back before "
                             "the year 1", "fix the age in the header, or give --as-of") from e
        if m.group("upd"):
            updated = updated or when
        else:
            published = published or when
    if published is None:
        for m in _ABS.finditer(header):
            try:
                when = parse_iso(m.group("d").replace(" ", "T"))
            except ValueError as e:
                raise ParseError(source, line, f"bad date {m.group('d')!r} in header",
                                 "write ISO 8601, e.g. 2026-11-22T09:00:00Z") from e
            if when > latest:
                raise ParseError(source, line, f"date {m.group('d')!r} in header is in the "
                                 f"future (more than a day after {as_of.isoformat()})",
                                 "fix the date; a story cannot be published after it is "
                                 "ingested")
            if m.group("upd"):
                updated = updated or when
            else:
                published = published or when
    if published is None:
        published = updated or as_of  # a header without times: the file's own time
    updated = updated or published
    return published, max(updated, published)


# --- sections ------------------------------------------------------------------------

# heading text → (kind, language or None when the content decides)
_HEADINGS = {
    "tl;dr": ("tldr", None), "tldr": ("tldr", None), "摘要": ("tldr", "zh"),
    "key data": ("key_data", "en"), "核心数据": ("key_data", "zh"), "核心數據": ("key_data", "zh"),
    "deep analysis": ("analysis", "en"), "深度解读": ("analysis", "zh"), "深度解讀": ("analysis", "zh"),
    "industry insights": ("insights", "en"), "行业启示": ("insights", "zh"), "行業啟示": ("insights", "zh"),
    "faq": ("faq", None), "常见问题": ("faq", "zh"), "常見問題": ("faq", "zh"),
}
_NAV = re.compile(r"^Analysis\s*深度分析$")
# 'Hot 热度', optionally with its number before or after on the same line.
_SCORE_LABEL = re.compile(
    r"^(?:(?P<pre>[-+.\d]{1,12})\s{1,3})?(?P<key>Hot|Quality|Impact)"
    r"(?:\s{1,3}(?:热度|熱度|质量|質量|影响力|影響力))?(?:\s{1,3}(?P<post>[-+.\d]{1,12}))?$",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^[•·●‧\-*–]\s*")
_NUMBERED = re.compile(r"^\d{1,3}\s{0,2}[.)、.]\s*")
_QUESTION = re.compile(r"^(?:Q|问|問)\s?[::]\s*")
_ANSWER = re.compile(r"^(?:A|答)\s?[::]\s*")
_STOP = re.compile(r"^(Share:|分享到:|Frequently Asked Questions)")
_DISCLAIMER = re.compile(r"^(Disclaimer:|免责声明:|免責聲明:)")


@dataclass
class _Section:
    kind: str
    lang: str | None
    line: int
    lines: list[tuple[int, str]] = field(default_factory=list)


def _heading(s: str) -> tuple[str, str | None] | None:
    return _HEADINGS.get(s.rstrip(": \uff1a").lower())


def parse_tags(s: str) -> list[str] | None:
    """'安全 安全 政策 政策' → ['安全', '政策']; None unless every tag is printed twice.

    Tags may hold spaces ('AI Safety AI Safety'): take the shortest run that repeats."""
    toks = s.split()
    if not toks or len(toks) > 200:
        return None
    out: list[str] = []
    i = 0
    while i < len(toks):
        for k in range(1, (len(toks) - i) // 2 + 1):
            if toks[i:i + k] == toks[i + k:i + 2 * k]:
                tag = " ".join(toks[i:i + k])
                if tag not in out:
                    out.append(tag)
                i += 2 * k
                break
        else:
            return None
    return out


def split_row(s: str) -> list[str]:
    """A Key Data row as the page flattened it: cells joined by single spaces.

    Tabs or runs of spaces are cell breaks when present; otherwise a space is a break
    unless it sits between two Latin/digit characters ('Mythos 5 / Fable 5' stays whole)."""
    if "\t" in s or "  " in s:
        return [c.strip() for c in re.split(r"\t|\s{2,}", s) if c.strip()]
    cells, cur = [], []
    for w in s.split(" "):
        if not w:
            continue
        if cur:
            prev = cur[-1]
            if has_cjk(prev[-1]) or has_cjk(w[0]):
                cells.append(" ".join(cur))
                cur = []
        cur.append(w)
    if cur:
        cells.append(" ".join(cur))
    return cells


def _fit_row(cells: list[str], width: int) -> list[str]:
    """Make a row as wide as the header: extra cells join the last, missing ones are ''."""
    if width and len(cells) > width:
        cells = cells[:width - 1] + [" ".join(cells[width - 1:])]
    return cells + [""] * (width - len(cells))


def _lang_of(sec: _Section) -> str:
    if sec.lang:
        return sec.lang
    sample = " ".join(t for _, t in sec.lines[:6])
    return "zh" if cjk_ratio(sample) > 0.3 else "en"


def _bad(source: str, line: int, reason: str, hint: str) -> ParseError:
    return ParseError(source, line, reason, hint)


def parse_card(text: str, source: str, as_of: datetime,
               not_after: datetime | None = None) -> Story:
    """Parse a cleaned card text (see text.clean_text) into a bilingual Story."""
    items = [(no, s) for no, s in enumerate(clean_lines(text), 1) if s]
    if len(items) < 2:
        raise _bad(source, 1, "card has a header but no title line",
                   "the line after the header holds the English then the Chinese title")
    hdr_line, header = items[0]
    published, updated = resolve_header(header, as_of, source, hdr_line, not_after)
    title_line, title_text = items[1]
    if _heading(title_text) or title_text.isdigit():
        raise _bad(source, title_line, "expected the title line after the header",
                   "put 'English title 中文标题' on the line after the header")
    en_title, zh_title = split_bilingual(title_text)

    # The summary line is optional; everything up to the first heading is summary + scores.
    idx = 2
    first_heading = next((i for i in range(idx, len(items))
                          if _heading(items[i][1]) or _NAV.match(items[i][1])), len(items))
    pre = items[idx:first_heading]
    scores, score_lines = _parse_scores(pre, source)
    summary_lines = [s for no, s in pre if no not in score_lines]
    en_summary, zh_summary = split_bilingual(" ".join(summary_lines))

    sections: list[_Section] = []
    tag_lines: list[tuple[int, str]] = []
    in_tags = False
    for no, s in items[first_heading:]:
        if _STOP.match(s):
            break
        if _DISCLAIMER.match(s):
            in_tags = True
            continue
        if in_tags:
            tag_lines.append((no, s))
            continue
        if _NAV.match(s):
            continue
        h = _heading(s)
        if h:
            sections.append(_Section(h[0], h[1], no))
        elif sections:
            sections[-1].lines.append((no, s))

    if not tag_lines and sections and sections[-1].lines:
        # No disclaimer: the last line may still be the doubled tag line.
        if parse_tags(sections[-1].lines[-1][1]) is not None:
            tag_lines = [sections[-1].lines.pop()]

    story = Story(id="", languages=[], title={}, published=published, updated=updated,
                  scores=scores, origin=source)
    langs: dict[str, None] = {}  # ordered set of "en"/"zh" seen
    for sec in sections:
        lang = _lang_of(sec)
        _fill(story, sec, lang, source)
        if sec.lines or sec.kind == "tldr":
            langs[lang] = None
    for _no, s in tag_lines:
        tags = parse_tags(s)
        if tags is None:
            tags = list(dict.fromkeys(s.split()))
        story.tags.extend(t for t in tags if t not in story.tags)

    titles = {"en": en_title, "zh": zh_title}
    summaries = {"en": en_summary, "zh": zh_summary}
    for lang in ("en", "zh"):
        if titles[lang]:
            langs.setdefault(lang, None)
    if not langs:
        raise _bad(source, title_line, "card has no title text", "write the title line")
    zh_text = " ".join([zh_title, zh_summary, *story.tldr.get("zh", [])])
    zh_code = chinese_script(zh_text) or "zh-Hans"
    code = {"en": "en", "zh": zh_code}
    order = [lang for lang in ("en", "zh") if lang in langs]
    story.languages = [code[lang] for lang in order]
    for lang in order:
        c = code[lang]
        story.title[c] = titles[lang] or titles["en" if lang == "zh" else "zh"]
        if summaries[lang]:
            story.summary[c] = summaries[lang]
        for attr in ("tldr", "key_data", "analysis", "insights", "faq"):
            d = getattr(story, attr)
            if lang in d:
                d[c] = d.pop(lang)
    story.id = derive_id(source, story.title[story.languages[0]])
    where = {"title": title_line, "summary": pre[0][0] if pre else title_line,
             "tags": tag_lines[0][0] if tag_lines else hdr_line}
    for sec in reversed(sections):
        where[sec.kind] = sec.line  # the first section of each kind
    check_limits(story, source, lambda part: where.get(part, hdr_line))
    return story


def _parse_scores(pre: list[tuple[int, str]], source: str) -> tuple[dict[str, int] | None, set[int]]:
    """Numbers on the line before 'Hot 热度' / 'Quality 质量' / 'Impact 影响力'."""
    scores: dict[str, int] = {}
    used: set[int] = set()
    last = 0
    for i, (no, s) in enumerate(pre):
        m = _SCORE_LABEL.match(s)
        if not m:
            continue
        key = m.group("key").lower()
        # The number sits on the line before the label, or on the label line itself.
        inline = m.group("pre") or m.group("post")
        if inline and re.fullmatch(r"-?\d+(?:\.\d+)?", inline):
            raw, raw_no = inline, no
        elif i > 0 and pre[i - 1][0] not in used:
            raw_no, raw = pre[i - 1]
        else:
            raise _bad(source, no, f"score {key!r} has no number before it",
                       "put the score (0-100) on the line above the label")
        if key in scores:
            raise _bad(source, no, f"score {key!r} given twice", "keep one of them")
        if not re.fullmatch(r"\d{1,3}", raw) or int(raw) > 100:
            shown = raw if len(raw) <= 40 else raw[:40] + "…"
            raise _bad(source, raw_no, f"score {key!r} must be a whole number 0-100, got {shown!r}",
                       "scores are integers from 0 to 100")
        scores[key] = int(raw)
        used.update({no, raw_no})
        last = no
    if not scores:
        return None, used
    missing = [k for k in ("hot", "quality", "impact") if k not in scores]
    if missing:
        raise _bad(source, last, f"score block lacks {', '.join(missing)}",
                   "give all three of Hot, Quality and Impact, or none")
    return scores, used


def _fill(story: Story, sec: _Section, lang: str, source: str) -> None:
    lines = sec.lines
    if sec.kind == "tldr":
        bullets: list[str] = []
        for _no, s in lines:
            if _BULLET.match(s):
                bullets.append(_BULLET.sub("", s, count=1))
            elif bullets:
                bullets[-1] += " " + s  # a bullet wrapped onto the next line
        if not bullets:
            raise _bad(source, sec.line, "TL;DR heading has no bullets",
                       "list the points as lines starting with '•'")
        story.tldr.setdefault(lang, []).extend(bullets)
    elif sec.kind == "key_data":
        if not lines:
            return
        rows = [split_row(s) for _, s in lines]
        existing = story.key_data.setdefault(lang, [])
        width = len(existing[0]) if existing else len(rows[0])
        existing.extend(_fit_row(r, width) for r in rows)
    elif sec.kind == "analysis":
        story.analysis.setdefault(lang, []).extend(s for _, s in lines)
    elif sec.kind == "insights":
        items: list[str] = []
        for _no, s in lines:
            if _NUMBERED.match(s) or not items:
                items.append(_NUMBERED.sub("", s, count=1))
            else:
                items[-1] += " " + s
        story.insights.setdefault(lang, []).extend(items)
    elif sec.kind == "faq":
        pairs: list[FAQ] = []
        q_line = 0
        for no, s in lines:
            if _QUESTION.match(s):
                if pairs and not pairs[-1].a:
                    raise _bad(source, q_line, "FAQ question has no answer",
                               "follow each 'Q:' line with an 'A:' line")
                pairs.append(FAQ(q=_QUESTION.sub("", s, count=1), a=""))
                q_line = no
            elif _ANSWER.match(s) and pairs and not pairs[-1].a:
                pairs[-1].a = _ANSWER.sub("", s, count=1)
            elif pairs and pairs[-1].a:
                pairs[-1].a += " " + s  # a long answer wrapped onto the next line
            elif pairs:
                pairs[-1].q += " " + s
            else:
                raise _bad(source, no, "FAQ text before the first 'Q:'",
                           "start each question with 'Q:' and each answer with 'A:'")
        if pairs and not pairs[-1].a:
            raise _bad(source, q_line, "FAQ question has no answer",
                       "follow each 'Q:' line with an 'A:' line")
        story.faq.setdefault(lang, []).extend(pairs)
