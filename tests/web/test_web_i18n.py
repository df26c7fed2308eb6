"""The subscription pages in the reader's language: digest.i18n.negotiate (a table), each page
in English, Chinese or both by Accept-Language or by the link's subscriber, the form's field
errors tied to their fields, and the tag checkboxes holding the stored stories' tags."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest

from digest import i18n, web
from digest.mail import tokens
from digest.models import Subscriber
from digest.store import Store
from digest.subscribers import TagChoice, confirm_token, tag_choices
from tests.support.web import NOW, free_port, publish_seeds, running, set_secret, write_config

SECRET = b"test-secret-0123456789abcdef"
BOTH = ("en", "zh")


@pytest.mark.parametrize("header,known,expected", [
    (None, None, BOTH),
    ("", None, BOTH),
    ("en", None, ("en",)),
    ("en-US,en;q=0.9", None, ("en",)),
    ("en-GB", None, ("en",)),
    ("zh", None, ("zh",)),
    ("zh-CN", None, ("zh",)),
    ("zh-Hans", None, ("zh",)),
    ("zh-TW", None, ("zh",)),
    ("ZH-hant-TW", None, ("zh",)),
    ("zh-CN,zh;q=0.9,en;q=0.8", None, ("zh",)),
    ("en;q=0.5, zh;q=0.8", None, ("zh",)),          # q decides, not the order
    ("fr-FR, de;q=0.9, en;q=0.3", None, ("en",)),   # the best one we have
    ("fr, de", None, BOTH),                          # none we have: both
    ("*", None, BOTH),
    ("en;q=0, *", None, ("zh",)),                    # English refused
    ("en;q=0", None, ("zh",)),
    ("en;q=abc, zh", None, ("zh",)),                 # a malformed q drops its range
    ("en_US", None, BOTH),                           # not a language tag
    (";;,,", None, BOTH),
    # a subscriber's languages bound the choice; the browser picks among them
    ("en", ["zh"], ("zh",)),
    (None, ["zh"], ("zh",)),
    ("zh-CN", ["en"], ("en",)),
    ("en", ["en", "zh"], ("en",)),
    ("zh-TW", ["en", "zh"], ("zh",)),
    (None, ["en", "zh"], BOTH),
    ("fr", ["zh", "en"], BOTH),
    ("en", ["zh-Hans"], ("zh",)),
    ("en", [], ("en",)),                             # unknown (empty): the browser decides
])
def test_negotiate(header, known, expected):
    assert i18n.negotiate(header, known) == expected


def test_every_string_has_both_languages_and_one_register():
    for key, entry in i18n.STRINGS.items():
        assert set(entry) == {"en", "zh"}, key
        assert "你" not in entry["zh"], f"{key}: the pages say 您"
        assert not re.search(r"[\u4e00-\u9fff][,;:!?]", entry["zh"]), f"{key}: half-width mark in Chinese"


def test_rule_messages_translate():
    assert i18n.translate("unknown time zone 'Mars/Olympus'", "zh") == "未知的时区 'Mars/Olympus'。"
    assert i18n.translate("something new", "zh") is None
    assert i18n.message(["zh"], "something new") == [("en", "something new")]  # shown, marked English
    assert i18n.field_message("email: 'x' is not a valid email address") == "'x' is not a valid email address"


def test_tag_choices_count_spellings_once_and_cap():
    stories = [["AI", "Safety"], ["ai", "安全"], ["Agent", "AI", "ai"], ["安全"]]
    assert tag_choices(stories, {"安全": "security"}) == [
        TagChoice("AI", None, 3), TagChoice("安全", "security", 2),
        TagChoice("Agent", None, 1), TagChoice("Safety", None, 1)]
    assert [c.tag for c in tag_choices(stories, {}, limit=2)] == ["AI", "安全"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    set_secret(monkeypatch, SECRET.decode())
    config = write_config(tmp_path, free_port())
    publish_seeds(config)
    state = web.WebState(config, per_ip=web.RateLimiter(burst=50, refill=1))
    store = Store(config.store.path)
    with running(config, state) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        yield config, client, store


def _pending(store: Store, email: str, langs: list[str]) -> str:
    now = datetime.now(UTC).replace(microsecond=0)  # the server's clock checks the link
    store.add_subscriber(Subscriber(email=email, status="pending", languages=langs, created=now))
    return confirm_token(SECRET, email, now)


def _active(store: Store, email: str, langs: list[str]) -> None:
    store.add_subscriber(Subscriber(email=email, status="active", languages=langs, created=NOW))


def _subscribe(client: httpx.Client, headers: dict[str, str], **fields) -> httpx.Response:
    token = client.get("/csrf").json()["token"]
    data = {"email": "new@example.com", "languages": ["en", "zh"], "timezone": "UTC", "csrf": token, **fields}
    return client.post("/subscribe", data=data, headers=headers)


# (page, how to get it) → the heading in each language
PAGES = {
    "subscribe": ("订阅摘要", "Subscribe to the digest"),
    "check-inbox": ("请查收邮件", "Check your inbox"),
    "confirm": ("确认订阅", "Confirm your subscription"),
    "confirmed": ("订阅成功", "You are subscribed"),
    "preferences": ("您的摘要", "Your digest"),
    "unsubscribe": ("退订", "Unsubscribe"),
    "unsubscribed": ("您已退订", "You are unsubscribed"),
    "error": ("链接或表单无效", "This link or form is not valid"),
    "not-found": ("找不到页面", "Not found"),
}


def _get(page: str, client: httpx.Client, store: Store, headers: dict[str, str], n: int) -> httpx.Response:
    email = f"p{n}@example.com"  # a subscriber reading both: the browser decides
    if page == "subscribe":
        return client.get("/subscribe", headers=headers)
    if page == "check-inbox":
        return _subscribe(client, headers, email=email)
    if page in ("confirm", "confirmed"):
        t = _pending(store, email, ["en", "zh"])
        return client.request("GET" if page == "confirm" else "POST", "/confirm", params={"t": t}, headers=headers)
    _active(store, email, ["en", "zh"])
    if page == "preferences":
        return client.get("/preferences", params={"t": tokens.sign(SECRET, "prefs", email, None)}, headers=headers)
    if page in ("unsubscribe", "unsubscribed"):
        t = tokens.sign(SECRET, "unsubscribe", email, None)
        if page == "unsubscribe":
            return client.get("/unsubscribe", params={"t": t}, headers=headers)
        return client.post("/unsubscribe", params={"t": t}, data={"List-Unsubscribe": "One-Click"}, headers=headers)
    if page == "error":
        return client.get("/confirm", params={"t": "not-a-token"}, headers=headers)
    return client.get("/no/such/page", headers=headers)


def _h1(html: str) -> str:
    return re.sub(r"<[^>]+>", "", re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S).group(1))


def test_each_page_speaks_the_browsers_language(env):
    _, client, store = env
    n = 0
    for page, (zh, en) in PAGES.items():
        for header, html_lang, want, unwanted in (
                ({"Accept-Language": "en-US,en;q=0.9"}, "en", [en], [zh]),
                ({"Accept-Language": "zh-CN"}, "zh-Hans", [zh], [en]),
                ({}, "en", [en, zh], [])):
            n += 1
            r = _get(page, client, store, header, n)
            assert r.headers["content-type"].startswith("text/html"), page
            assert f'<html lang="{html_lang}">' in r.text, (page, header)
            h1 = _h1(r.text)
            for text in want:
                assert text in h1, (page, header, h1)
            for text in unwanted:
                assert text not in h1, (page, header, h1)
            if not unwanted:  # bilingual: each part says its language
                assert f'<span lang="en">{en}</span>' in r.text and f'<span lang="zh-Hans">{zh}</span>' in r.text
                assert r.headers["content-language"] == "en, zh-Hans"
            else:
                assert r.headers["content-language"] == html_lang
            assert "accept-language" in r.headers["vary"].lower()


def test_error_messages_are_translated(env):
    _, client, _ = env
    r = client.get("/confirm", params={"t": "not-a-token"}, headers={"Accept-Language": "zh"})
    assert r.status_code == 400
    assert "此链接无效：链接不完整或已损坏。" in r.text and "请使用您收到的最新链接" in r.text
    assert "not valid" not in r.text


def test_a_zh_subscribers_links_are_in_chinese_whatever_the_browser(env):
    _, client, store = env
    en = {"Accept-Language": "en-US,en;q=0.9"}
    t = _pending(store, "zh@example.com", ["zh"])
    r = client.get("/confirm", params={"t": t}, headers=en)
    assert '<html lang="zh-Hans">' in r.text and _h1(r.text) == "确认订阅" and "Confirm" not in r.text
    assert "开始向 zh@example.com 发送摘要吗？" in r.text
    r = client.post("/confirm", params={"t": t}, headers=en)
    assert _h1(r.text) == "订阅成功"
    r = client.get("/preferences", params={"t": tokens.sign(SECRET, "prefs", "zh@example.com", None)}, headers=en)
    assert '<html lang="zh-Hans">' in r.text and _h1(r.text) == "您的摘要"
    assert ">退订</a>" in r.text  # the quiet link, no button beside Save
    assert 'class="danger"' not in r.text and "unsubscribe-form" not in r.text
    r = client.get("/unsubscribe", params={"t": tokens.sign(SECRET, "unsubscribe", "zh@example.com", None)},
                   headers=en)
    assert _h1(r.text) == "退订" and "停止向 zh@example.com 发送摘要吗？" in r.text


def test_form_errors_sit_beside_their_fields(env):
    _, client, store = env
    r = _subscribe(client, {"Accept-Language": "zh-CN"}, email="not-an-address", languages=[],
                   timezone="Mars/Olympus")
    assert r.status_code == 400 and store.list_subscribers() == []
    html = r.text
    assert re.search(r'<input id="sub-email"[^>]* aria-invalid="true" aria-describedby="sub-email-error"', html)
    assert 'id="sub-email-error"' in html and "不是有效的邮箱地址" in html
    assert 'aria-describedby="sub-languages-error"' in html and "请至少选择一种语言。" in html
    assert re.search(r'<select id="sub-timezone"[^>]* aria-invalid="true" aria-describedby="sub-timezone-error', html)
    assert "未知的时区 &#39;Mars/Olympus&#39;。" in html
    # what was sent is shown again: no language ticked, the typed zone kept
    assert not re.search(r'name="languages" value="(en|zh)" checked', html)
    assert '<option value="Mars/Olympus" selected>' in html
    # the field error comes right after its label, before the field
    assert html.index('for="sub-email"') < html.index('id="sub-email-error"') < html.index('<input id="sub-email"')
    # an English reader gets the rule's own words (the CLI's)
    r = _subscribe(client, {"Accept-Language": "en"}, email="ok@example.com", timezone="Mars/Olympus")
    assert "unknown time zone &#39;Mars/Olympus&#39;" in r.text and 'aria-invalid="true"' in r.text

    _active(store, "pref@example.com", ["en"])
    prefs = tokens.sign(SECRET, "prefs", "pref@example.com", None)
    page = client.get("/preferences", params={"t": prefs})
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = client.post("/preferences", params={"t": prefs},
                    data={"csrf": csrf, "languages": ["en"], "timezone": "Nowhere/Land"})
    assert r.status_code == 400
    assert re.search(r'<select id="prefs-timezone"[^>]* aria-invalid="true" aria-describedby="prefs-timezone-error', r.text)
    assert store.get_subscriber("pref@example.com").timezone == "UTC"


def test_tag_checkboxes_are_the_stored_stories_tags(env):
    config, client, store = env
    expected = tag_choices((s.tags for s in store.list_stories()), config.tags)
    assert expected
    for html in (client.get("/subscribe").text, (config.feeds.output / "index.html").read_text("utf-8")):
        boxes = re.findall(r'<input type="checkbox" name="tags" value="([^"]*)"', html)
        assert boxes == [c.tag for c in expected]
    # the boxes subscribe: two tags ticked come back as the subscriber's tags
    picked = [c.tag for c in expected[:2]]
    assert _subscribe(client, {}, email="tags@example.com", tags=picked).status_code == 200
    assert store.get_subscriber("tags@example.com").tags == picked


def test_time_zone_picker_lists_zones_by_region(env):
    _, client, _ = env
    html = client.get("/subscribe", headers={"Accept-Language": "zh"}).text
    assert '<optgroup label="亚洲">' in html and '<option value="Asia/Shanghai">Shanghai</option>' in html
    assert '<option value="UTC" selected>UTC</option>' in html  # without script: UTC
    assert 'data-browser-default="1"' in html
