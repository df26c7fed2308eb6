"""Story pages rendered by `storypage.StoryPage` (story.html written out in Python) are byte for
byte what Jinja renders from the templates, and Jinja renders them whenever that is not sure:
edited or overridden templates, another environment, a character `xml_text` drops, odd data."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import SiteConfig
from digest.models import FAQ, Block, Story
from digest.publish import site as sitemod
from digest.publish import text as textmod
from digest.publish.feeds import tag_slugs
from digest.publish.site import Site, environment
from digest.publish.storypage import STORY_TEMPLATES, STORY_TEMPLATES_DIGEST, story_templates_digest
from digest.publish.text import zh_punct
from digest.resources import WEB_TEMPLATES
from tests.support.publish import HOSTILE, NOW, seed_stories, story

SLUGS = {"policy": "policy", "大模型": "t-0123456789", "Open Source": "open-source", "AI": "ai"}
SLUGS.update(tag_slugs({t for s in seed_stories() for t in s.tags} - set(SLUGS)))
SLUGS[HOSTILE] = "t-hostile000"


def make_site(env=None, title: str = "AI News · AI资讯") -> Site:
    cfg = SiteConfig(title=title, base_url="https://news.example.com/x/",
                     description="Daily <AI> & news")
    return Site(cfg, slugs=dict(SLUGS), feeds=[], env=env or environment())


def both(site: Site, s: Story) -> tuple[str, str]:
    fast = sitemod._story_page_renderer(site)
    assert fast is not None
    return fast.render(s), site._story_jinja(s)


def test_the_templates_are_the_ones_the_python_page_mirrors():
    """Changing story.html or one of its partials: change `digest.publish.storypage` with it (these tests
    compare the two), then set STORY_TEMPLATES_DIGEST to the new value. Until then story
    pages are rendered by Jinja, correct but ~5x slower."""
    assert story_templates_digest(environment()) == STORY_TEMPLATES_DIGEST, \
        f"story templates {STORY_TEMPLATES} changed: update storypage.StoryPage, then the digest"


def test_seed_and_sample_stories_render_the_same_bytes():
    site = make_site()
    stories = seed_stories() + [
        story("a1"), story("a2", langs=("zh-Hans",), tags=("大模型",)),
        story("a3", langs=("zh-Hans", "zh-Hant", "en"), tags=("Open Source", "AI")),
        replace(story("a4", scores={"hot": 90}, text="中文,标点(测试)!"), tags=["AI", "大模型"]),
        story("a5", scores={}, tags=()),
    ]
    for s in stories:
        fast, slow = both(site, s)
        assert fast == slow, s.id
        assert site.story_page(s) == slow.encode()


_TEXT = st.text(alphabet=st.sampled_from(list("ab ,:;!?()<>&'\"\t\n中文、。，") + ["\U00020001"]),
                max_size=12)
_LANGS = st.lists(st.sampled_from(["en", "zh-Hans", "zh-Hant", "fr"]), min_size=1, max_size=3,
                  unique=True)


@st.composite
def stories(draw):
    langs = draw(_LANGS)

    def per(strategy):
        return {c: draw(strategy) for c in langs if draw(st.booleans())}

    tldr = per(st.lists(_TEXT, max_size=3))
    body = per(st.lists(st.builds(Block, st.sampled_from(["h", "p", "li"]), _TEXT), max_size=4))
    published = NOW - timedelta(hours=draw(st.integers(0, 100)))
    return Story(
        id=draw(st.sampled_from(["abc123", "x-y_z", "bad id/.."])),
        languages=langs,
        title=per(_TEXT),
        published=published,
        updated=published + timedelta(minutes=draw(st.sampled_from([0, 30]))),
        summary=per(_TEXT),
        tldr=tldr,
        tldr_excerpt=draw(st.lists(st.sampled_from(langs), unique=True)),
        scores=draw(st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["hot", "quality", "impact", "other"]), st.integers(0, 100)))),
        tags=draw(st.lists(st.sampled_from(["policy", "大模型", "Open Source", "AI"]), unique=True,
                           max_size=3)),
        key_data=per(st.lists(st.lists(_TEXT, min_size=1, max_size=3), min_size=1, max_size=3)),
        analysis=per(st.lists(_TEXT, max_size=2)),
        insights=per(st.lists(_TEXT, max_size=2)),
        faq=per(st.lists(st.builds(FAQ, _TEXT, _TEXT), max_size=2)),
        body=body,
        source=draw(st.one_of(st.none(), _TEXT)),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stories())
def test_any_story_renders_the_same_bytes(s):
    site = make_site()
    fast, slow = both(site, s)
    assert fast == slow
    assert site.story_page(s) == slow.encode()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stories(), st.sampled_from(["\x00", "\x0b", "\x7f", "\x85", "\ufdd0", "\uffff"]))
def test_a_character_xml_drops_anywhere_leaves_the_page_to_jinja(s, bad):
    site = make_site()
    s = replace(s, title={c: t + bad for c, t in s.title.items()},
                summary={c: bad + t for c, t in s.summary.items()},
                source=(s.source or "") + bad)
    if any(v for v in (*s.title.values(), *s.summary.values())):
        assert sitemod._story_page_renderer(site).render(s) is None
    assert site.story_page(s) == site._story_jinja(s).encode()


def test_characters_xml_drops_go_through_jinja():
    site = make_site()
    s = replace(story("h1", text=HOSTILE + "\x00\ufffe"), tags=["policy", HOSTILE])
    assert sitemod._story_page_renderer(site).render(s) is None
    page = site.story_page(s)
    assert page == site._story_jinja(s).encode()
    assert b"\x0b" not in page and b"\x00" not in page and b"&lt;script&gt;" in page


def test_odd_data_is_left_to_jinja():
    site = make_site()
    s = replace(story("o1"), tags=["unknown-tag"])  # no slug: the template's error, not ours
    with pytest.raises(Exception) as e:
        site.story_page(s)
    assert "unknown-tag" in str(e.value)


def test_an_edited_story_template_is_rendered_by_jinja(tmp_path):
    shutil.copytree(WEB_TEMPLATES, tmp_path / "web")
    page = tmp_path / "web" / "story.html"
    page.write_text(page.read_text(encoding="utf-8").replace("</article>", "<!-- edited --></article>"),
                    encoding="utf-8")
    site = make_site(environment(tmp_path / "web"))
    assert sitemod._story_page_renderer(site) is None
    assert b"<!-- edited -->" in site.story_page(story("e1"))


def test_an_edited_base_template_is_followed(tmp_path):
    """base.html gives the frame of the page: its edits show without touching the digest."""
    shutil.copytree(WEB_TEMPLATES, tmp_path / "web")
    base = tmp_path / "web" / "base.html"
    base.write_text(base.read_text(encoding="utf-8").replace("<body>", '<body class="x">'),
                    encoding="utf-8")
    site = make_site(environment(tmp_path / "web"))
    fast, slow = both(site, story("b1"))
    assert fast == slow and '<body class="x">' in fast


def test_a_base_template_the_frame_cannot_follow_turns_the_python_page_off(tmp_path):
    shutil.copytree(WEB_TEMPLATES, tmp_path / "web")
    base = tmp_path / "web" / "base.html"
    # Story-dependent text outside the blocks: the frame cannot have it; the first page's
    # comparison sees the difference and Jinja renders every page of this Site.
    base.write_text(base.read_text(encoding="utf-8").replace(
        "<body>", "<body{% if story is defined %} data-id=\"{{ story.id }}\"{% endif %}>"),
        encoding="utf-8")
    site = make_site(environment(tmp_path / "web"))
    for sid in ("c1", "c2"):
        assert f'data-id="{sid}"'.encode() in site.story_page(story(sid))
    assert site._story_fast is False


def test_a_site_title_holding_the_frame_marker_is_rendered_by_jinja():
    site = make_site(title="odd \ue000digest-frame\ue000 title")
    assert sitemod._story_page_renderer(site) is None
    assert site.story_page(story("t1")) == site._story_jinja(story("t1")).encode()


_CJK = textmod._CJK
_PUNCT_FIRST = re.compile(rf"(?:(?<={_CJK})[ \t]*([,:;!?])[ \t]*|[ \t]*([,:;!?])[ \t]*(?={_CJK}))")


def _punct_by_regex(text: str) -> str:
    """zh_punct as it was written first (no lookahead in front of the marks' pattern, the
    parentheses' pattern run on every text)."""
    if not text or not textmod._CJK_CHAR.search(text):
        return text
    text = textmod._PARENS.sub(textmod._paren, text)
    return _PUNCT_FIRST.sub(lambda m: textmod._FULL[m[1] or m[2]], text)


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \t,:;!?a1()\n中，、。") + ["\U00020001"]),
               max_size=16))
def test_zh_punct_finds_the_regex_matches(text):
    assert zh_punct(text) == _punct_by_regex(text)


def test_story_pages_of_the_seed_site_carry_no_marker():
    site = make_site()
    for s in seed_stories():
        assert not re.search("\ue000", site.story_page(s).decode())
