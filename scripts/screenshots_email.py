"""Render the email digest for three readers (English, Chinese, both) from seeds/ and
screenshot each in headless Chromium at a desktop and a phone width, light and dark.

    python3 scripts/screenshots_email.py [--out docs/screenshots] [--html-dir DIR]

Writes <out>/email-<reader>-<width>-<scheme>.png (reader: en, zh, en-zh; width: 1200,
390; scheme: light, dark) and <out>/email-confirm-<width>-<scheme>.png (the bilingual
confirmation mail). Needs playwright and Debian's chromium (/usr/bin/chromium); Chinese
text needs a CJK font (`apt-get install fonts-noto-cjk`). The project is a temp copy of
config.toml + seeds/ ingested at a fixed time, so the pictures change only with the code.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.config import load_config  # noqa: E402
from digest.mail.render import Renderer  # noqa: E402
from digest.pipeline import ingest_paths, preview  # noqa: E402

AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
READERS = {"en": ["en"], "zh": ["zh"], "en-zh": ["en", "zh"]}
WIDTHS = (1200, 390)
SCHEMES = ("light", "dark")
CHROMIUM = "/usr/bin/chromium"


def render_pages(work: Path) -> dict[str, Path]:
    """The HTML part of each reader's next digest (and the confirmation mail) as files."""
    shutil.copy(REPO / "config.toml", work / "config.toml")
    shutil.copytree(REPO / "seeds", work / "seeds")
    config = load_config(work / "config.toml")
    report = ingest_paths(config, as_of=AS_OF, echo=lambda _line: None)
    if report.rejected:
        raise SystemExit(f"seeds rejected: {report.rejected}")
    pages = {name: preview(config, langs=langs, out=work / f"email-{name}.html", now=NOW)
             for name, langs in READERS.items()}
    dcfg = config.digest(None)
    renderer = Renderer(config.site.base_url, dcfg.subject, config.smtp.sender, dcfg.name,
                        tag_aliases=config.tags)
    body = renderer.render_confirm(["en", "zh"], config.site.base_url + "confirm?t=EXAMPLE")
    pages["confirm"] = work / "email-confirm.html"
    pages["confirm"].write_text(body.html, encoding="utf-8")
    return pages


def screenshot(pages: dict[str, Path], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        try:
            for name, page_file in pages.items():
                for width in WIDTHS:
                    for scheme in SCHEMES:
                        ctx = browser.new_context(viewport={"width": width, "height": 900},
                                                  color_scheme=scheme,
                                                  java_script_enabled=False)
                        page = ctx.new_page()
                        page.goto(page_file.as_uri())
                        path = out / f"email-{name}-{width}-{scheme}.png"
                        page.screenshot(path=str(path), full_page=True)
                        ctx.close()
                        shots.append(path)
        finally:
            browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    ap.add_argument("--html-dir", type=Path, help="also keep the rendered HTML files here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="digest-shots-") as tmp:
        pages = render_pages(Path(tmp))
        if args.html_dir:
            args.html_dir.mkdir(parents=True, exist_ok=True)
            for f in pages.values():
                shutil.copy(f, args.html_dir / f.name)
        for path in screenshot(pages, args.out):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
