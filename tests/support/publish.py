"""Publishing test helpers: seed stories at a fixed now, hostile stories, configs in tmp dirs."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from digest.config import Config, FeedsConfig, StoreConfig
from digest.models import FAQ, Block, Story, parse_iso

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "seeds"
SCHEMA = Path(__file__).resolve().parents[1] / "data" / "jsonfeed-1.1.schema.json"
NOW = parse_iso("2026-11-22T12:00:00Z")
HOSTILE = "<script>alert(1)</script> & ]]> \x0b end"


def seed_stories() -> list[Story]:
    """The three seeds parsed as `digest ingest --as-of 2026-11-22T12:00:00Z` would."""
    from digest.ingest import parse_story

    return [parse_story(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)), NOW)
            for p in sorted(SEEDS.glob("*.txt"))]


def make_config(tmp: Path, **tags: str) -> Config:
    return Config(path=tmp / "config.toml", store=StoreConfig(path=tmp / "store"),
                  feeds=FeedsConfig(output=tmp / "public", items=50), tags=dict(tags))


def story(sid: str, *, langs: tuple[str, ...] = ("en", "zh-Hans"), hours_ago: float = 1.0,
          scores: dict | None = None, tags: tuple[str, ...] = ("policy",), text: str = "") -> Story:
    """A small hand-built story; `text` is put into every string field (for hostile input)."""
    published = NOW - timedelta(hours=hours_ago)
    t = f" {text}" if text else ""
    return Story(
        id=sid, languages=list(langs),
        title={c: f"Title {sid} {c}{t}" for c in langs},
        published=published, updated=published + timedelta(minutes=30),
        summary={c: f"Summary {sid}{t}" for c in langs},
        tldr={c: [f"Point one {sid}{t}", f"Point two{t}"] for c in langs},
        scores=scores if scores is not None else {"hot": 70, "quality": 70, "impact": 70},
        tags=list(tags) + ([text] if text else []),
        key_data={c: [["Entity", "Figure"], [f"E{t}", "1"]] for c in langs},
        analysis={c: [f"Analysis{t}"] for c in langs},
        insights={c: [f"Insight{t}"] for c in langs},
        faq={c: [FAQ(f"Q{t}?", f"A{t}")] for c in langs},
        body={c: [Block("h", f"Head{t}"), Block("p", f"Para{t}"), Block("li", "a"), Block("li", "b")]
              for c in langs},
        source=f"Source{t}",
    )


def store_with(cfg: Config, stories: list[Story]):  # -> digest.store.Store
    from digest.store import Store

    st = Store(cfg.store.path)
    st.upsert_stories(stories)
    return st


def jsonfeed_validator():
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


__all__ = ["HOSTILE", "NOW", "make_config", "mtimes", "replace", "seed_stories", "story",
           "store_with", "jsonfeed_validator"]


# Tag spellings for `corpus`: an alias (安全 → security), mixed case, a space.
TAGS = ("policy", "chips", "安全", "Agent", "open source")


def corpus(n: int) -> list[Story]:
    """n small stories with varied languages, tags and scores (feeds hold 5 items)."""
    langs = (("en", "zh-Hans"), ("en",), ("zh-Hans",), ("zh-Hant",))
    return [story(f"s{i:03d}", langs=langs[i % 4], hours_ago=1 + 3 * i,
                  scores={"hot": 40 + (17 * i) % 60, "quality": 50 + (7 * i) % 40, "impact": 60},
                  tags=tuple(TAGS[j] for j in range(len(TAGS)) if (i >> j) & 1) or ("policy",))
            for i in range(n)]
