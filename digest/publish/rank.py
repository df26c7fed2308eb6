"""Story ranking: weighted Hot/Quality/Impact × recency decay; pure, `now` passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from digest.config import RankConfig
from digest.models import SCORE_KEYS, Story

_LN2 = math.log(2.0)


@dataclass(frozen=True)
class Ranked:
    """A story with its score and the parts it was computed from (`base`, `decay`, `age_hours`)."""

    story: Story
    score: float
    parts: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The `digest rank --json` object: `Story.summary_dict()` plus `score`."""
        d = self.story.summary_dict()
        d["score"] = round(self.score, 4)
        return d


def base_score(story: Story, cfg: RankConfig) -> float:
    """Weighted mean of hot/quality/impact, or `default_score` for an unscored story."""
    if not story.scores:
        return float(cfg.default_score)
    weights = {"hot": cfg.hot, "quality": cfg.quality, "impact": cfg.impact}
    total = sum(weights.values())
    if total <= 0:
        # All weights zero: no preference among the parts, so take their plain mean.
        return sum(float(story.scores.get(k, cfg.default_score)) for k in SCORE_KEYS) / len(SCORE_KEYS)
    return sum(w * float(story.scores.get(k, cfg.default_score)) for k, w in weights.items()) / total


def decay(age_hours: float, half_life_hours: float) -> float:
    """0.5 ** (age / half-life); a non-positive half-life disables decay."""
    if half_life_hours <= 0:
        return 1.0
    return 0.5 ** (age_hours / half_life_hours)


def score_story(story: Story, now: datetime, cfg: RankConfig) -> Ranked:
    """Score one story at `now`; age is measured from `published` and never negative."""
    age = max(0.0, (now - story.published).total_seconds() / 3600.0)
    base = base_score(story, cfg)
    d = decay(age, cfg.half_life_hours)
    return Ranked(story=story, score=base * d, parts={"base": base, "decay": d, "age_hours": age})


def order_key(base: float, published: float, now: float, half_life_hours: float,
              story_id: str) -> tuple[int, float, float, str]:
    """Sort key equivalent to (higher score, newer `published`, id) but computed in log space
    from `published` rather than from the age: log(base · 0.5^(age/h)) = log(base) +
    published·ln2/h − now·ln2/h, and the last term is common to all stories. So the order
    is exactly the same at every `now` (no float rounding or underflow of very old stories'
    scores can reorder them as time passes) as long as no story is in the future, whose age
    clamps to 0. `published`/`now` are POSIX seconds."""
    t = min(published, now)
    lg = t * _LN2 / (half_life_hours * 3600.0) if half_life_hours > 0 else 0.0
    if base > 0:
        return (0, -(math.log(base) + lg), -published, story_id)
    if base == 0:
        return (1, 0.0, -published, story_id)
    # A negative base (negative weights): the older, the closer to 0, the higher.
    return (2, math.log(-base) + lg, -published, story_id)


def rank(stories: list[Story], now: datetime, rank_cfg: RankConfig,
         keys: dict[str, tuple] | None = None) -> list[Ranked]:
    """All stories scored at `now`, best first (the same numbers as `score_story`, computed
    with plain floats: this runs over the whole store on every publish). `keys`, when given,
    receives each story's `order_key` (the incremental publisher keeps them)."""
    now_ts = now.timestamp()
    hl = float(rank_cfg.half_life_hours)
    default = float(rank_cfg.default_score)
    wh, wq, wi = rank_cfg.hot, rank_cfg.quality, rank_cfg.impact
    total = 0 + wh + wq + wi  # as `base_score` sums its weights (same order, same floats)
    new = object.__new__
    keyed = []
    for s in stories:
        p = s.published.timestamp()
        age = max(0.0, (now_ts - p) / 3600.0)
        sc = s.scores
        if not sc:
            base = default
        elif total > 0:  # `base_score`, inlined: the same operations in the same order
            base = (0 + wh * float(sc.get("hot", default)) + wq * float(sc.get("quality", default))
                    + wi * float(sc.get("impact", default))) / total
        else:
            base = base_score(s, rank_cfg)
        d = 0.5 ** (age / hl) if hl > 0 else 1.0
        # Ranked(story=s, score=base * d, parts=...) without the frozen dataclass __init__
        r = new(Ranked)
        r.__dict__.update(story=s, score=base * d, parts={"base": base, "decay": d, "age_hours": age})
        keyed.append((order_key(base, p, now_ts, hl, s.id), r))
    if keys is not None:
        keys.update((r.story.id, k) for k, r in keyed)
    keyed.sort(key=_first)
    return [r for _, r in keyed]


def _first(pair: tuple[Any, Ranked]) -> Any:
    return pair[0]
