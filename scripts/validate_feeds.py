"""Run the W3C Feed Validator's own code over every RSS and Atom feed built from seeds/.

The validator is neither on PyPI nor in Debian, so it runs by hand, not in the test suite:

    git clone https://github.com/w3c/feedvalidator /tmp/feedvalidator   # or any checkout
    pip install html5lib
    python3 scripts/validate_feeds.py --validator /tmp/feedvalidator [--hubs 2] [--extra 20]

It publishes seeds/ (plus `--extra` generated stories with hostile text, and `--hubs` WebSub
hubs) into a temp dir and prints one line per problem and a summary; exit 1 on any error or
warning. Nothing of the validator is kept in this repository.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build(tmp: Path, hubs: int, extra: int) -> tuple[str, list[Path]]:
    from digest.pipeline import publish
    from tests.support.publish import NOW, make_config, seed_stories, store_with, story

    cfg = make_config(tmp)
    if hubs:
        import dataclasses

        urls = tuple(f"https://hub{i}.example/?a=1&b=2" for i in range(hubs))
        cfg = dataclasses.replace(cfg, websub=dataclasses.replace(cfg.websub, hubs=urls))
    stories = seed_stories()
    for i in range(extra):
        # text goes into every string field: a bare & and < (the RSS Profile's rule) and quotes
        stories.append(story(f"gen{i:03d}", text=f"Story {i}: AT&T < {i}% of \"R&D\" 'x'",
                             hours_ago=1.0 + i, langs=("en", "zh-Hans") if i % 2 else ("en",),
                             tags=("policy", f"t{i % 3}")))
    store_with(cfg, stories)
    publish(cfg, now=NOW)
    out = cfg.feeds.output
    feeds = sorted(p for p in out.rglob("*.xml") if p.name in ("rss.xml", "atom.xml"))
    return cfg.site.base_url, feeds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--validator", type=Path, required=True, help="a feedvalidator checkout")
    ap.add_argument("--hubs", type=int, default=0, help="WebSub hubs to configure (default 0)")
    ap.add_argument("--extra", type=int, default=0, help="generated stories to add (default 0)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.validator / "src"))
    import feedvalidator
    from feedvalidator.logging import Error, Warning

    with tempfile.TemporaryDirectory() as tmp:
        base, feeds = build(Path(tmp), args.hubs, args.extra)
        out = Path(tmp) / "public"
        errors = warnings = 0
        for path in feeds:
            rel = path.relative_to(out).as_posix()
            events = feedvalidator.validateString(path.read_text(encoding="utf-8"),
                                                  firstOccurrenceOnly=1, base=base + rel)
            for e in events["loggedEvents"]:
                if isinstance(e, Error | Warning):
                    kind = "error" if isinstance(e, Error) else "warning"
                    errors += kind == "error"
                    warnings += kind == "warning"
                    print(f"{rel}: {kind}: {type(e).__name__} {e.params}")
        print(f"{len(feeds)} feeds, {errors} errors, {warnings} warnings")
        return 1 if errors or warnings else 0


if __name__ == "__main__":
    sys.exit(main())
