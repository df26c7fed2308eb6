"""Ranking: weighted scores, recency decay, defaults and tie-breaks (pure, table-driven)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from digest.config import RankConfig
from digest.publish.rank import base_score, decay, rank, score_story
from tests.support.publish import NOW, story

CFG = RankConfig(hot=0.4, quality=0.35, impact=0.25, half_life_hours=24.0, default_score=50.0)


@pytest.mark.parametrize("scores,cfg,expected", [
    ({"hot": 80, "quality": 70, "impact": 75}, CFG, (0.4 * 80 + 0.35 * 70 + 0.25 * 75) / 1.0),
    ({"hot": 100, "quality": 0, "impact": 0}, RankConfig(hot=1, quality=1, impact=2), 25.0),
    ({"hot": 10, "quality": 20, "impact": 30}, RankConfig(hot=0, quality=0, impact=0), 20.0),
    (None, CFG, 50.0),
    (None, RankConfig(default_score=12.5), 12.5),
])
def test_base_score(scores, cfg, expected):
    s = story("a", scores=scores) if scores is not None else story("a")
    if scores is None:
        s.scores = None
    assert base_score(s, cfg) == pytest.approx(expected)


@pytest.mark.parametrize("age,half,expected", [
    (0, 24, 1.0), (24, 24, 0.5), (48, 24, 0.25), (12, 24, 0.5 ** 0.5), (5, 0, 1.0),
])
def test_decay(age, half, expected):
    assert decay(age, half) == pytest.approx(expected)


def test_score_parts_and_future_story_clamped():
    s = story("a", hours_ago=-5)  # published in the future: age clamps to 0, no bonus
    r = score_story(s, NOW, CFG)
    assert r.parts["age_hours"] == 0.0 and r.parts["decay"] == 1.0
    assert r.score == pytest.approx(r.parts["base"])
    old = score_story(story("b", hours_ago=24), NOW, CFG)
    assert old.parts["age_hours"] == pytest.approx(24)
    assert old.score == pytest.approx(old.parts["base"] * 0.5)


def test_order_by_score_then_newer_then_id():
    hi = story("z-high", scores={"hot": 90, "quality": 90, "impact": 90}, hours_ago=1)
    tie_new = story("m-new", hours_ago=1)
    tie_old_b = story("b-old", hours_ago=1)
    tie_old_a = story("a-old", hours_ago=1)
    # Same base, same age → the id decides; equal ids never happen (ids are unique).
    assert [r.story.id for r in rank([tie_old_b, tie_new, hi, tie_old_a], NOW, CFG)] == \
        ["z-high", "a-old", "b-old", "m-new"]
    # Equal score but different published: the newer wins (a zero half-life removes decay).
    flat = RankConfig(half_life_hours=0)
    older, newer = story("a", hours_ago=10), story("b", hours_ago=2)
    assert [r.story.id for r in rank([older, newer], NOW, flat)] == ["b", "a"]


def test_decay_reorders_an_old_hot_story_below_a_fresh_one():
    old_hot = story("old", scores={"hot": 100, "quality": 100, "impact": 100}, hours_ago=72)
    fresh = story("fresh", scores={"hot": 40, "quality": 40, "impact": 40}, hours_ago=1)
    assert [r.story.id for r in rank([old_hot, fresh], NOW, CFG)] == ["fresh", "old"]


def test_order_does_not_drift_with_now():
    # The decay factor is common to all stories' ratios, so the order (and thus the feeds'
    # bytes) stays put as time passes: republishing later rewrites nothing.
    stories = [story(f"s{i}", scores={"hot": 30 + 7 * i % 60, "quality": 50, "impact": 50},
                     hours_ago=3 * i) for i in range(12)]
    first = [r.story.id for r in rank(stories, NOW, CFG)]
    for later in (1, 10, 100, 1000):
        assert [r.story.id for r in rank(stories, NOW + timedelta(hours=later), CFG)] == first


def test_as_json_has_exactly_the_rank_keys():
    r = score_story(story("a"), NOW, CFG)
    d = r.as_json()
    assert set(d) == {"id", "title", "tldr", "tldr_excerpt", "languages", "tags", "scores",
                      "score", "published", "updated", "source"}
    assert d["score"] == pytest.approx(r.score, abs=1e-4)
    assert d["published"].endswith("Z")
