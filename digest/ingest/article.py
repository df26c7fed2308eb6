"""The plain article format (seed 003): title line, paragraphs, source line, boilerplate."""

from __future__ import annotations

import re
from datetime import datetime

from digest.errors import ParseError
from digest.ingest.limits import check_limits
from digest.ingest.text import chinese_script, cjk_ratio, clean_lines, derive_id
from digest.models import Block, Story

_IMAGE = re.compile(r"^!\[[^\]]{0,500}\]\([^)]{0,2000}\)$")
_MARKER = re.compile(r"^\d{1,2}$")  # '01', '02': section numbers printed on their own line
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_SOURCE = re.compile(r"^(?:來源|来源|Source)\s?[::]\s*(.{1,80})$", re.IGNORECASE)
# Where the article ends and the hosting platform's text begins.
_BOILERPLATE = re.compile(
    r"^(?:\*\s*本文不代表|\*?\s*本文(?:系|为|為)?转载|特別聲明|特别声明|免责声明|免責聲明"
    r"|责任编辑|責任編輯|Notice:\s*The content above)"
)
_SENTENCE_END = re.compile(r"(?<=[。!?!?])|(?<=[.!?])\s+(?=\S)")
_CLAUSE_PUNCT = ",\uff0c \u3001"  # comma, full-width comma, space, ideographic comma
MAX_TITLE = 300
MAX_SENTENCE = 120


def _excerpt(paragraphs: list[str], cjk: bool) -> list[str]:
    """Lead sentences for a derived TL;DR: two or three, each at most ~120 characters."""
    out: list[str] = []
    total = 0
    for para in paragraphs:
        # Bound the work on a pathological one-line file: lead sentences are near the start.
        for sent in _SENTENCE_END.split(para[:4000]):
            sent = sent.strip()
            if len(sent) < (6 if cjk else 20):
                continue
            if len(sent) > MAX_SENTENCE:
                cut = sent[: MAX_SENTENCE - 1]
                # Prefer ending at a clause break so the excerpt still reads.
                brk = max(cut.rfind(","), cut.rfind(","), cut.rfind(" "), cut.rfind("、"))
                sent = (cut[:brk] if brk > MAX_SENTENCE // 2 else cut).rstrip(_CLAUSE_PUNCT) + "…"
            out.append(sent)
            total += len(sent)
            if len(out) == 3 or (len(out) >= 2 and total >= 150):
                return out
    return out


def looks_like_article(lines: list[str]) -> tuple[bool, str]:
    """(True, '') when the text reads as title + paragraphs, else (False, why not)."""
    if not lines:
        return False, "no text"
    first = lines[0]
    if first.startswith("<"):
        return False, "looks like HTML/XML markup"
    if len(first) > MAX_TITLE:
        return False, f"first line is {len(first)} characters, too long for a title"
    if not any(ch.isalpha() for ch in first):
        return False, "first line has no words to use as a title"
    body = [s for s in lines[1:] if not _IMAGE.match(s) and any(ch.isalpha() for ch in s)]
    if not body:
        return False, "a title line with no paragraphs after it"
    return True, ""


def parse_article(text: str, source: str, as_of: datetime) -> Story:
    """Parse a cleaned plain article into a one-language Story with an excerpt TL;DR."""
    items = [(no, s) for no, s in enumerate(clean_lines(text), 1) if s]
    ok, why = looks_like_article([s for _, s in items])
    if not ok:
        raise ParseError(source, items[0][0] if items else 1, f"unknown layout: {why}",
                         "expected a news card (header 'AI News … 9h ago'), an article "
                         "(title line, then paragraphs) or a JSON story")
    title_line, title = items[0]
    if m := _MD_HEADING.match(title):
        title = m.group(2).strip()
    blocks: list[Block] = []
    source_name: str | None = None
    pending_marker: str | None = None
    for _no, s in items[1:]:
        if _IMAGE.match(s):
            continue
        if m := _SOURCE.match(s):
            source_name = m.group(1).strip()
            if blocks:
                break  # at the end, everything after the attribution is the host's promotions
            continue  # a byline above the text
        if _BOILERPLATE.match(s):
            break
        if pending_marker is not None:
            # '01' then '2026,事情越來越失控了': the next line is the section's heading.
            blocks.append(Block("h", f"{pending_marker} {s}"))
            pending_marker = None
            continue
        if _MARKER.match(s):
            pending_marker = s
            continue
        if m := _MD_HEADING.match(s):
            blocks.append(Block("h", m.group(2).strip()))
            continue
        blocks.append(Block("p", s))
    if pending_marker is not None:
        blocks.append(Block("h", pending_marker))
    if not any(b.kind == "p" for b in blocks):
        raise ParseError(source, title_line, "article has a title but no paragraphs",
                         "put the article text on the lines after the title")

    sample = title + " " + " ".join(b.text for b in blocks[:40])
    cjk = cjk_ratio(sample) > 0.3
    lang = (chinese_script(sample) or "zh-Hans") if cjk else "en"
    tldr = _excerpt([b.text for b in blocks if b.kind == "p"], cjk)
    joiner = "" if cjk else " "
    story = Story(
        id=derive_id(source, title),
        languages=[lang],
        title={lang: title},
        published=as_of.replace(microsecond=0),
        updated=as_of.replace(microsecond=0),
        summary={lang: joiner.join(tldr)} if tldr else {},
        tldr={lang: tldr} if tldr else {},
        tldr_excerpt=[lang] if tldr else [],
        scores=None,
        body={lang: blocks},
        source=source_name,
        origin=source,
    )
    check_limits(story, source, lambda _part: title_line)
    return story
