"""Store test helpers: realistic hand-built stories (the parsers are tested elsewhere)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.models import FAQ, Story

BASE = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
_EN = "White House restricted exports of a frontier model over alleged foreign access. "
_ZH = "白宫对前沿模型实施出口限制,部分原因据称是担心一个外国团体已访问该模型。"


def make_story(i: int, rev: int = 0, prefix: str = "s") -> Story:
    """Story number i (id `<prefix><i:015x>`), about the size of a seed card; `rev`
    changes its text so an upsert reports `updated`."""
    tag = f" r{rev}" if rev else ""
    return Story(
        id=f"{prefix}{i:015x}",
        languages=["en", "zh-Hans"],
        title={"en": f"Story {i}: frontier model export rules{tag}",
               "zh-Hans": f"第{i}条:前沿模型出口规则{tag}"},
        published=BASE + timedelta(minutes=i),
        updated=BASE + timedelta(minutes=i, hours=1),
        summary={"en": _EN * 3, "zh-Hans": _ZH * 3},
        tldr={"en": [f"{_EN}({k})" for k in range(5)], "zh-Hans": [f"{_ZH}({k})" for k in range(5)]},
        scores={"hot": i % 101, "quality": 70, "impact": 75},
        tags=["policy", "security", "安全"],
        key_data={"en": [["Metric", "Value"], ["Exports", "restricted"]]},
        analysis={"en": [_EN * 8, _EN * 6], "zh-Hans": [_ZH * 8, _ZH * 6]},
        insights={"en": [_EN * 4], "zh-Hans": [_ZH * 4]},
        faq={"en": [FAQ("Why?", _EN)], "zh-Hans": [FAQ("为什么?", _ZH)]},
        source="Semafor",
        origin=f"seeds/{i:03d}.txt",
    )
