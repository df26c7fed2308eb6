"""Pure rendering: subjects and encoded words, planning, blocks, message structure, safety."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.mail.editions import plan_stories
from digest.mail.render import (
    MAX_HTML_BYTES,
    InvalidAddress,
    Renderer,
    clean,
    encode_words,
    localized_title,
    message_id,
    normalize_email,
    story_url,
    subject_for,
)
from tests.support.send import NOW, parts, story

TEMPLATE = "AI News Daily · AI资讯日报 — {date}"
BASE = "https://news.example.org/"
ENCODED = re.compile(r"=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=")


def decoded(value: str) -> str:
    return str(make_header(decode_header(value)))


# --- subjects and RFC 2047 ----------------------------------------------------------------


@pytest.mark.parametrize("langs,expected", [
    (["en", "zh"], "AI News Daily · AI资讯日报 — 2026-11-22"),
    (["en"], "AI News Daily — 2026-11-22"),
    (["zh"], "AI资讯日报 — 2026-11-22"),
])
def test_subject_in_the_readers_languages(langs: list[str], expected: str) -> None:
    assert subject_for(TEMPLATE, langs, "2026-11-22") == expected
    assert decoded(encode_words(expected)) == expected


def test_title_without_a_separator_is_kept_whole() -> None:
    assert localized_title("Weekly {date}", ["zh"]) == "Weekly"
    assert subject_for("Weekly {date}", ["zh"], "2026-11-22") == "Weekly 2026-11-22"


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFFF,
                                      blacklist_categories=("Cs", "Cc")), min_size=1,
               max_size=200))
def test_every_encoded_word_fits_75_chars_and_round_trips(text: str) -> None:
    value = encode_words(text)
    if not value.isascii() or ENCODED.search(value):
        for word in value.split("\r\n "):
            assert len(word) <= 75, word
            assert ENCODED.fullmatch(word), word
            # split on character boundaries: each word decodes on its own
            base64.b64decode(ENCODED.fullmatch(word).group(1)).decode("utf-8")
    line_lengths = [len(line) for line in ("Subject: " + value).split("\r\n")]
    if not text.isascii():
        assert max(line_lengths) <= 78
    # `clean` defuses link markers (`%%DIGEST-` → `%DIGEST-`), so compare with what it keeps
    assert decoded(value) in (" ".join(text.split()), text.strip(), clean(text))


def test_long_chinese_subject_words_stay_short() -> None:
    value = encode_words("人工智能资讯日报" * 20 + " — 2026-11-22")
    words = value.split("\r\n ")
    assert len(words) > 5 and all(len(w) <= 75 for w in words)


@pytest.mark.parametrize("bad", ["Hello\r\nBcc: victim@example.com", "x\nTo: y", "a\rb"])
def test_subject_never_carries_line_breaks(bad: str) -> None:
    value = encode_words(bad)
    assert "\r" not in value and "\n" not in value
    assert encode_words(bad + " 中文").count("\r\n ") == encode_words(bad + " 中文").count("\r")


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize("good,norm", [
    ("Reader@Example.COM", "reader@example.com"),
    ("  a.b+tag@sub.example.org ", "a.b+tag@sub.example.org"),
])
def test_valid_addresses(good: str, norm: str) -> None:
    assert normalize_email(good) == norm


@pytest.mark.parametrize("bad", [
    "", "plain", "a@b", "a@@b.com", ".a@b.com", "a..b@c.com", "a b@c.com", "<a@b.com>",
    "Name <a@b.com>", "a@b.com\r\nBcc: x@y.com", "a@b.com\n", "a@b.com,c@d.com",
    "a@-b.com", "李@例子.中国", "a@b.com>", '"a"@b.com', "x" * 65 + "@b.com",
])
def test_invalid_addresses_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress) as e:
        normalize_email(bad)
    assert e.value.hint


# --- planning ------------------------------------------------------------------------------


def _stories() -> list:
    return [
        story("s1", ["en", "zh-Hans"], {"en": "One", "zh-Hans": "一"}, {"en": ["e1"], "zh-Hans": ["z1"]}, ["安全", "政策"]),
        story("s2", ["en"], {"en": "Two"}, {"en": ["e2"]}, ["Agent"]),
        story("s3", ["zh-Hant"], {"zh-Hant": "三"}, {"zh-Hant": ["z3"]}, [], excerpt=["zh-Hant"]),
        story("s4", ["en", "zh-Hans"], {"en": "Four", "zh-Hans": "四"}, {"en": ["e4"]}, ["政策"]),
    ]


def test_plan_keeps_rank_order_and_max() -> None:
    assert [s.id for s in plan_stories(_stories(), set(), [], 2)] == ["s1", "s2"]


def test_plan_skips_sent_stories() -> None:
    assert [s.id for s in plan_stories(_stories(), {"s1", "s2"}, [], 10)] == ["s3", "s4"]


def test_plan_filters_by_tags_and_aliases() -> None:
    assert [s.id for s in plan_stories(_stories(), set(), ["政策"], 10)] == ["s1", "s4"]
    assert [s.id for s in plan_stories(_stories(), set(), ["policy"], 10,
                                       {"政策": "policy"})] == ["s1", "s4"]
    assert [s.id for s in plan_stories(_stories(), set(), ["AGENT"], 10)] == ["s2"]
    assert plan_stories(_stories(), {"s1", "s4"}, ["政策"], 10) == []


# --- rendering -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(BASE, TEMPLATE, "AI News · AI资讯 <digest@news.example.org>", "daily")


def _msg(renderer: Renderer, stories, langs, to="reader@example.com"):
    body = renderer.render_digest(stories, langs, "2026-11-22", "daily")
    mid = message_id("daily", "2026-11-22", to, renderer.domain)
    data = renderer.build_message(body, to, mid, NOW, BASE + "unsubscribe?t=UNSUB.tok",
                                  BASE + "preferences?t=PREFS.tok")
    return data, email.message_from_bytes(data, policy=email.policy.default)


def test_message_structure_and_headers(renderer: Renderer) -> None:
    data, msg = _msg(renderer, _stories(), ["en", "zh"])
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["To"] == "reader@example.com"
    assert msg["From"].addresses[0].addr_spec == "digest@news.example.org"
    assert msg["From"].addresses[0].display_name == "AI News · AI资讯"
    assert msg["Subject"] == "One | AI News Daily · AI资讯日报 — 2026-11-22"  # lead story first
    assert msg["Message-ID"] == message_id("daily", "2026-11-22", "reader@example.com",
                                           "news.example.org")
    assert re.fullmatch(r"<[0-9a-f]{32}@news\.example\.org>", msg["Message-ID"])
    assert msg["Date"].datetime == NOW
    assert msg["List-Id"] == "daily <daily.news.example.org>"
    assert msg["List-Unsubscribe"] == (f"<{BASE}unsubscribe?t=UNSUB.tok>, "
                                       "<mailto:digest@news.example.org?subject=unsubscribe>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert data.isascii()
    assert not msg.defects and all(not p.defects for p in msg.iter_parts())


def test_message_id_is_deterministic_per_edition_and_subscriber() -> None:
    a = message_id("daily", "2026-11-22", "a@example.com", "x.org")
    assert a == message_id("daily", "2026-11-22", "a@example.com", "x.org")
    assert a != message_id("daily", "2026-11-23", "a@example.com", "x.org")
    assert a != message_id("daily", "2026-11-22", "b@example.com", "x.org")
    assert a != message_id("weekly", "2026-11-22", "a@example.com", "x.org")


def test_bilingual_blocks_english_then_chinese_with_lang(renderer: Renderer) -> None:
    _, msg = _msg(renderer, _stories()[:1], ["en", "zh"])
    text, html = parts(msg)
    assert html.index('lang="en"') < html.index('lang="zh-Hans"')
    assert "One" in html and "一" in html and "e1" in html and "z1" in html
    assert text.index("One") < text.index("一")
    assert story_url(BASE, "s1") in html and story_url(BASE, "s1") in text
    assert "Hot / 热度 80" not in html  # no scores on this story: nothing invented


def test_english_reader_never_sees_a_chinese_only_story(renderer: Renderer) -> None:
    _, msg = _msg(renderer, _stories()[1:3], ["en"])
    text, html = parts(msg)
    assert "三" not in html + text and "stories/s3" not in html + text
    assert "Two" in html and "退订" not in html and "Unsubscribe" in html


def test_excerpt_tldr_is_labelled(renderer: Renderer) -> None:
    _, msg = _msg(renderer, [_stories()[2]], ["zh"])
    text, html = parts(msg)
    assert "三" in html and 'lang="zh-Hant"' in html
    assert "摘自原文" in html and "摘自原文" in text


def test_chinese_reader_only_chinese_chrome(renderer: Renderer) -> None:
    _, msg = _msg(renderer, [_stories()[0]], ["zh"])
    text, html = parts(msg)
    assert msg["Subject"] == "一 | AI资讯日报 — 2026-11-22"
    assert '<html lang="zh"' in html
    assert "一" in html and "One" not in html and "e1" not in html
    assert "退订" in html and "Unsubscribe" not in html


def test_missing_language_noted_for_bilingual_reader(renderer: Renderer) -> None:
    _, msg = _msg(renderer, [_stories()[1]], ["en", "zh"])
    _, html = parts(msg)
    assert "Two" in html and "暂无中文版" in html


def test_scores_tags_links_and_preheader(renderer: Renderer) -> None:
    s = story("s9", ["en"], {"en": "Scored"}, {"en": ["b"]}, ["Agent", "安全"],
              {"hot": 80, "quality": 70, "impact": 75})
    _, msg = _msg(renderer, [s], ["en"])
    text, html = parts(msg)
    assert "Hot 80" in text and "Quality 70" in text and "Impact 75" in text
    assert "Agent" in html and "安全" not in html  # no [tags] alias given: not shown
    assert 'class="preheader"' in html and "display: none" in html
    assert f'href="{BASE}unsubscribe?t=UNSUB.tok"' in html
    assert f'href="{BASE}preferences?t=PREFS.tok"' in html
    assert f"{BASE}unsubscribe?t=UNSUB.tok" in text


def test_css_is_inlined_and_dark_mode_kept(renderer: Renderer) -> None:
    _, msg = _msg(renderer, _stories(), ["en", "zh"])
    _, html = parts(msg)
    assert 'style="' in html and "prefers-color-scheme: dark" in html
    assert 'width="600"' in html and "max-width: 600px" in html
    # desktop Outlook: a fixed 600px table around the column (MSO conditional comments)
    assert re.search(r'<!--\[if mso\]><table[^>]*width="600"', html)
    assert '<meta name="color-scheme" content="light dark">' in html
    assert ".masthead { background-color:" in html.split("prefers-color-scheme: dark", 1)[1]


def test_hostile_story_text_is_escaped_and_stays_out_of_headers(renderer: Renderer) -> None:
    evil = story("evil", ["en"], {"en": "<script>alert(1)</script>\r\nBcc: x@evil.com"},
                 {"en": ["<img src=x onerror=alert(1)>", "%%DIGEST-UNSUBSCRIBE-URL%%",
                         "bell\x07 and nul\x00"]}, ["<b>tag</b>"])
    data, msg = _msg(renderer, [evil], ["en"])
    text, html = parts(msg)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "<b>tag" not in html
    assert "Bcc" not in msg and "x@evil.com" not in data.split(b"\r\n\r\n")[0].decode()
    assert "\x07" not in html and "\x00" not in text
    assert "%DIGEST-UNSUBSCRIBE-URL%" in html  # defused, not replaced by a real link
    assert html.count("unsubscribe?t=UNSUB.tok") == 1


@pytest.mark.parametrize("to", ["a@b.com\r\nBcc: x@y.com", "a@b.com>, <x@y.com", "a@b.com\n"])
def test_build_message_refuses_unsafe_recipient(renderer: Renderer, to: str) -> None:
    body = renderer.render_digest(_stories()[:1], ["en"], "2026-11-22")
    with pytest.raises(InvalidAddress):
        renderer.build_message(body, to, "<x@y>", NOW, BASE + "unsubscribe?t=a")


def test_sender_with_line_break_refused() -> None:
    with pytest.raises(InvalidAddress):
        Renderer(BASE, TEMPLATE, "AI <a@b.com>\r\nBcc: x@y.com", "daily")


def test_size_cap_drops_stories_and_says_more_online(renderer: Renderer) -> None:
    big = [story(f"b{i}", ["en", "zh-Hans"], {"en": f"Title {i} " + "x" * 200, "zh-Hans": "标题" * 60},
                 {"en": ["word " * 300] * 5, "zh-Hans": ["中文要点" * 150] * 5}) for i in range(30)]
    body = renderer.render_digest(big, ["en", "zh"], "2026-11-22")
    assert len(body.html.encode()) <= MAX_HTML_BYTES
    assert 0 < len(body.story_ids) < 30
    assert "More stories are on the site" in body.html


def test_body_is_rendered_once_and_personalised_per_recipient(renderer: Renderer) -> None:
    body = renderer.render_digest(_stories(), ["en"], "2026-11-22")
    a = renderer.build_message(body, "a@example.com", "<1@x>", NOW, BASE + "unsubscribe?t=AAA")
    b = renderer.build_message(body, "b@example.com", "<2@x>", NOW, BASE + "unsubscribe?t=BBB")
    ma = email.message_from_bytes(a, policy=email.policy.default)
    mb = email.message_from_bytes(b, policy=email.policy.default)
    assert "unsubscribe?t=AAA" in parts(ma)[1] and "unsubscribe?t=BBB" in parts(mb)[1]
    assert "AAA" not in parts(mb)[1]


def test_confirmation_mail(renderer: Renderer) -> None:
    body = renderer.render_confirm(["zh"], BASE + "confirm?t=TOKEN")
    data = renderer.build_message(body, "new@example.com", "<c@x>", datetime(2026, 1, 1, tzinfo=UTC))
    msg = email.message_from_bytes(data, policy=email.policy.default)
    text, html = parts(msg)
    assert "确认订阅" in msg["Subject"] and "List-Unsubscribe" not in msg
    assert f'href="{BASE}confirm?t=TOKEN"' in html and f"{BASE}confirm?t=TOKEN" in text


@settings(max_examples=300)
@given(st.emails())
def test_accepted_addresses_read_back_identically_by_the_email_package(addr: str) -> None:
    from email.headerregistry import Address
    from email.utils import parseaddr

    try:
        norm = normalize_email(addr)
    except InvalidAddress:
        return
    assert parseaddr(norm)[1] == norm
    assert Address(addr_spec=norm).addr_spec == norm


@pytest.mark.parametrize("text", ["%%DIGEST-UNSUBSCRIBE-URL%%", "%%%DIGEST-UNSUBSCRIBE-URL%%",
                                  "%%%%%%DIGEST-PREFERENCES-URL%%"])
def test_story_text_cannot_forge_link_markers(text: str) -> None:
    from digest.mail.render import PREFS_MARK, UNSUB_MARK, clean

    out = clean(text)
    assert UNSUB_MARK not in out and PREFS_MARK not in out
