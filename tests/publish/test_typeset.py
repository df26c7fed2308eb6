"""Pure helpers of the published text: Chinese punctuation for display (W3C clreq) and
distinct `updated` times for tied stories."""

from __future__ import annotations

from datetime import timedelta

import pytest

from digest.publish.plan import distinct_updated
from digest.publish.site import lang_anchor, typeset, zh_punct
from tests.support.publish import NOW, story


@pytest.mark.parametrize("text,expected", [
    ("出口限制,部分原因", "出口限制，部分原因"),  # between Chinese characters
    ("全球失控!", "全球失控！"),  # at the end of a Chinese sentence
    ("真的吗?是的", "真的吗？是的"),
    ("如下:第一;第二", "如下：第一；第二"),
    ("好 , 的", "好，的"),  # the spaces around it go
    ("剛剛,Anthropic發布", "剛剛，Anthropic發布"),  # Chinese on one side is enough
    ("Mythos 5,可能", "Mythos 5，可能"),
    ("型(蒸馏)技术", "型（蒸馏）技术"),  # a pair turns together
    ("Claude(克劳德)是", "Claude（克劳德）是"),
    ("由(Claude)发布", "由（Claude）发布"),
    ("时间:12:30开始", "时间：12:30开始"),  # the clock keeps its colon
    ("1,000 个", "1,000 个"),
    ("Hello, world! (AI)", "Hello, world! (AI)"),  # no Chinese: unchanged
    ("網址:https://example.org/?a=1", "網址：https://example.org/?a=1"),
    ("已经，全角。", "已经，全角。"),
    ("", ""),
])
def test_zh_punct(text, expected):
    assert zh_punct(text) == expected


def test_typeset_only_touches_chinese():
    assert typeset("a,中", "en") == "a,中"
    assert typeset("a,中", "zh-Hans") == typeset("a,中", "zh-Hant") == "a，中"


@pytest.mark.parametrize("languages,code,anchor", [
    (["en", "zh-Hans"], "en", "en"),
    (["en", "zh-Hans"], "zh-Hans", "zh"),
    (["zh-Hant"], "zh-Hant", "zh"),
    (["zh-Hans", "zh-Hant"], "zh-Hant", "zh-Hant"),
])
def test_lang_anchor(languages, code, anchor):
    assert lang_anchor(languages, code) == anchor


def test_distinct_updated_breaks_ties_deterministically():
    a, b, c = story("a", hours_ago=2), story("b", hours_ago=3), story("c", hours_ago=5)
    tie = NOW - timedelta(hours=1)
    for s in (a, b, c):
        s.updated = tie
    d = story("d", hours_ago=9)
    d.updated = tie - timedelta(seconds=1)  # an instant the first move would take
    moved = distinct_updated([c, d, b, a])
    # newest published keeps the instant; the others move back past instants any story has
    assert moved == {"b": tie - timedelta(seconds=2), "c": tie - timedelta(seconds=3)}
    assert distinct_updated([a, b, c, d]) == moved  # independent of input order
    # a time the source stated exactly is never moved
    assert "a" not in distinct_updated([a, b], exact={"a", "b"})
    assert distinct_updated([a, b], exact={"b"}) == {"a": tie - timedelta(seconds=1)}
