"""Issue 13, the language rules for the three kinds of reader (en, zh, en+zh), on the real
digests from the seeds: no Chinese for an English-only reader, Chinese chrome for a
Chinese-only reader, both for a bilingual one; links land on the reader's half of the story
page; the subject names the lead story; the HTML stays under 80 KB at max_stories."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from datetime import timedelta
from email.header import decode_header, make_header

import pytest

from digest.config import load_config
from digest.ingest import parse_stories
from digest.mail.editions import plan_stories
from digest.mail.render import (
    ADDR_MARK,
    MAX_BULLETS,
    SUBJECT_WIDTH,
    UI,
    Renderer,
    display_width,
    long_date,
    shown_tags,
    subject_for,
)
from digest.pipeline.sending import send_digest
from tests.support.send import (
    AS_OF,
    NOW,
    REPO,
    SECRET,
    SEEDS,
    add_subscribers,
    maildir_messages,
    make_project,
    parts,
    story,
    sub,
)

CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
STORY_LINK = re.compile(r"https?://[^\s\"'<>]*/stories/[0-9a-f]+\.html[^\s\"'<>]*")
ZH_ONLY = "45bcd535756f060a"  # the seed story with Chinese (zh-Hant) text only
BASE = "https://news.example.org/"


@pytest.fixture(scope="module")
def mails(tmp_path_factory: pytest.TempPathFactory) -> dict[str, email.message.EmailMessage]:
    tmp = tmp_path_factory.mktemp("languages")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGEST_SECRET", SECRET)
        config = make_project(tmp)
        add_subscribers(config, sub("en@example.com", ["en"]), sub("zh@example.com", ["zh"]),
                        sub("both@example.com", ["en", "zh"]))
        assert len(send_digest(config, now=NOW).sent) == 3
    return {m["To"].split("@")[0]: m for m in maildir_messages(config)}


@pytest.fixture(scope="module")
def seed_stories() -> list:
    out = []
    for f in sorted(SEEDS.iterdir()):
        out += parse_stories(f.read_text(encoding="utf-8"), f.name, AS_OF)
    return out


def _ui_strings(lang: str) -> list[str]:
    out: list[str] = []
    for value in UI[lang].values():
        out += list(value) if isinstance(value, tuple) else [value]
    return [s.strip() for s in out if s.strip(" :：")]


def _visible(html: str) -> str:
    """Roughly the text a reader sees: no head, tags, URLs or entities."""
    body = re.sub(r"(?s)<head>.*?</head>|<span class=\"preheader\".*?</span>", "", html)
    return re.sub(r"<[^>]+>|&\w+;|&#\d+;", " ", body)


# --- English-only -------------------------------------------------------------------------


def test_english_reader_gets_no_chinese_at_all(mails) -> None:
    msg = mails["en"]
    text, html = parts(msg)
    assert CJK.findall(text) == [] and CJK.findall(html) == []
    assert CJK.findall(str(msg["Subject"])) == []
    assert ZH_ONLY not in text and ZH_ONLY not in html  # the Chinese-only story is left out
    assert "Not available in English" not in html
    # Chinese tags by their [tags] alias (config.toml: 安全 → security, 政策 → policy)
    for alias in ("security", "policy", "llm"):
        assert '<span class="tag"' in html and f">{alias}</span>" in html
    assert "In this issue" in html and "Sunday, 22 November 2026" in html
    assert "Sent to en@example.com" in text and "Sent to en@example.com" in html


def test_chinese_only_story_is_not_planned_for_an_english_reader(seed_stories) -> None:
    got = plan_stories(seed_stories, set(), [], 10, languages=["en"])
    assert ZH_ONLY not in [s.id for s in got] and got
    assert all(s.text_in("en") for s in got)
    zh = plan_stories(seed_stories, set(), [], 10, languages=["zh-Hans"])
    assert ZH_ONLY in [s.id for s in zh] and all(s.text_in("zh") for s in zh)
    english = story("e1", ["en"], {"en": "E"}, {"en": ["x"]})
    assert plan_stories([english], set(), [], 10, languages=["zh"]) == []
    assert plan_stories([english], set(), [], 10, languages=["en", "zh"]) == [english]
    assert plan_stories([english], set(), [], 10) == [english]  # old call shape: no filter


@pytest.mark.parametrize("langs,tags,expected", [
    (["en"], ["安全", "Agent", "未知"], ["security", "Agent"]),  # no alias: not shown
    (["en"], ["政策", "policy"], ["policy"]),  # no duplicate chip
    (["zh"], ["安全", "Agent"], ["安全", "Agent"]),
    (["en", "zh"], ["安全", "Agent"], ["安全", "Agent"]),
])
def test_tags_as_the_reader_sees_them(langs, tags, expected) -> None:
    assert shown_tags(tags, langs, {"安全": "security", "政策": "policy"}) == expected


# --- Chinese-only -------------------------------------------------------------------------


def test_chinese_reader_gets_chinese_labels_dates_and_footer(mails) -> None:
    msg = mails["zh"]
    text, html = parts(msg)
    assert '<html lang="zh"' in html
    for part in (text, html):
        for label in ("本期要点", "11月22日 周日", "阅读全文", "本邮件发送至 zh@example.com",
                      "偏好设置", "退订", "热度 80"):
            assert label in part, label
        for label in _ui_strings("en"):
            assert label not in part, label
        for word in ("Sunday", "November", "Read", "Sent", "Unsubscribe", "Preferences"):
            assert word not in part, word
    assert ZH_ONLY in html  # Chinese-only story: the reader reads it


def test_chinese_digest_has_no_english_words_but_the_stories_own(mails, seed_stories) -> None:
    text, html = parts(mails["zh"])
    own = set()
    for s in seed_stories:
        code = s.text_in("zh")
        if code:
            own |= set(re.findall(r"[A-Za-z]{2,}", " ".join(
                [s.title[code], *s.tldr.get(code, []), *s.tags])))
    for part in (text, _visible(html)):
        visible = STORY_LINK.sub(" ", re.sub(r"https?://\S+|\S+@example\.com", " ", part))
        stray = set(re.findall(r"[A-Za-z]{2,}", visible)) - own
        assert not stray, stray


# --- bilingual ----------------------------------------------------------------------------


def test_bilingual_reader_gets_both(mails) -> None:
    text, html = parts(mails["both"])
    for part in (text, html):
        for label in ("In this issue", "本期要点", "Sunday, 22 November 2026", "11月22日 周日",
                      "Read more", "阅读全文", "Sent to both@example.com",
                      "本邮件发送至 both@example.com", "Unsubscribe", "退订"):
            assert label in part, label
    assert html.index("China may have accessed Mythos") < html.index("中国可能已访问Mythos")
    assert ZH_ONLY in html and "No English version yet" in html


# --- links, subject, shape ----------------------------------------------------------------


@pytest.mark.parametrize("reader", ["en", "zh", "both"])
def test_story_links_land_on_the_readers_language(mails, reader: str) -> None:
    text, html = parts(mails[reader])
    links = STORY_LINK.findall(text) + STORY_LINK.findall(html)
    assert links
    anchors = {link.rsplit("#", 1)[1] if "#" in link else "" for link in links}
    assert anchors == {"en": {"en"}, "zh": {"zh"}, "both": {"en", "zh"}}[reader]
    for line in text.splitlines():  # each "read" link is at its own language's half
        if "Read more" in line:
            assert line.rstrip().endswith("#en"), line
        if "阅读全文" in line:
            assert line.rstrip().endswith("#zh"), line


@pytest.mark.parametrize("reader,lead", [
    ("en", "China may have accessed Mythos"),
    ("zh", "中国可能已访问Mythos"),
    ("both", "China may have accessed Mythos"),
])
def test_subject_names_the_lead_story(mails, reader: str, lead: str) -> None:
    msg = mails[reader]
    subject = str(make_header(decode_header(msg["Subject"])))
    assert subject.startswith(lead + " | ") and "2026-11-22" in subject
    assert display_width(subject) <= SUBJECT_WIDTH
    raw = msg.as_bytes().split(b"\n\n", 1)[0].decode("ascii")
    header = re.search(r"(?m)^Subject: .*(?:\n .*)*", raw.replace("\r\n", "\n")).group(0)
    assert all(len(w) <= 75 for w in re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", header))
    assert all(len(line) <= 78 for line in header.split("\n"))


def test_long_lead_titles_are_cut_to_fit() -> None:
    template = "AI News Daily · AI资讯日报 — {date}"
    long_zh = "就在剛剛，Anthropic發布53頁報告，發出最強預警：如果Claude自我逃逸，將造成全球失控！"
    for langs in (["zh"], ["en", "zh"], ["en"]):
        s = subject_for(template, langs, "2026-11-22", long_zh * 2)
        assert display_width(s) <= SUBJECT_WIDTH and "…" in s and s.endswith("2026-11-22")
    assert subject_for(template, ["en"], "2026-11-22") == "AI News Daily — 2026-11-22"


@pytest.mark.parametrize("iso,lang,expected", [
    ("2026-11-30", "zh", "11月30日 周一"),
    ("2026-11-22", "zh", "11月22日 周日"),
    ("2026-11-30", "en", "Monday, 30 November 2026"),
])
def test_dates_in_the_readers_language(iso: str, lang: str, expected: str) -> None:
    assert long_date(iso, lang) == expected


def test_story_blocks_are_short(mails) -> None:
    text, html = parts(mails["both"])
    for block in re.findall(r'(?s)<ul class="bullets".*?</ul>', html):
        assert block.count("<li") <= MAX_BULLETS
    assert "<ol" in html  # the "In this issue" list at the top
    assert html.index("本期要点") < html.index('class="pad story"')


def test_address_is_escaped_and_view_online_slot_is_empty_until_given() -> None:
    renderer = Renderer(BASE, "AI News — {date}", "digest@news.example.org")
    s = story("s1", ["en"], {"en": "One"}, {"en": ["a"]})
    body = renderer.render_digest([s], ["en"], "2026-11-22")
    assert ADDR_MARK in body.html and "View online" not in body.html
    data = renderer.build_message(body, "o'neil&co@example.com", "<m@x>", NOW,
                                  BASE + "unsubscribe?t=u", BASE + "preferences?t=p")
    text, html = parts(email.message_from_bytes(data, policy=email.policy.default))
    assert "Sent to o&#x27;neil&amp;co@example.com" in html
    assert "Sent to o'neil&co@example.com" in text and ADDR_MARK not in html + text
    online = renderer.render_digest([s], ["en"], "2026-11-22", view_url=BASE + "e/1.html")
    assert f'href="{BASE}e/1.html"' in online.html and "View online" in online.html
    assert f"View online: {BASE}e/1.html" in online.text


def test_confirmation_action_is_a_button() -> None:
    renderer = Renderer(BASE, "AI News Daily · AI资讯日报 — {date}", "digest@news.example.org")
    for langs, label in ((["en"], "Confirm my subscription"), (["zh"], "确认订阅")):
        html = renderer.render_confirm(langs, BASE + "confirm?t=T").html
        button = re.search(r'(?s)<td class="btn-cell"[^>]*bgcolor="#[0-9a-f]{6}"[^>]*>\s*'
                           r'<a class="btn"([^>]*)>([^<]+)</a>', html)
        assert button and button.group(2) == label
        assert f'href="{BASE}confirm?t=T"' in button.group(1)
        assert "padding: 12px 28px" in button.group(1)  # inlined: the whole button clicks


def test_html_stays_under_80_kb_at_max_stories(seed_stories) -> None:
    config = load_config(REPO / "config.toml")
    dcfg = config.digests[0]
    longest = sorted(seed_stories, key=lambda s: len(str(s.to_dict())), reverse=True)
    many = [dataclasses.replace(longest[i % len(longest)], id=f"{i:016x}",
                                published=AS_OF - timedelta(minutes=i))
            for i in range(dcfg.max_stories)]
    renderer = Renderer(config.site.base_url, dcfg.subject, config.smtp.sender, dcfg.name,
                        tag_aliases=config.tags)
    for langs in (["en"], ["zh"], ["en", "zh"]):
        body = renderer.render_digest(many, langs, "2026-11-22", dcfg.name)
        data = renderer.build_message(body, "reader@example.com", "<m@x>", NOW,
                                      config.site.base_url + "unsubscribe?t=" + "u" * 60,
                                      config.site.base_url + "preferences?t=" + "p" * 60)
        html = parts(email.message_from_bytes(data, policy=email.policy.default))[1]
        assert len(html.encode()) < 80_000, (langs, len(html.encode()))
        shown = sum(1 for s in many if s.text_in(langs[0]) or s.text_in(langs[-1]))
        assert len(body.story_ids) == shown  # nothing dropped for size
