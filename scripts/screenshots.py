"""Screenshot every web page in headless Chromium: the published site (index, a story, a tag)
and the subscription pages (subscribe, check your inbox, confirm, confirmed, preferences,
unsubscribe, an error), at a desktop and a phone width, light and dark.

    python3 scripts/screenshots.py [--out docs/screenshots]

Writes <out>/<page>-<lang>-<width>-<scheme>.png (lang: en, zh, or mul for the bilingual
published pages; width: 1280, 390; scheme: light, dark). The seeds are ingested and published
into a temp dir at a fixed time, subscribers are made through the pipeline, and the web app
runs on a free loopback port; pages reach their language the way a reader's would
(Accept-Language from the browser's locale, or the subscriber's own languages on mail
links). Needs playwright and Debian's chromium (/usr/bin/chromium); Chinese text needs a
CJK font (`apt-get install fonts-noto-cjk`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest import subscribers  # noqa: E402
from digest.config import Config, load_config  # noqa: E402
from digest.pipeline import add_subscriber, ingest_paths, open_subscriptions, publish  # noqa: E402

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SECRET = "screenshots-secret-0123456789abcdef"
WIDTHS = {1280: 800, 390: 844}  # width → viewport height
SCHEMES = ("light", "dark")
LOCALES = {"en": ("en-US", "America/New_York"), "zh": ("zh-CN", "Asia/Shanghai")}
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_site(work: Path) -> Config:
    port = free_port()
    (work / "config.toml").write_text(
        f'[site]\nbase_url = "http://127.0.0.1:{port}/"\n[store]\npath = "store"\n'
        f'[ingest]\npaths = ["{REPO / "seeds"}"]\n[feeds]\noutput = "public"\n'
        '[smtp]\ntransport = "maildir"\nmaildir = "maildir"\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\n', encoding="utf-8")
    config = load_config(work / "config.toml")
    report = ingest_paths(config, [REPO / "seeds"], as_of=NOW, echo=lambda *a, **k: None)
    if report.rejected:
        raise SystemExit(f"seeds rejected: {report.rejected}")
    publish(config, now=NOW)
    return config


def add(config: Config, email: str, langs: list[str], status: str, tags: tuple[str, ...] = (),
        tz: str = "UTC") -> None:
    """A subscriber made the way the CLI (active) or the web form (pending) makes one."""
    if status == "active":
        add_subscriber(config, email, langs, list(tags), tz)
    else:
        sub = subscribers.new_subscriber(email, langs, list(tags), tz, "pending", datetime.now(UTC))
        open_subscriptions(config).subscribe(sub)


def add_readers(config: Config) -> None:
    """The subscribers whose mail links the pages answer: their languages decide the page's."""
    add(config, "reader-en@example.com", ["en"], "active", ("安全", "Agent"), "America/New_York")
    add(config, "reader-zh@example.com", ["zh"], "active", ("政策",), "Asia/Shanghai")
    add(config, "pending-en@example.com", ["en"], "pending")
    for width in WIDTHS:
        for scheme in SCHEMES:
            add(config, f"confirmed-{width}-{scheme}@example.com", ["zh"], "pending")


