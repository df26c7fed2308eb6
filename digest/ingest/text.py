"""Shared text hygiene for story parsers: decode bytes, strip junk, split CJK from Latin."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime, timedelta

from digest.errors import ParseError

MAX_BYTES = 5 * 1024 * 1024  # a story is a few KB; anything this big is not one

# XML 1.0 forbids C0 controls but tab/newline; C1 controls and DEL are legal there but are
# never meant in a story and break terminals and mail headers, so they go too.
# Lone surrogates can arrive through JSON "\\ud800" escapes; they cannot even be encoded.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# Invisible characters pasted from web pages: zero-width space/joiners, word joiner, BOM.
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
# Bidi overrides can make a title read differently from its bytes ("Trojan Source").
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")

_HAN = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
)
# CJK text including its full-width punctuation and the kana/hangul neighbours.
_CJK = _HAN + "\u3000-\u303f\u3040-\u30ff\uac00-\ud7af\uff00-\uffef"
CJK_CHAR = re.compile(f"[{_CJK}]")
HAN_CHAR = re.compile(f"[{_HAN}]")


def decode_story_bytes(data: bytes, source: str, max_bytes: int = MAX_BYTES) -> str:
    """Bytes of a story file → text, or ParseError naming the line of the first bad byte."""
    if len(data) > max_bytes:
        raise ParseError(source, 1, f"file is {len(data)} bytes, over the {max_bytes}-byte bound",
                         "a story file is a few KB; split it or check it is the right file")
    if not data.strip():
        raise ParseError(source, 1, "file is empty", "write the story text, or delete the file")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ParseError(source, line, "binary data (NUL byte) in a text file",
                         "story files are UTF-8 text; check this is not an image or archive")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ParseError(source, line, f"not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}",
                         "re-save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8)") from e
    return text


def clean_text(text: str) -> str:
    """Normalise a whole file: no BOM, LF line ends, NFC, no control junk; keeps line count."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ILLEGAL.sub("", text.replace("\x00", ""))
    return unicodedata.normalize("NFC", text)


def clean_line(s: str) -> str:
    """One line of story text: control chars, bidi overrides and edge zero-widths removed."""
    s = _BIDI.sub("", _ILLEGAL.sub("", s.replace("\t", " ")))
    return s.strip().strip(_ZERO_WIDTH).strip()


def clean_lines(text: str) -> list[str]:
    """`clean_line` of every line of `text` (split on "\n"), the substitutions done once
    over the whole text (neither pattern matches a newline): a card's ~100 lines cost two
    regex calls, not two hundred."""
    text = _BIDI.sub("", _ILLEGAL.sub("", text.replace("\t", " ")))
    return [s.strip().strip(_ZERO_WIDTH).strip() for s in text.split("\n")]


def clean_value(s: str) -> str:
    """A free-text value from a structured file: like clean_line but keeps inner newlines."""
    s = clean_text(s)
    return "\n".join(clean_line(p) for p in s.split("\n")).strip()


def has_cjk(s: str) -> bool:
    return CJK_CHAR.search(s) is not None


def cjk_ratio(s: str) -> float:
    """Share of CJK characters among the letters of `s` (0 for no letters).

    Looks at the first 5,000 characters: a sample decides, and a 10 MB line stays cheap."""
    sample = s[:5000]
    # One C-level pass each instead of a regex match per character (25 % of ingest).
    rest = CJK_CHAR.sub("", sample)
    cjk = len(sample) - len(rest)
    letters = cjk + sum(map(str.isalpha, rest))
    return cjk / letters if letters else 0.0


def split_bilingual(s: str) -> tuple[str, str]:
    """'China may have accessed Mythos 中国可能已访问Mythos' → (English, Chinese).

    The Chinese half starts at the word holding the first CJK character, so a Chinese
    half that opens with a Latin name ('OpenAI发布…') keeps it."""
    m = CJK_CHAR.search(s)
    if m is None:
        return s.strip(), ""
    start = m.start()
    cut = max(s.rfind(" ", 0, start), s.rfind("\u00a0", 0, start))
    cut = cut + 1 if cut >= 0 else 0
    # Full-width punctuation opening the Chinese half ('“技术”…') belongs to it too.
    return s[:cut].strip(), s[cut:].strip()


# Characters whose Traditional and Simplified forms differ, as (Traditional, Simplified).
# Frequent function words first: they decide most texts within a sentence or two.
SCRIPT_PAIRS = (
    "們们 這这 說说 發发 為为 於于 來来 個个 國国 與与 後后 會会 時时 "
    "對对 從从 還还 進进 過过 點点 開开 關关 實实 現现 經经 機机 "
    "種种 應应 當当 學学 問问 間间 義义 樣样 麼么 將将 讓让 戰战 報报 "
    "認认 風风 險险 級级 網网 產产 業业 電电 腦脑 動动 據据 處处 "
    "體体 變变 無无 長长 東东 車车 門门 見见 頁页 寫写 華华 萬万 億亿 "
    "歷历 監监 線线 聯联 職职 傳传 總总 術术 營营 爭争 資资 題题"
).split()
_TRAD = {p[0] for p in SCRIPT_PAIRS}
_SIMP = {p[1] for p in SCRIPT_PAIRS}


def chinese_script(text: str) -> str | None:
    """'zh-Hant' or 'zh-Hans' by counting distinctive characters; None when no Han text.

    Ties (no distinctive characters at all, e.g. '中文') go to Simplified, the common case."""
    if HAN_CHAR.search(text) is None:
        return None
    trad = simp = 0
    for ch in text[:20000]:  # a sample decides; keeps pathological input linear and cheap
        if ch in _TRAD:
            trad += 1
        elif ch in _SIMP:
            simp += 1
    return "zh-Hant" if trad > simp else "zh-Hans"


_SOURCE_ID = re.compile(r"(?:^|[_\-.])([0-9a-f]{16})\Z")
# A stated time this far past `as_of` is a typo or a hostile file (9999-12-31 would top every
# feed for ever); a day covers clock skew and time zones written wrongly.
FUTURE_SLACK = timedelta(hours=24)


def latest_allowed(as_of: datetime, not_after: datetime | None = None) -> datetime:
    """The latest `published`/`updated` a file may state: `not_after`, else as_of + a day
    (capped at the last representable time, so an `as_of` near year 9999 cannot overflow)."""
    if not_after is not None:
        return not_after
    try:
        return as_of + FUTURE_SLACK
    except OverflowError:
        return datetime.max.replace(tzinfo=as_of.tzinfo)


def source_id(source: str) -> str | None:
    """The 16-hex id in a file name ('001_3521ac04ccd50003.txt'), or None."""
    name = re.split(r"[\\/]", source)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    m = _SOURCE_ID.search(stem.lower())
    return m.group(1) if m else None


def derive_id(source: str, title: str) -> str:
    """The hex source id in the file name ('001_3521ac04ccd50003.txt'), else a title hash.

    The hash is over the NFC, stripped original-language title, so re-saving the same story
    under another name keeps its identity."""
    found = source_id(source)
    if found:
        return found
    norm = unicodedata.normalize("NFC", title).strip()
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()[:16]
