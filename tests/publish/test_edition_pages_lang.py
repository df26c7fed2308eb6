"""Edition pages on the web (digest.publish.editions): the fixed bilingual strings carry a
`lang` per half (WCAG 3.1.2, as templates/web/_i18n.html does), and a Chinese edition page
says `lang="zh-Hans"` like every other page."""

from __future__ import annotations

from html.parser import HTMLParser

from digest.pipeline import publish
from digest.publish.editions import EditionRecord, remember
from tests.support.publish import NOW, make_config, seed_stories, store_with

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class LangOf(HTMLParser):
    """The `lang` in force for each run of text in <main>."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.texts: list[tuple[str, str]] = []
        self.main = False  # the page's own content (<title> can hold no markup; the site nav
        # in base.html is shared by every page)

    def handle_starttag(self, tag, attrs) -> None:
        self.main = self.main or tag == "main"
        if tag not in VOID:
            self.stack.append(dict(attrs).get("lang"))

    def handle_endtag(self, tag) -> None:
        self.main = self.main and tag != "main"
        if tag not in VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data) -> None:
        if data.strip() and self.main:
            lang = next((x for x in reversed(self.stack) if x), "")
            self.texts.append((data.strip(), lang))


def _lang_of(html: str, text: str) -> set[str]:
    p = LangOf()
    p.feed(html)
    return {lang for t, lang in p.texts if text in t}


def test_fixed_bilingual_strings_on_edition_pages_carry_their_lang(tmp_path) -> None:
    cfg = make_config(tmp_path)
    store = store_with(cfg, seed_stories())
    value = None
    for langs in ("en", "zh", "en-zh"):
        value = remember(value, EditionRecord("daily", "2026-11-22", langs, ("gone1",), NOW))
    store.meta_set("editions:daily", value)
    publish(cfg, now=NOW)
    root = cfg.feeds.output / "editions" / "daily"
    archive = (root / "index.html").read_text(encoding="utf-8")
    for text, lang in (("Past editions", "en"), ("往期", "zh-Hans"), ("Feeds", "en"),
                       ("订阅源", "zh-Hans")):
        assert _lang_of(archive, text) == {lang}, (text, _lang_of(archive, text))
    for langs, page_lang in (("en", "en"), ("zh", "zh-Hans"), ("en-zh", "en")):
        page = (root / "2026-11-22" / f"{langs}.html").read_text(encoding="utf-8")
        assert f'<html lang="{page_lang}">' in page, langs
        for text, lang in (("Archive", "en"), ("往期", "zh-Hans"),
                           ("no longer on the site", "en"), ("本期内容已不在站内", "zh-Hans")):
            assert _lang_of(page, text) == {lang}, (langs, text, _lang_of(page, text))
