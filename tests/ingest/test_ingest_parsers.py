"""Story parsers, table-driven: the seeds, every header variant, and broken inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.errors import ParseError
from digest.ingest import decode_story_bytes, detect_layout, parse_file, parse_stories, parse_story
from digest.ingest.card import parse_tags, resolve_header, split_row
from digest.ingest.text import chinese_script, clean_text, derive_id, split_bilingual
from digest.models import Story

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
AS_OF = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def seed(prefix: str) -> tuple[str, str]:
    path = next(SEEDS.glob(f"{prefix}_*.txt"))
    return path.read_text(encoding="utf-8"), path.name


def card(header: str = "AI News AI资讯 9h ago Updated 2h ago 更新于 2小时前 61",
         scores: str = "80\nHot 热度\n70\nQuality 质量\n75\nImpact 影响力",
         en_tldr: str = "  • First point.\n  • Second point.",
         zh_tldr: str = "  • 第一点。\n  • 第二点。",
         extra: str = "",
         tail: str = "Disclaimer: AI. 免责声明:AI。\n\n安全 安全 政策 政策\nShare: 分享到:") -> str:
    """A small card in the layout of seeds 001/004, with parts to vary."""
    parts = [header, "Big news today 今天的大新闻", "Something happened. 发生了一件事。",
             scores, "Analysis 深度分析", "TL;DR", en_tldr, "Key Data", "Deep Analysis",
             "A paragraph.", "Industry Insights", "  1. One: first.", "FAQ", "Q: Why?",
             "A: Because.", "TL;DR", zh_tldr, "核心数据", "实体 关键信息", "甲 乙",
             "深度解读", "一段话。", "行业启示", "  1. 一:第一。", "FAQ", "Q: 为什么?",
             "A: 因为。", extra, tail]
    return "\n\n".join(p for p in parts if p) + "\n"


# --- the seeds -------------------------------------------------------------------------

SEED_CASES = [
    # prefix, id, languages, scores, published, updated, excerpt, source, tags
    ("001", "3521ac04ccd50003", ["en", "zh-Hans"], {"hot": 80, "quality": 70, "impact": 75},
     "2026-11-22T03:00:00Z", "2026-11-22T10:00:00Z", [], None, ["安全", "政策", "大模型"]),
    ("004", "d00f45b54dddf6ad", ["en", "zh-Hans"], {"hot": 80, "quality": 75, "impact": 70},
     "2026-11-22T02:00:00Z", "2026-11-22T10:00:00Z", [], None, ["Claude", "Agent", "政策"]),
    ("003", "45bcd535756f060a", ["zh-Hant"], None,
     "2026-11-22T12:00:00Z", "2026-11-22T12:00:00Z", ["zh-Hant"], "新智元", []),
]


@pytest.mark.parametrize("prefix,sid,langs,scores,pub,upd,excerpt,src,tags", SEED_CASES)
def test_seed(prefix, sid, langs, scores, pub, upd, excerpt, src, tags) -> None:
    text, name = seed(prefix)
    s = parse_story(text, name, AS_OF)
    d = s.to_dict()
    assert (s.id, s.languages, s.scores, d["published"], d["updated"]) == (sid, langs, scores, pub, upd)
    assert (s.tldr_excerpt, s.source, s.tags) == (excerpt, src, tags)
    for lang in langs:
        assert s.title[lang] and s.tldr[lang], lang
        assert all(0 < len(b) for b in s.tldr[lang])
    assert s.origin == name


def test_seed_001_sections() -> None:
    s = parse_story(*seed("001"), AS_OF)
    assert s.title == {"en": "China may have accessed Mythos", "zh-Hans": "中国可能已访问Mythos"}
    assert s.summary["en"].startswith("White House restricted")
    assert s.summary["en"].endswith("national security asset.")
    assert s.summary["zh-Hans"].startswith("白宫对Anthropic")
    assert len(s.tldr["en"]) == 5 and len(s.tldr["zh-Hans"]) == 4
    assert "en" not in s.key_data  # the English Key Data section is empty
    assert s.key_data["zh-Hans"] == [
        ["实体", "关键信息", "数据/指标"],
        ["Anthropic", "旗下模型Mythos(可能指Claude系列)被实施出口限制", "涉及模型版本:Mythos 5 / Fable 5"],
        ["美国白宫", "出口限制决策的部分驱动因素为国家安全担忧", "无具体量化指标"],
    ]
    assert len(s.analysis["en"]) == 5 and len(s.analysis["zh-Hans"]) == 5
    assert s.insights["en"][0].startswith("Technical Safeguards Become National Mandates:")
    assert len(s.insights["zh-Hans"]) == 3
    assert [f.q for f in s.faq["en"]][0] == "What makes Mythos so special that it's a national security risk?"
    assert len(s.faq["zh-Hans"]) == 3 and s.faq["zh-Hans"][2].a.startswith("它将迫使")
    blob = json.dumps(s.to_dict(), ensure_ascii=False)
    assert "Disclaimer" not in blob and "免责声明" not in blob and "Share" not in blob


def test_seed_004_ignores_trailing_faq_block() -> None:
    s = parse_story(*seed("004"), AS_OF)
    assert len(s.faq["en"]) == 3  # the "Frequently Asked Questions 常见问题" copy is not added
    assert "Frequently" not in json.dumps(s.to_dict(), ensure_ascii=False)
    assert len(s.key_data["zh-Hans"]) == 6
    assert ["Anthropic", "被迫暂停Claude 5模型(代号Mythos/Fable)的内外部访问", "涉及最新旗舰模型"] \
        in s.key_data["zh-Hans"]


def test_seed_003_article() -> None:
    s = parse_story(*seed("003"), AS_OF)
    assert s.title["zh-Hant"].startswith("就在剛剛,Anthropic發布53頁報告")
    assert 2 <= len(s.tldr["zh-Hant"]) <= 3
    assert all(len(x) <= 120 for x in s.tldr["zh-Hant"])
    assert s.tldr["zh-Hant"][0] == "翻開這53頁報告,每頁上都滿滿寫著兩個字——「危險」!"
    blocks = s.body["zh-Hant"]
    heads = [b.text for b in blocks if b.kind == "h"]
    assert heads == ["01 2026,事情越來越失控了", "02 Anthropic警告:人類,將被人造之物奴役",
                     "03 Opus 4.6,將引發災難性后果", "04 二月,9天,AI安全崩潰了"]
    text = json.dumps(s.to_dict(), ensure_ascii=False)
    for junk in ("![]()", "本文不代表", "長白山", "特別聲明", "Notice:", "來源"):
        assert junk not in text, junk
    assert blocks[-1].text.startswith("AI已經變得足夠強大")


@pytest.mark.parametrize("prefix", ["001", "003", "004"])
def test_seed_round_trips_through_json(prefix: str) -> None:
    s = parse_story(*seed(prefix), AS_OF)
    again = parse_story(json.dumps(s.to_dict(), ensure_ascii=False), "x.json", AS_OF)
    assert again.to_dict() == s.to_dict() | {"origin": "x.json"}
    assert again.content_hash() == s.content_hash()


@pytest.mark.parametrize("prefix", ["001", "003", "004"])
def test_seed_with_crlf_and_bom_parses_the_same(prefix: str) -> None:
    text, name = seed(prefix)
    base = parse_story(text, name, AS_OF).to_dict()
    assert parse_story("\ufeff" + text.replace("\n", "\r\n"), name, AS_OF).to_dict() == base
    assert parse_story(text.replace("\n", "\r"), name, AS_OF).to_dict() == base
    assert decode_story_bytes(("\ufeff" + text).encode(), name).startswith("\ufeff")


# --- header variants ------------------------------------------------------------------

H = timedelta(hours=1)
HEADER_CASES = [
    ("AI News AI资讯 9h ago Updated 2h ago 更新于 2小时前 61", 9 * H, 2 * H),
    ("AI News AI资讯 9h ago 61", 9 * H, 9 * H),  # no Updated: updated = published
    ("AI News 45m ago Updated 5 min ago", timedelta(minutes=45), timedelta(minutes=5)),
    ("AI News 3d ago Updated 1 day ago", timedelta(days=3), timedelta(days=1)),
    ("AI News 2 hours ago Updated 30 minutes ago", 2 * H, timedelta(minutes=30)),
    ("AI资讯 9小时前 更新于 2小时前", 9 * H, 2 * H),
    ("AI资讯 30分钟前", timedelta(minutes=30), timedelta(minutes=30)),
    ("AI资讯 2天前 更新于 1天前", timedelta(days=2), timedelta(days=1)),
    ("AI News 1w ago", timedelta(weeks=1), timedelta(weeks=1)),
    ("AI News just now", timedelta(0), timedelta(0)),
    ("AI News AI资讯 9H AGO UPDATED 2H AGO", 9 * H, 2 * H),
    ("AI News AI资讯", timedelta(0), timedelta(0)),  # no times at all: the file's own time
    ("AI News Updated 2h ago", 2 * H, 2 * H),  # only an update time
]


@pytest.mark.parametrize("header,pub_ago,upd_ago", HEADER_CASES)
def test_header_ages(header: str, pub_ago: timedelta, upd_ago: timedelta) -> None:
    published, updated = resolve_header(header, AS_OF, "h.txt", 1)
    assert (AS_OF - published, AS_OF - updated) == (pub_ago, upd_ago)
    s = parse_story(card(header=header), "h.txt", AS_OF)
    assert (s.published, s.updated) == (published, updated)


def test_header_absolute_date_and_exact_times_flag() -> None:
    published, updated = resolve_header("AI News 2026-11-20T08:30:00Z", AS_OF, "h", 1)
    assert published == updated == datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    assert parse_file(card(header="AI News 2026-11-20T08:30:00Z"), "h", AS_OF)[0].exact_times
    assert not parse_file(card(), "h", AS_OF)[0].exact_times


def test_times_keep_as_of_seconds_not_microseconds() -> None:
    as_of = datetime(2026, 11, 22, 12, 0, 7, 999999, tzinfo=UTC)
    s = parse_story(card(), "h.txt", as_of)
    assert s.published == datetime(2026, 11, 22, 3, 0, 7, tzinfo=UTC)


def test_naive_as_of_is_utc() -> None:
    s = parse_story(card(), "h.txt", AS_OF.replace(tzinfo=None))
    assert s.published == datetime(2026, 11, 22, 3, tzinfo=UTC)


# --- pieces ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,en,zh", [
    ("China may have accessed Mythos 中国可能已访问Mythos", "China may have accessed Mythos", "中国可能已访问Mythos"),
    ("OpenAI ships GPT-6 OpenAI发布GPT-6", "OpenAI ships GPT-6", "OpenAI发布GPT-6"),
    ("English only", "English only", ""),
    ("只有中文", "", "只有中文"),
    ("Done. 完成了。 真的。", "Done.", "完成了。 真的。"),
    ("Quote “技术资产”", "Quote", "“技术资产”"),
])
def test_split_bilingual(text: str, en: str, zh: str) -> None:
    assert split_bilingual(text) == (en, zh)


@pytest.mark.parametrize("text,script", [
    ("他們說這個國家的發展", "zh-Hant"),
    ("他们说这个国家的发展", "zh-Hans"),
    ("就在剛剛,Anthropic發布53頁報告,發出最強預警", "zh-Hant"),
    ("白宫对Anthropic的Mythos模型实施出口限制", "zh-Hans"),
    ("為了與時俱進,後來會議於此舉行", "zh-Hant"),
    ("为了与时俱进,后来会议于此举行", "zh-Hans"),
    ("中文", "zh-Hans"),  # nothing distinctive: the common script
    ("English only", None),
    ("這個处于简体与繁體之間的們", "zh-Hant"),  # mixed conversion leftovers: the majority wins
])
def test_chinese_script(text: str, script: str | None) -> None:
    assert chinese_script(text) == script


@pytest.mark.parametrize("line,tags", [
    ("安全 安全 政策 政策 大模型 大模型", ["安全", "政策", "大模型"]),
    ("Claude Claude Agent Agent 政策 政策", ["Claude", "Agent", "政策"]),
    ("AI Safety AI Safety 政策 政策", ["AI Safety", "政策"]),
    ("安全 政策", None),  # not doubled: not a tag line
    ("", None),
])
def test_parse_tags(line: str, tags: list[str] | None) -> None:
    assert parse_tags(line) == tags


@pytest.mark.parametrize("row,cells", [
    ("实体 关键信息 数据/指标", ["实体", "关键信息", "数据/指标"]),
    ("Anthropic 被迫暂停Claude 5模型(代号Mythos/Fable)的内外部访问 涉及最新旗舰模型",
     ["Anthropic", "被迫暂停Claude 5模型(代号Mythos/Fable)的内外部访问", "涉及最新旗舰模型"]),
    ("Entity\tKey fact\tFigure", ["Entity", "Key fact", "Figure"]),
    ("Entity  Key fact  Figure", ["Entity", "Key fact", "Figure"]),
])
def test_split_row(row: str, cells: list[str]) -> None:
    assert split_row(row) == cells


@pytest.mark.parametrize("source,title,sid", [
    ("001_3521ac04ccd50003.txt", "x", "3521ac04ccd50003"),
    ("/a/b/inbox/3521AC04CCD50003.json", "x", "3521ac04ccd50003"),
    ("story.txt", " Café ", derive_id("other.txt", "Cafe\u0301")),  # NFC + strip before hashing
])
def test_derive_id(source: str, title: str, sid: str) -> None:
    assert derive_id(source, title) == sid
    assert len(sid) == 16


def test_id_without_source_id_is_stable_across_names_and_text_edits() -> None:
    a = parse_story(card(), "inbox/a.txt", AS_OF)
    b = parse_story(card(extra="More words."), "inbox/b.txt", AS_OF)
    assert a.id == b.id and len(a.id) == 16 and a.content_hash() != b.content_hash()


def test_clean_text_strips_control_and_zero_width_junk() -> None:
    s = parse_story(card().replace("Big news today", "\u200bBig\x07 news\x1b today\u202e"), "c", AS_OF)
    assert s.title["en"] == "Big news today"
    assert clean_text("a\r\nb\rc\x0c") == "a\nb\nc"


# --- edge cases: tolerated ------------------------------------------------------------

def test_missing_sections_are_fine() -> None:
    text = "AI News AI资讯 1h ago\n\nOnly a title 只有标题\n\nTL;DR\n\n  • One point.\n"
    s = parse_story(text, "m.txt", AS_OF)
    assert s.languages == ["en", "zh-Hans"]
    assert s.title["zh-Hans"] == "只有标题" and s.tldr == {"en": ["One point."]}
    assert s.scores is None and s.faq == {} and s.tags == []


def test_english_only_card() -> None:
    text = "AI News 1h ago\n\nEnglish title\n\nTL;DR\n\n  • One point.\n"
    s = parse_story(text, "e.txt", AS_OF)
    assert s.languages == ["en"] and s.title == {"en": "English title"}


def test_traditional_card_gets_zh_hant() -> None:
    text = card(zh_tldr="  • 這個國家的發展與時俱進。").replace("今天的大新闻", "今天們這個國家的大新聞")
    assert parse_story(text, "t.txt", AS_OF).languages == ["en", "zh-Hant"]


def test_tags_without_disclaimer() -> None:
    s = parse_story(card(tail="安全 安全 政策 政策\nShare: 分享到:"), "t.txt", AS_OF)
    assert s.tags == ["安全", "政策"]
    assert s.faq["zh-Hans"][0].a == "因为。"


def test_wrapped_bullets_and_answers_join() -> None:
    s = parse_story(card(en_tldr="  • First point\ncontinues here.\n  • Second."), "w.txt", AS_OF)
    assert s.tldr["en"] == ["First point continues here.", "Second."]


def test_score_on_label_line() -> None:
    s = parse_story(card(scores="Hot 热度 80\nQuality 质量 70\nImpact 影响力 75"), "s.txt", AS_OF)
    assert s.scores == {"hot": 80, "quality": 70, "impact": 75}


def test_markdown_article() -> None:
    text = "# A headline\n\nFirst sentence of the story is here. Second sentence follows it.\n\n" \
           "## Part two\n\nMore text in English for the body.\n\nSource: Example Wire\n\nBuy now!\n"
    s = parse_story(text, "news.md", AS_OF)
    assert s.languages == ["en"] and s.title == {"en": "A headline"} and s.source == "Example Wire"
    assert [b.kind for b in s.body["en"]] == ["p", "h", "p"]
    assert s.tldr["en"] == ["First sentence of the story is here.", "Second sentence follows it.",
                            "More text in English for the body."]  # three lead sentences
    assert s.tldr_excerpt == ["en"] and s.scores is None


def test_article_excerpt_sentences_are_bounded() -> None:
    long = "长" * 300 + "。"
    s = parse_story(f"标题在这里\n{long}\n第二句话在这里。第三句也在。\n", "a.txt", AS_OF)
    assert all(len(x) <= 120 for x in s.tldr["zh-Hans"])
    assert s.tldr["zh-Hans"][0].endswith("…")


def test_json_array_holds_many_stories() -> None:
    a = parse_story(*seed("001"), AS_OF).summary_dict()
    b = parse_story(*seed("004"), AS_OF).summary_dict() | {"score": 61.5}  # rank --json extra key
    stories = parse_stories(json.dumps([a, b]), "rank.json", AS_OF)
    assert [s.id for s in stories] == ["3521ac04ccd50003", "d00f45b54dddf6ad"]
    with pytest.raises(ParseError, match="expected one"):
        parse_story(json.dumps([a, b]), "rank.json", AS_OF)


def test_json_minimal_and_cleaned() -> None:
    s = parse_story(json.dumps({"languages": ["en"], "title": {"en": "T\x00i\u202etle\x07"}}),
                    "min.json", AS_OF)
    assert s.title == {"en": "Title"} and s.published == AS_OF
    assert s.id == derive_id("min.json", "Title")


@pytest.mark.parametrize("text,layout", [
    ("{}", "json"), ("[1]", "json"), (card(), "card"), ("Title\nBody text.", "article"),
])
def test_detect_layout(text: str, layout: str) -> None:
    assert detect_layout(text, "x.txt") == layout


# --- edge cases: rejected with file and line ------------------------------------------

def bad_json(**changes) -> str:
    d = parse_story(*seed("001"), AS_OF).to_dict()
    d.update(changes)
    return json.dumps(d, ensure_ascii=False, indent=1)


BAD_CASES = [
    # name, text (str) or raw bytes, line, words in the reason
    ("empty", b"", 1, "empty"),
    ("blank", b"  \n\n\t\n", 1, "empty"),
    ("nul", b"Title\nbody\x00more\n", 2, "NUL"),
    ("bad utf-8", "标题\n第二行\n".encode() + b"\xff\xfe\n", 3, "not UTF-8"),
    ("gb18030", "标题\n".encode("gb18030"), 1, "not UTF-8"),
    ("one line", "Just a single line of text", 1, "unknown layout"),
    ("html", "<html><body>hi</body></html>\n<p>x</p>", 1, "unknown layout"),
    ("digits", "12345\n67890\n", 1, "unknown layout"),
    ("title too long", "x" * 400 + "\nbody here", 1, "unknown layout"),
    ("score word", card(scores="eighty\nHot 热度\n70\nQuality 质量\n75\nImpact 影响力"), 7, "whole number"),
    ("score 101", card(scores="101\nHot 热度\n70\nQuality 质量\n75\nImpact 影响力"), 7, "0-100"),
    ("score negative", card(scores="-5\nHot 热度\n70\nQuality 质量\n75\nImpact 影响力"), 7, "0-100"),
    ("score float", card(scores="80.5\nHot 热度\n70\nQuality 质量\n75\nImpact 影响力"), 7, "whole number"),
    ("score missing", card(scores="80\nHot 热度\n70\nQuality 质量"), 10, "lacks impact"),
    ("score twice", card(scores="80\nHot 热度\n70\nHot 热度\n75\nImpact 影响力"), 10, "twice"),
    ("tldr no bullets", card(en_tldr=""), 16, "no bullets"),
    ("zh tldr no bullets", card(zh_tldr="没有要点"), 37, "no bullets"),
    ("faq no answer", card().replace("A: Because.", ""), 33, "no answer"),
    ("card no title", "AI News 9h ago\n", 1, "no title"),
    ("json syntax", '{"id": "x",\n "title": {,\n}', 2, "invalid JSON"),
    ("json lang", bad_json(languages=["en", "zh_CN"]), 23, "zh_CN"),
    ("json score", bad_json(scores={"hot": 101, "quality": 1, "impact": 1}), 32, "hot"),
    ("json score bool", bad_json(scores={"hot": True, "quality": 1, "impact": 1}), 32, "hot"),
    ("json score keys", bad_json(scores={"hot": 1}), 32, "exactly"),
    ("json no title", bad_json(title={"en": "x"}), 3, "missing zh-Hans"),
    ("json no languages", bad_json(languages=[]), 23, "languages"),
    ("json bad id", bad_json(id="../../etc/passwd"), 2, "not a valid id"),
    ("json bad time", bad_json(published="yesterday"), 37, "ISO 8601"),
    ("json not object", "[1]", 1, "expected a JSON object"),
    ("json deep", "[" * 100000 + "]" * 100000, 1, "JSON"),
]


@pytest.mark.parametrize("name,data,line,words", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_rejects_with_file_and_line(name: str, data: str | bytes, line: int, words: str) -> None:
    source = "bad.json" if name.startswith("json") else "bad.txt"
    with pytest.raises(ParseError) as exc:
        text = decode_story_bytes(data, source) if isinstance(data, bytes) else data
        parse_stories(text, source, AS_OF)
    e = exc.value
    assert (e.source, e.line) == (source, line), e.message
    assert words.lower() in e.reason.lower(), e.reason
    assert e.message.startswith(f"{source}:{line}: ") and e.hint


def test_oversized_bytes_rejected() -> None:
    with pytest.raises(ParseError, match="over the"):
        decode_story_bytes(b"x" * 101, "big.txt", max_bytes=100)


@pytest.mark.timeout(120)
def test_pathological_long_line_is_linear() -> None:
    """A 10 MB one-line 'title' and a 10 MB body line parse or fail quickly (timeout guards)."""
    with pytest.raises(ParseError, match="unknown layout"):
        parse_story("x" * 10_000_000, "p.txt", AS_OF)
    s = parse_story("Title\n" + "a " * 5_000_000, "p.txt", AS_OF)
    assert s.title == {"en": "Title"}
    s = parse_story("AI News 1h ago\n\nT 标\n\nTL;DR\n\n  • " + "Hot " * 2_500_000, "p.txt", AS_OF)
    assert s.tldr["en"][0].startswith("Hot Hot")
    s = parse_story(card(extra="安全 " * 2_000_000), "p.txt", AS_OF)
    assert isinstance(s, Story)


def test_article_source_byline_at_top_is_kept_and_text_follows() -> None:
    s = parse_story("标题\n来源:新华社\n第一段正文在这里。\n第二段正文也在。\n", "a.txt", AS_OF)
    assert s.source == "新华社" and [b.text for b in s.body["zh-Hans"]][0] == "第一段正文在这里。"


def test_json_lone_surrogates_and_controls_are_stripped_everywhere() -> None:
    d = parse_story(*seed("001"), AS_OF).to_dict()
    d["title"]["en"] = "Bad\\ud800 title\\u0007"
    d["tags"] = ["x\\udfff", "\\u0000"]
    d["faq"]["en"][0]["a"] = "line one\nline\\u001b two"
    raw = json.dumps(d, ensure_ascii=False).replace("\\\\u", "\\u")  # real JSON escapes
    s = parse_story(raw, "s.json", AS_OF)
    assert s.title["en"] == "Bad title" and s.tags == ["x"]
    assert s.faq["en"][0].a == "line one\nline two"
    json.dumps(s.to_dict(), ensure_ascii=False).encode("utf-8")  # encodable: no surrogates
