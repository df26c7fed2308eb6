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
            # time zone filled from the browser, editable; the token arrives, enabling the button
            assert form.locator("input[name=timezone]").input_value() == "America/New_York"
            page.wait_for_function("document.querySelector('#subscribe-form input[name=csrf]').value !== ''")
            assert form.locator("button[type=submit]").is_enabled()

            form.locator("input[name=email]").fill("reader@example.com")
            form.locator("input[name=languages][value=en]").uncheck()
            form.locator("input[name=tags]").fill("安全, agent")
            with page.expect_navigation():
                form.locator("button[type=submit]").click()
            assert page.locator("h1").inner_text() == "Check your inbox"
            sub = store.get_subscriber("reader@example.com")
            assert (sub.status, sub.languages, sub.tags, sub.timezone) == (
                "pending", ["zh"], ["安全", "agent"], "America/New_York")

            [mail] = sink.wait(1)
            assert mail["To"] == "reader@example.com"
            page.goto(link_in(mail, "confirm"))
            # opening the link changes nothing (mail scanners open links too): a button confirms
            assert page.locator("h1").inner_text() == "Confirm your subscription"
            assert store.get_subscriber("reader@example.com").status == "pending"
            with page.expect_navigation():
                page.locator("#confirm-form button").click()
            assert page.locator("h1").inner_text() == "You are subscribed"
            assert store.get_subscriber("reader@example.com").status == "active"

            with page.expect_navigation():
                page.locator("#preferences-link").click()
            prefs = page.locator("#preferences-form")
            assert prefs.locator("input[name=timezone]").input_value() == "America/New_York"
            prefs.locator("input[name=languages][value=en]").check()
            prefs.locator("input[name=tags]").fill("")
            prefs.locator("input[name=timezone]").fill("Asia/Shanghai")
            with page.expect_navigation():
                prefs.locator("button[type=submit]").click()
            assert page.locator("#saved").is_visible(), page.content()
            sub = store.get_subscriber("reader@example.com")
            assert (sub.status, sub.languages, sub.tags, sub.timezone) == ("active", ["en", "zh"], [], "Asia/Shanghai")
            assert page.locator("#preferences-form input[name=timezone]").input_value() == "Asia/Shanghai"

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
        assert page.locator("#preferences-form input[name=tags]").input_value() == '<img src=x onerror="document.title=1">'
        assert page.locator("img").count() == 0
        assert page.title() != "1"
