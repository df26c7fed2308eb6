"""Smoke tests of bench/: generated cards parse with the real parser; the harness runs end to end
on a tiny corpus (no timing is asserted: speed belongs to `python bench/run.py`)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.ingest import parse_story
from tests.support.tools import missing_tool

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import gen  # noqa: E402
import postfix  # noqa: E402

AS_OF = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("i", [0, 1, 2, 7, 123, 4567])
def test_generated_card_parses_with_the_real_parser(i: int) -> None:
    name, text = gen.story_text(i)
    story = parse_story(text, name, AS_OF)
    assert story.id == name.split("_", 1)[1].removesuffix(".txt")
    assert story.languages == ["en", "zh-Hans"]
    assert story.title["en"].endswith(f"#{i}") and f"第{i}号" in story.title["zh-Hans"]
    assert len(story.tldr["en"]) >= 3 and len(story.tldr["zh-Hans"]) >= 3
    assert set(story.scores) == {"hot", "quality", "impact"}
    assert all(20 <= v <= 99 for v in story.scores.values())
    assert 1 <= len(story.tags) <= 3 and set(story.tags) <= set(gen.TAGS)
    assert story.published <= story.updated <= AS_OF
    assert story.analysis["en"] and story.faq["zh-Hans"] and story.key_data["zh-Hans"]


def test_fresh_card_is_minutes_old() -> None:
    name, text = gen.story_text(10, fresh=True)
    story = parse_story(text, name, AS_OF)
    assert (AS_OF - story.published).total_seconds() <= 3600


def test_generator_is_deterministic_and_tags_are_skewed() -> None:
    assert gen.story_text(42) == gen.story_text(42)
    counts = Counter()
    for i in range(1500):
        tag_line = gen.story_text(i)[1].splitlines()[-2].split()
        counts.update(set(tag_line))
    assert len(counts) == len(gen.TAGS)  # every tag appears
    top, bottom = counts.most_common()[0][1], counts.most_common()[-1][1]
    assert top > 5 * bottom  # Zipf-like: one tag dominates the long tail


def test_subscribers_csv_has_mixed_languages_tags_and_zones(tmp_path: Path) -> None:
    path = gen.write_subscribers(tmp_path / "subs.csv", 400)
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 400 and list(rows[0]) == ["email", "languages", "tags", "timezone"]
    assert {r["languages"] for r in rows} == {"en", "zh", "en,zh"}
    assert {len([t for t in r["tags"].split(",") if t]) for r in rows} == {0, 1, 2, 3}
    zones = {r["timezone"] for r in rows}
    assert len(zones) >= 10
    for z in zones:
        ZoneInfo(z)  # every zone is a real IANA name
    assert len({r["email"] for r in rows}) == 400


def _postfix_reason() -> str | None:
    try:
        postfix.ensure()
    except postfix.PostfixUnavailable as e:
        return str(e)
    return None


@pytest.mark.bench  # bench/run.py, and `apt-get download postfix` for smtp-sink: external
def test_bench_runs_end_to_end_on_a_tiny_corpus(tmp_path: Path) -> None:
    reason = _postfix_reason()
    cmd = [sys.executable, str(BENCH / "run.py"), "--stories", "40", "--subscribers", "30",
           "--runs", "1", "--naive-sample", "10", "--data", str(tmp_path)]
    if reason:
        cmd += ["--only", "ingest", "publish"]  # the send phase needs smtp-sink
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    f = res["figures"]
    assert res["errors"] == {}
    assert f["ingest_files_per_s"]["median"] > 0
    assert f["republish_written"]["median"] == 0  # republish with nothing new writes nothing
    assert f["publish_full_files"]["median"] > 40  # feeds + a page per story
    assert f["publish_one_written"]["median"] >= 1
    assert all(v > 0 for v in res["max_rss_mb"].values())
    assert "full publish" in r.stdout and "peak memory" in r.stdout
    if reason:
        missing_tool(f"send phase not run: Postfix smtp-sink unavailable: {reason}")
    assert f["send_failed"]["median"] == 0
    assert f["send_sent"]["median"] + f["send_nothing_new"]["median"] == 30
    assert f["send_sent"]["median"] > 0
    assert f["smtp_source_msgs_per_s"]["median"] > 0
    assert f["naive_msgs_per_s"]["median"] > 0
    assert f["message_bytes"]["median"] > 1000
