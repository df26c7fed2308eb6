"""The whole subscription flow in real headless Chromium: index → subscribe → mail → confirm →
preferences → unsubscribe, against a real server socket and a real aiosmtpd on loopback."""

from __future__ import annotations

import pytest

from digest.store import Store
from tests.support.web import (
    Sink,
    free_port,
    link_in,
    publish_seeds,
    running,
    set_secret,
    write_config,
)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser  # tests/conftest.py: external; a missing Chromium fails `make test`


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def test_subscribe_confirm_preferences_unsubscribe_in_chromium(tmp_path, monkeypatch, browser):
    set_secret(monkeypatch)
    with Sink() as sink:
        config = write_config(tmp_path, free_port(), smtp_port=sink.port)
        publish_seeds(config)
        store = Store(config.store.path)
        with running(config) as server:
            context = browser.new_context(timezone_id="America/New_York", locale="en-US")
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text} {m.location}")
                    if m.type == "error" and "favicon.ico" not in m.location.get("url", "") else None)
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

            page.goto(server.url + "/")
            form = page.locator("#subscribe-form")
            # time zone picked from the browser, editable; the token arrives, enabling the button
            assert form.locator("select[name=timezone]").input_value() == "America/New_York"
            page.wait_for_function("document.querySelector('#subscribe-form input[name=csrf]').value !== ''")
            assert form.locator("button[type=submit]").is_enabled()

            form.locator("input[name=email]").fill("reader@example.com")
            form.locator("input[name=languages][value=en]").uncheck()
            # the tags are the stored stories' tags, as checkboxes
            form.locator("input[name=tags][value='安全']").check()
            form.locator("input[name=tags][value=Agent]").check()
            with page.expect_navigation():
                form.locator("button[type=submit]").click()
            assert page.locator("h1").inner_text() == "Check your inbox"
            sub = store.get_subscriber("reader@example.com")
            assert (sub.status, sub.languages, sub.tags, sub.timezone) == (
                "pending", ["zh"], ["Agent", "安全"], "America/New_York")

            [mail] = sink.wait(1)
            assert mail["To"] == "reader@example.com"
            page.goto(link_in(mail, "confirm"))
            # opening the link changes nothing (mail scanners open links too): a button confirms
            # the subscriber reads Chinese only: their pages are in Chinese, whatever the browser says
            assert page.locator("h1").inner_text() == "确认订阅"
            assert page.locator("html").get_attribute("lang") == "zh-Hans"
            assert store.get_subscriber("reader@example.com").status == "pending"
            with page.expect_navigation():
                page.locator("#confirm-form button").click()
            assert page.locator("h1").inner_text() == "订阅成功"
            assert store.get_subscriber("reader@example.com").status == "active"

            with page.expect_navigation():
                page.locator("#preferences-link").click()
            prefs = page.locator("#preferences-form")
            # the stored zone stays (no browser default on the preferences page)
            assert prefs.locator("select[name=timezone]").input_value() == "America/New_York"
            assert prefs.locator("input[name=tags][value='安全']").is_checked()
            prefs.locator("input[name=languages][value=en]").check()
            for tag in ("安全", "Agent"):
                prefs.locator(f"input[name=tags][value='{tag}']").uncheck()
            prefs.locator("select[name=timezone]").select_option("Asia/Shanghai")
            with page.expect_navigation():
                prefs.locator("button[type=submit]").click()
            assert page.locator("#saved").is_visible(), page.content()
            sub = store.get_subscriber("reader@example.com")
            assert (sub.status, sub.languages, sub.tags, sub.timezone) == ("active", ["en", "zh"], [], "Asia/Shanghai")
            assert page.locator("#preferences-form select[name=timezone]").input_value() == "Asia/Shanghai"

            # leaving is a quiet link to the unsubscribe page, whose button does it
            with page.expect_navigation():
                page.locator("#unsubscribe-link").click()
            with page.expect_navigation():
                page.locator("#unsubscribe-form button").click()
            assert page.locator("#unsubscribed").is_visible()
            assert store.get_subscriber("reader@example.com").status == "unsubscribed"
            # the browser kept no trace of a redirect: the one-click answer is the page itself
            assert "/unsubscribe?t=" in page.url
            assert problems == []
            context.close()


def test_story_text_stays_text_on_the_pages(tmp_path, monkeypatch, browser):
    """A subscriber's tag holding markup shows as text on the preferences page in the browser."""
    from digest.mail import tokens
    from digest.models import Subscriber

    set_secret(monkeypatch)
    config = write_config(tmp_path, free_port())
    config.feeds.output.mkdir(parents=True)
    store = Store(config.store.path)
    store.add_subscriber(Subscriber(email="x@example.com", status="active",
                                    tags=['<img src=x onerror="document.title=1">']))
    with running(config) as server:
        page = browser.new_page()
        t = tokens.sign(b"test-secret-0123456789abcdef", "prefs", "x@example.com", None)
        page.goto(f"{server.url}/preferences?t={t}")
        box = page.locator("#preferences-form input[name=tags]")
        assert box.get_attribute("value") == '<img src=x onerror="document.title=1">' and box.is_checked()
        assert page.locator("img").count() == 0
        assert page.title() != "1"


def test_time_zone_picker_starts_at_the_browsers_zone(tmp_path, monkeypatch, browser):
    """GET /subscribe and index.html's form pick the browser's zone (a nonce'd / hashed inline
    script under the CSP); the preferences page keeps the stored one; a zh browser gets zh."""
    from digest.mail import tokens
    from digest.models import Subscriber

    set_secret(monkeypatch)
    config = write_config(tmp_path, free_port())
    publish_seeds(config)
    Store(config.store.path).add_subscriber(Subscriber(email="x@example.com", status="active",
                                                       timezone="Europe/Berlin"))
    with running(config) as server:
        context = browser.new_context(timezone_id="Asia/Shanghai", locale="zh-CN")
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"{m.text} {m.location}")
                if m.type == "error" and "favicon.ico" not in m.location.get("url", "") else None)
        for path in ("/subscribe", "/"):
            page.goto(server.url + path)
            assert page.locator("#subscribe-form select[name=timezone]").input_value() == "Asia/Shanghai", path
        page.goto(server.url + "/subscribe")
        assert page.locator("html").get_attribute("lang") == "zh-Hans"
        assert page.locator("h1").inner_text() == "订阅摘要"
        t = tokens.sign(b"test-secret-0123456789abcdef", "prefs", "x@example.com", None)
        page.goto(f"{server.url}/preferences?t={t}")
        assert page.locator("#preferences-form select[name=timezone]").input_value() == "Europe/Berlin"
        # a zone the list lacks (an old alias) is added rather than lost
        other = browser.new_context(timezone_id="Asia/Calcutta")
        p2 = other.new_page()
        p2.goto(server.url + "/subscribe")
        zone = p2.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
        assert p2.locator("#subscribe-form select[name=timezone]").input_value() == zone
        other.close()
        assert problems == []  # no CSP refusal of the inline scripts
        context.close()
