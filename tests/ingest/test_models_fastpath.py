"""Speed rewrites keep behaviour: parse_iso's fast path, Story.from_dict, cjk_ratio agree
with the straightforward versions they replaced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.ingest.text import CJK_CHAR, cjk_ratio
from digest.models import Story, iso, parse_iso


def _parse_iso_reference(text: str) -> datetime:
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _cjk_ratio_reference(s: str) -> float:
    cjk = letters = 0
    for ch in s[:5000]:
        if CJK_CHAR.match(ch):
            cjk += 1
            letters += 1
        elif ch.isalpha():
            letters += 1
    return cjk / letters if letters else 0.0


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])))
def test_parse_iso_fast_path_matches(dt: datetime) -> None:
    for text in (iso(dt), iso(dt).replace("T", " "), dt.isoformat(), " " + iso(dt)):
        got, want = parse_iso(text), _parse_iso_reference(text)
        assert got == want and got.tzinfo == want.tzinfo == UTC


def test_parse_iso_refuses_the_same_things() -> None:
    for bad in ["2026-13-01T00:00:00Z", "2026-04-13T25:00:00Z", "not a date at all ok Z", ""]:
        for fn in (parse_iso, _parse_iso_reference):
            try:
                fn(bad)
            except ValueError:
                continue
            raise AssertionError(f"{fn.__name__} accepted {bad!r}")


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
       | st.text("ab 中文，。ーカナ한글\u3000１Ａ", max_size=80))
def test_cjk_ratio_matches_the_per_character_loop(s: str) -> None:
    assert cjk_ratio(s) == _cjk_ratio_reference(s)


def test_from_dict_round_trips_full_and_summary_forms() -> None:
    d = {"id": "abc", "languages": ["en", "zh-Hans"], "title": {"en": "T", "zh-Hans": "标"},
         "published": "2026-04-13T07:00:00Z", "tldr": {"en": ["a"]}, "scores": None,
         "tags": ["AI"], "source": None,
         "faq": {"en": [{"q": "Q", "a": "A"}]}, "body": {"en": [{"kind": "p", "text": "x"}]},
         "key_data": {"en": [["h"], ["v"]]}, "analysis": {}, "insights": {"en": ["i"]}}
    s = Story.from_dict(d)
    assert s.updated == s.published == datetime(2026, 4, 13, 7, tzinfo=UTC)
    assert s.scores is None and s.origin == "" and s.summary == {}
    assert Story.from_dict(s.to_dict()) == s
    summary = Story.from_dict(s.summary_dict())
    assert summary.body == {} and summary.faq == {} and summary.title == s.title
