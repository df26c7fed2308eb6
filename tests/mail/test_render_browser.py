"""What a reader sees: the HTML digest opened in headless Chromium on a phone and a desktop."""

from __future__ import annotations

import email
import email.policy
import os
from pathlib import Path

import pytest

from digest.pipeline.sending import send_digest
from tests.support.send import NOW, SECRET, add_subscribers, make_project, parts, sub

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser  # tests/conftest.py: external; a missing Chromium fails `make test`


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def digests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real digests from the seeds, one file per subscriber, as the HTML part."""
    tmp = tmp_path_factory.mktemp("browser")
    os.environ["DIGEST_SECRET"] = SECRET
    try:
        config = make_project(tmp)
        add_subscribers(config, sub("en@example.com", ["en"]), sub("zh@example.com", ["zh"]),
                        sub("both@example.com", ["en", "zh"]))
        assert len(send_digest(config, now=NOW).sent) == 3
    finally:
        os.environ.pop("DIGEST_SECRET", None)
    out = {}
    for f in (Path(config.smtp.maildir) / "new").iterdir():
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        page = tmp / (msg["To"].split("@")[0] + ".html")
        page.write_text(parts(msg)[1], encoding="utf-8")
        out[msg["To"].split("@")[0]] = page
    return out


def _open(browser, path: Path, width: int, dark: bool = False):
    ctx = browser.new_context(viewport={"width": width, "height": 800},
                              color_scheme="dark" if dark else "light",
                              java_script_enabled=False)
    page = ctx.new_page()
    page.goto(path.as_uri())
    return ctx, page


def test_phone_reader_sees_both_languages_within_the_screen(browser, digests) -> None:
    ctx, page = _open(browser, digests["both"], 375)
    try:
        body = page.inner_text("body")
        assert "China may have accessed Mythos" in body and "中国可能已访问Mythos" in body
        assert page.locator('[lang="en"]').count() >= 2
        assert page.locator('[lang="zh-Hans"]').count() >= 2
        # nothing wider than the phone: no horizontal scrolling
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        box = page.locator("table.container").bounding_box()
        assert box is not None and box["width"] <= 375
        for name in ("Unsubscribe", "退订"):  # one footer line per language
            unsub = page.get_by_role("link", name=name, exact=True)
            assert unsub.is_visible()
            assert "/unsubscribe?t=" in unsub.get_attribute("href")
        assert page.get_by_role("link", name="Preferences", exact=True).is_visible()
        assert page.get_by_role("link", name="偏好设置", exact=True).is_visible()
        assert "Sent to both@example.com" in body and "本邮件发送至 both@example.com" in body
        # the preheader is for the inbox list only
        assert not page.locator(".preheader").is_visible()
    finally:
        ctx.close()


def test_desktop_layout_is_at_most_600px(browser, digests) -> None:
    ctx, page = _open(browser, digests["en"], 1280)
    try:
        box = page.locator("table.container").bounding_box()
        assert box is not None and 500 <= box["width"] <= 600
        body = page.inner_text("body")
        assert "China may have accessed Mythos" in body and "中国可能已访问Mythos" not in body
        assert "in this issue" in body.lower() and "Not available in English" not in body
        assert page.get_by_role("link", name="Unsubscribe").is_visible()
    finally:
        ctx.close()


def test_chinese_reader_page_is_marked_chinese(browser, digests) -> None:
    ctx, page = _open(browser, digests["zh"], 375)
    try:
        assert page.evaluate("document.documentElement.lang") == "zh"
        body = page.inner_text("body")
        assert "中国可能已访问Mythos" in body and "China may have accessed Mythos" not in body
        assert page.get_by_role("link", name="退订").is_visible()
    finally:
        ctx.close()


def _luminance(rgb: str) -> float:
    r, g, b = (int(x) for x in rgb[rgb.index("(") + 1: rgb.index(")")].split(",")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_dark_mode_turns_the_card_dark_with_light_text(browser, digests) -> None:
    ctx, page = _open(browser, digests["both"], 375, dark=True)
    try:
        bg = page.evaluate(
            "getComputedStyle(document.querySelector('table.container')).backgroundColor")
        fg = page.evaluate("getComputedStyle(document.querySelector('td.pad.story')).color")
        assert _luminance(bg) < 80 and _luminance(fg) > 150
        # the masthead stays distinct from the card; dividers do not glare
        head = page.evaluate(
            "getComputedStyle(document.querySelector('td.masthead')).backgroundColor")
        assert head != bg
        line = page.evaluate(
            "getComputedStyle(document.querySelector('td.pad.story')).borderTopColor")
        assert _luminance(line) < 80
    finally:
        ctx.close()
