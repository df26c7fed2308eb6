"""The text of pages, feeds and mail alike: section labels, paths of pages, what XML cannot
hold, Chinese typesetting, which language a link lands on; pure, no templates."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from digest.models import Block, Story

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
# The lookahead in front only says what both branches start with (a space, a tab or a mark):
# it spares the regex engine trying both branches at every character (~2x on Chinese text).
_PUNCT = re.compile(rf"(?=[ \t,:;!?])(?:(?<={_CJK})[ \t]*([,:;!?])[ \t]*|[ \t]*([,:;!?])[ \t]*(?={_CJK}))")
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
    if "(" in text:
        text = _PARENS.sub(_paren, text)
    return _PUNCT.sub(_full_width, text)


def _full_width(m: re.Match[str]) -> str:
    return _FULL[m[1] or m[2]]


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
