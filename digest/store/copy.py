"""`digest store copy`: a whole store, history included, from one backend into another."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from digest.store.base import StoreBackend

CHUNK = 500  # stories or subscribers per destination transaction: a killed copy resumes there
# Meta that describes one backend's own layout, not the store's content.
LAYOUT_META = frozenset({"schema_version", "index_shards", "subscriber_shards"})


class Listable(Protocol):
    """What a copy needs beyond StoreBackend: meta and quarantine as a whole (both backends)."""

    def meta_items(self) -> dict[str, Any]: ...

    def quarantine_items(self) -> list[dict]: ...


@dataclass
class CopyReport:
    source: str
    target: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # what → {"new", ...}

    def summary(self) -> str:
        lines = [f"copied {self.source} → {self.target}"]
        for what, c in self.counts.items():
            lines.append(f"  {what}: " + ", ".join(f"{v} {k}" for k, v in c.items()))
        return "\n".join(lines)

    @property
    def new(self) -> int:
        """Rows the target did not have (0 on a repeated copy)."""
        return sum(c.get("new", 0) + c.get("updated", 0) for c in self.counts.values())


def _chunks(items: Iterator[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def copy_store(src: StoreBackend, dst: StoreBackend, source: str = "", target: str = "") -> CopyReport:
    """Copy stories (with bodies), subscribers, meta, quarantine and every journal record
    from `src` into `dst`. What `dst` already holds unchanged is skipped, so a second copy
    writes nothing and a killed copy run again finishes the job. Journal records are
    imported with their `sent` story ids, so an edition sent before is not sent again."""
    report = CopyReport(source or src.kind, target or dst.kind)

    # The journal first: it decides what is sent, so even a copy killed half way never holds
    # a subscriber without the history that keeps an edition from going out twice.
    # `import_records` skips what an earlier (or killed) run already wrote.
    total = 0

    def counted() -> Iterator[dict]:
        nonlocal total
        for rec in src.journal.records():
            total += 1
            yield rec

    new = dst.journal.import_records(counted())
    report.counts["journal"] = {"new": new, "unchanged": total - new}

    stories = {"new": 0, "updated": 0, "unchanged": 0}
    for ids in _chunks(iter([s.id for s in src.list_stories()])):
        with dst.transaction():
            for _, what in dst.upsert_stories(src.get_stories(ids)):
                stories["new" if what == "added" else what] += 1
    report.counts["stories"] = stories

    subs = {"new": 0, "updated": 0, "total": 0}
    for chunk in _chunks(src.iter_subscribers()):
        added, updated = dst.upsert_subscribers(chunk)
        subs["new"] += added
        subs["updated"] += updated
        subs["total"] += len(chunk)
    report.counts["subscribers"] = subs

    s: Listable = src  # type: ignore[assignment]
    meta = {"new": 0, "unchanged": 0}
    for key, value in s.meta_items().items():
        if key in LAYOUT_META:
            continue
        if dst.meta_get(key) == value:
            meta["unchanged"] += 1
        else:
            dst.meta_set(key, value)
            meta["new"] += 1
    report.counts["meta"] = meta

    quarantine = {"new": 0, "unchanged": 0}
    for q in s.quarantine_items():
        if dst.quarantine_get(q["path"]) == q:
            quarantine["unchanged"] += 1
        else:
            dst.quarantine_put(q["path"], q["fingerprint"], q["reason"])
            quarantine["new"] += 1
    report.counts["quarantine"] = quarantine

    return report