@contextmanager
def serving(config: Config) -> Iterator[str]:
    """The web app (digest.web.serve_async) in a thread, with rate limits loose enough for
    the submissions below."""
    from digest.web import RateLimiter, WebState, serve_async

    state = WebState(config, per_ip=RateLimiter(burst=100, refill=1))
    loop_box: dict[str, object] = {}

    def run() -> None:
        async def main() -> None:
            loop_box["loop"], loop_box["stop"] = asyncio.get_running_loop(), asyncio.Event()
            await serve_async(config, loop_box["stop"], state=state)  # type: ignore[arg-type]

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection((config.web.host, config.web.port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the web app did not start") from None
            time.sleep(0.05)
    try:
        yield f"http://{config.web.host}:{config.web.port}"
    finally:
        loop_box["loop"].call_soon_threadsafe(loop_box["stop"].set)  # type: ignore[attr-defined]
        thread.join(15)


def shots(config: Config, url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    secret = SECRET.encode()
    public = config.feeds.output
    story = sorted((public / "stories").glob("*.html"))[0].name
    tag = sorted((public / "tags").glob("*.html"))[0].name
    written: list[Path] = []

    def confirm_link(email: str) -> str:
        return f"{url}/confirm?t={subscribers.confirm_token(secret, email, datetime.now(UTC))}"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            def shoot(name: str, lang: str, go, *, full: bool = True, widths=WIDTHS, schemes=SCHEMES) -> None:
                locale, zone = LOCALES.get(lang, LOCALES["en"])
                for width in widths:
                    for scheme in schemes:
                        ctx = browser.new_context(viewport={"width": width, "height": WIDTHS[width]},
                                                  color_scheme=scheme, locale=locale, timezone_id=zone)
                        page = ctx.new_page()
                        go(page, f"{width}-{scheme}")
                        path = out / f"{name}-{lang}-{width}-{scheme}.png"
                        page.screenshot(path=str(path), full_page=full)
                        overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
                        if overflow:
                            print(f"warning: {path.name} overflows horizontally", file=sys.stderr)
                        written.append(path)
                        ctx.close()

            def goto(path: str):
                return lambda page, _key: page.goto(url + path)

            def submitted(page, key: str) -> None:
                page.goto(url + "/subscribe")
                page.fill("#sub-email", f"new-{key}@example.com")
                page.wait_for_function("document.querySelector('#subscribe-form input[name=csrf]').value !== ''")
                with page.expect_navigation():
                    page.click("#subscribe-form button[type=submit]")

            def refused(page, key: str) -> None:
                page.goto(url + "/subscribe")
                page.fill("#sub-email", f"bad-{key}@example.com")
                for code in ("en", "zh"):
                    page.uncheck(f"#subscribe-form input[name=languages][value={code}]")
                with page.expect_navigation():
                    page.click("#subscribe-form button[type=submit]")

            def confirmed(page, key: str) -> None:
                email = f"confirmed-{key}@example.com"
                page.goto(confirm_link(email))
                with page.expect_navigation():
                    page.click("#confirm-form button")

            prefs = subscribers.prefs_token(secret, "reader-en@example.com")
            unsub = subscribers.unsubscribe_token(secret, "reader-zh@example.com")
            # The published pages: tall, so the first screen only.
            shoot("index", "mul", goto("/"), full=False)
            shoot("story", "mul", goto(f"/stories/{story}"), full=False)
            shoot("tag", "mul", goto(f"/tags/{tag}"), full=False)
            # index.html's own copy of the subscribe form (static, both languages)
            shoot("index-form", "mul", lambda page, _k: (page.goto(url + "/"),
                                                        page.locator("#subscribe").scroll_into_view_if_needed()),
                  full=False, widths=(390,))
            shoot("subscribe", "en", goto("/subscribe"))
            shoot("subscribe", "zh", goto("/subscribe"))
            shoot("subscribe-error", "zh", refused, widths=(390,))
            shoot("check-inbox", "zh", submitted)
            shoot("confirm", "en", lambda page, _k: page.goto(confirm_link("pending-en@example.com")))
            shoot("confirmed", "zh", confirmed)
            shoot("preferences", "en", goto(f"/preferences?t={prefs}"))
            shoot("unsubscribe", "zh", goto(f"/unsubscribe?t={unsub}"))
            shoot("error", "en", goto("/confirm?t=not-a-token"))
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["DIGEST_SECRET"] = SECRET  # [web] secret_env's default: links signed with it
    with tempfile.TemporaryDirectory(prefix="digest-web-shots-") as tmp:
        config = make_site(Path(tmp))
        add_readers(config)
        with serving(config) as url:
            for path in shots(config, url, args.out):
                print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
