"""Why an edition is empty: the reasons `plan_stories` left every stored story out, counted, so
`digest send` and `digest preview` say "3 stories are older than max_age_hours = 72" instead
of a bare "nothing new" (pure: stories, journal ids and settings in, a sentence out)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

from digest.mail.editions import story_tag_keys
from digest.models import Story, feed_language


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def why_nothing(ranked: Sequence[Story], sent: Collection[str], tags: Sequence[str],
                languages: Sequence[str] | None, now: datetime, max_age_hours: float,
                aliases: Mapping[str, str] | None = None) -> str:
    """One sentence naming why no stored story goes into this subscriber's edition, by the
    first rule that left each out (already sent, too old, not in the reader's languages, no
    matching tag), in the order `mail.editions.plan_stories` applies them."""
    if not ranked:
        return "the store holds no stories (run `digest ingest`)"
    oldest = now - timedelta(hours=max_age_hours)
    want = {t.casefold() for t in tags if t}
    reads = {feed_language(x.strip()) for x in languages or () if x and x.strip()}
    counts = {"sent": 0, "old": 0, "lang": 0, "tags": 0}
    for s in ranked:
        if s.id in sent:
            counts["sent"] += 1
        elif s.published < oldest:
            counts["old"] += 1
        elif reads and not any(feed_language(c) in reads for c in s.languages):
            counts["lang"] += 1
        elif want and not want & story_tag_keys(s, aliases or {}):
            counts["tags"] += 1
    parts = []
    if counts["old"]:
        newest = max(s.published for s in ranked)
        parts.append(f"{_n(counts['old'], 'story is', 'stories are')} older than "
                     f"max_age_hours = {max_age_hours:g} (the newest was published "
                     f"{newest:%Y-%m-%d %H:%M} UTC)")
    if counts["sent"]:
        parts.append(f"{_n(counts['sent'], 'story was', 'stories were')} already sent")
    if counts["lang"]:
        parts.append(f"{_n(counts['lang'], 'story has', 'stories have')} no text in "
                     f"{', '.join(sorted(reads))}")
    if counts["tags"]:
        parts.append(f"{_n(counts['tags'], 'story matches', 'stories match')} none of the "
                     f"tags {', '.join(tags)}")
    return "; ".join(parts) or "no story qualifies"
