"""What the store holds right now (`digest status`, `digest schedule`, `/healthz`), for entry
points that must not open it themselves; and the run records the pipeline leaves in store
meta (`last_ingest`, `last_publish`, `last_send`) for them to show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from digest.config import Config
from digest.mail.editions import local_date, reader_zone, story_tag_keys
from digest.models import iso, parse_iso
from digest.pipeline.project import STORE_MARKER, store_locked_by
from digest.scheduler import cron as cronmath
from digest.store import StoreBackend, open_store

# Store meta keys the pipeline writes after each run (what changed and when).
LAST_INGEST, LAST_PUBLISH, LAST_SEND = "last_ingest", "last_publish", "last_send"
RUN_KEYS = (LAST_INGEST, LAST_PUBLISH, LAST_SEND)
STATES = ("sent", "failed", "bounced", "sending")


def record_run(store: StoreBackend, key: str, now: datetime, **what: Any) -> None:
    """Remember a run in store meta: `{"at": ISO time, **what}` (in the caller's transaction
    when it holds one). `last_send` keeps one entry per digest."""
    entry = {"at": iso(now), **what}
    if key == LAST_SEND:
        old = store.meta_get(LAST_SEND)
        merged = dict(old) if isinstance(old, dict) else {}
        merged[str(what.get("digest", ""))] = entry
        store.meta_set(LAST_SEND, merged)
    else:
        store.meta_set(key, entry)


@dataclass
class EditionProgress:
    """One digest's edition in one time zone, counted over that zone's active subscribers."""

    digest: str
    timezone: str
    edition: str  # subscriber-local date
    subscribers: int
    counts: dict[str, int]  # journal state → subscribers (STATES), "none" = no record yet
    fires_at: str | None  # when today's run is (or was) due, UTC ISO; None if not today
    due: bool  # the scheduled time has passed

    @property
    def state(self) -> str:
        """done | partly sent | sending | due now | later today | not today | no subscribers"""
        if self.fires_at is None:
            return "not today"
        if not self.subscribers:
            return "no subscribers"
        settled = self.counts["sent"] + self.counts["bounced"] + self.counts["failed"]
        if self.counts["none"] == 0 and self.counts["sending"] == 0:
            return "done"
        if self.counts["sending"]:
            return "sending"
        if settled:
            return "partly sent"
        return "due now" if self.due else "later today"

    def as_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "timezone": self.timezone, "edition": self.edition,
                "subscribers": self.subscribers, "counts": dict(self.counts),
                "fires_at": self.fires_at, "state": self.state}


@dataclass
class StatusReport:
    """Stored stories, and active subscribers per time zone (empty when there is no store)."""

    stories: int = 0
    zones: dict[str, int] = field(default_factory=dict)  # IANA zone → active subscribers
    exists: bool = False
    store: str = ""  # where: the directory or the url
    kind: str = ""  # embedded | postgresql
    newest: dict[str, Any] | None = None  # {"id", "title", "published"}
    by_status: dict[str, int] = field(default_factory=dict)  # subscriber status → count
    runs: dict[str, Any] = field(default_factory=dict)  # last_ingest/last_publish/last_send
    editions: list[EditionProgress] = field(default_factory=list)  # today's, per digest × zone
    last_editions: list[EditionProgress] = field(default_factory=list)  # the latest fired
    next_runs: dict[str, list[str]] = field(default_factory=dict)  # job → next UTC times
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # {"path", "reason"}
    daemon_pid: int | None = None

    @property
    def subscribers(self) -> int:
        return sum(self.zones.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "store": {"where": self.store, "kind": self.kind, "exists": self.exists},
            "stories": {"count": self.stories, "newest": self.newest},
            "subscribers": dict(self.by_status),
            "active_by_timezone": dict(self.zones),
            "last_ingest": self.runs.get(LAST_INGEST),
            "last_publish": self.runs.get(LAST_PUBLISH),
            "last_send": self.runs.get(LAST_SEND) or {},
            "digests": [e.as_json() for e in self.last_editions],
            "today": [e.as_json() for e in self.editions],
            "next_runs": dict(self.next_runs),
            "quarantined": list(self.quarantined),
            "daemon_pid": self.daemon_pid,
        }

    def lines(self) -> list[str]:
        out = [f"store: {self.store} ({self.kind or 'embedded'})"
               + ("" if self.exists else " — does not exist yet")]
        newest = (f", newest {self.newest['id']} published {self.newest['published']} "
                  f"({self.newest['title'][:60]})" if self.newest else "")
        out.append(f"stories: {self.stories}{newest}")
        subs = ", ".join(f"{n} {s}" for s, n in sorted(self.by_status.items())) or "none"
        out.append(f"subscribers: {subs}")
        for key, label in ((LAST_INGEST, "last ingest"), (LAST_PUBLISH, "last publish")):
            run = self.runs.get(key)
            out.append(f"{label}: " + (_run_text(run) if run else "never"))
        sends = self.runs.get(LAST_SEND) or {}
        for e in self.last_editions:
            c = e.counts
            out.append(f"digest {e.digest} ({e.timezone}): last edition {e.edition}: sent "
                       f"{c['sent']}, failed {c['failed']}, bounced {c['bounced']}, "
                       f"in flight {c['sending']}, not sent {c['none']} "
                       f"of {e.subscribers} subscriber(s)")
        for name, run in sorted(sends.items()):
            out.append(f"digest {name}: last send run {run.get('at')}: sent {run.get('sent', 0)}, "
                       f"failed {run.get('failed', 0)}, bounced {run.get('bounced', 0)}")
        for job, times in self.next_runs.items():
            out.append(f"next {job}: {', '.join(times) or '-'}")
        if self.quarantined:
            out.append(f"quarantined files: {len(self.quarantined)}")
            out += [f"  {q['path']}: {q['reason']}" for q in self.quarantined]
        else:
            out.append("quarantined files: none")
        out.append(f"daemon: running (pid {self.daemon_pid})" if self.daemon_pid
                   else "daemon: not running on this store")
        return out


def _run_text(run: dict[str, Any]) -> str:
    parts = [f"{k} {v}" for k, v in run.items() if k != "at"]
    return f"{run.get('at')}" + (f" ({', '.join(parts)})" if parts else "")


def _store_exists(config: Config) -> bool:
    return bool(config.store.url) or (config.store.path / STORE_MARKER).is_file()


def _daemon_pid(config: Config) -> int | None:
    return store_locked_by(config)  # asks the daemon lock, not just the pid file


def status(config: Config, now: datetime | None = None, *, full: bool = False) -> StatusReport:
    """Count the store's stories and active subscribers per time zone (and with `full`,
    everything `digest status` shows). A store that does not exist yet is reported empty,
    not created (`digest schedule` on a fresh install)."""
    now = now or datetime.now(UTC)
    report = StatusReport(store=config.store.url or str(config.store.path),
                          kind="postgresql" if config.store.url else "embedded")
    if full:
        report.next_runs = next_runs(config, now)
    if not _store_exists(config):
        return report
    report.exists = True
    store = open_store(config.store)
    try:
        zones: dict[str, int] = {}
        for sub in store.iter_subscribers("active"):
            zones[sub.timezone] = zones.get(sub.timezone, 0) + 1
        report.stories, report.zones = store.story_count(), zones
        if not full:
            return report
        by_status: dict[str, int] = {}
        for sub in store.iter_subscribers():
            by_status[sub.status] = by_status.get(sub.status, 0) + 1
        report.by_status = by_status
        newest = max(store.list_stories(), key=lambda s: (s.published, s.id), default=None)
        if newest is not None:
            report.newest = {"id": newest.id, "title": newest.title[newest.languages[0]],
                             "published": iso(newest.published)}
        report.runs = {k: store.meta_get(k) for k in RUN_KEYS if store.meta_get(k)}
        report.quarantined = [{"path": q.get("path"), "reason": q.get("reason", "")}
                              for q in _quarantine(store)]
        report.editions = edition_progress(config, store, now, today=True)
        report.last_editions = edition_progress(config, store, now, today=False)
        report.daemon_pid = _daemon_pid(config)
        return report
    finally:
        store.close()


def _quarantine(store: StoreBackend) -> list[dict]:
    items = getattr(store, "quarantine_items", None)
    return list(items()) if items else []


def next_runs(config: Config, now: datetime, n: int = 1) -> dict[str, list[str]]:
    """The next run of ingest and publish (schedule zone) and of each digest (UTC zone as a
    reference; digests fire per subscriber zone: see `digest schedule`)."""
    out = {}
    tz = config.schedule.timezone
    for job, cron in (("ingest", config.schedule.ingest), ("publish", config.schedule.publish)):
        out[job] = [iso(t) for t in cronmath.next_fires(cron, tz, now, n)]
    for d in config.digests:
        out[f"digest {d.name} (UTC)"] = [iso(t) for t in cronmath.next_fires(d.cron, "UTC", now, n)]
    return out


def edition_progress(config: Config, store: StoreBackend, now: datetime,
                     today: bool = True) -> list[EditionProgress]:
    """Per digest and active subscribers' time zone: today's edition (`today`) or the latest
    scheduled one, with the journal's state for each subscriber of that zone."""
    subs_by_zone: dict[str, list[str]] = {}
    for sub in store.iter_subscribers("active"):
        subs_by_zone.setdefault(reader_zone(sub.timezone), []).append(sub.email)
    out = []
    for d in config.digests:
        for tz in sorted(subs_by_zone or {config.schedule.timezone: []}):
            emails = subs_by_zone.get(tz, [])
            fires_at, due, edition = _edition(d.cron, tz, now, today)
            if edition is None:
                continue
            counts = dict.fromkeys((*STATES, "none"), 0)
            for email in emails:
                rec = store.journal.state(d.name, edition, email)
                state = rec.get("state") if rec else None
                counts[state if state in counts else "none"] += 1
            out.append(EditionProgress(d.name, tz, edition, len(emails), counts,
                                       iso(fires_at) if fires_at else None, due))
    return out


def _edition(cron: str, tz: str, now: datetime,
             today: bool) -> tuple[datetime | None, bool, str | None]:
    """(fire time, already due, edition date) of today's or the latest scheduled edition."""
    date = local_date(tz, now)
    if not today:
        fire = cronmath.latest_fire(cron, tz, now)
        if fire is None:
            return None, False, None
        return fire, True, local_date(tz, fire)
    latest = cronmath.latest_fire(cron, tz, now)
    if latest is not None and local_date(tz, latest) == date:
        return latest, True, date
    upcoming = cronmath.next_fires(cron, tz, now, 1)
    if upcoming and local_date(tz, upcoming[0]) == date:
        return upcoming[0], False, date
    return None, False, date


def health(config: Config, now: datetime | None = None) -> dict[str, Any]:
    """For `/healthz`: whether the store can be read, and how long ago the last publish and
    send ran (seconds, None when never). Raises (StoreError, OSError) when it cannot be read."""
    now = now or datetime.now(UTC)
    if not _store_exists(config):
        from digest.errors import StoreError

        raise StoreError(f"no store at {config.store.path}", "run `digest ingest` first")
    store = open_store(config.store)
    try:  # meta only: no index read (the web caches this answer for a few seconds too)
        publish = store.meta_get(LAST_PUBLISH)
        sends = store.meta_get(LAST_SEND) or {}
    finally:
        store.close()

    def age(entry: Any) -> float | None:
        try:
            return round((now - parse_iso(str(entry["at"]))).total_seconds(), 1)
        except (KeyError, TypeError, ValueError):
            return None

    send_ages = [a for a in (age(e) for e in sends.values()) if a is not None] \
        if isinstance(sends, dict) else []
    return {"store": "ok", "last_publish_age_seconds": age(publish),
            "last_send_age_seconds": min(send_ages) if send_ages else None}


def unknown_tags(config: Config, tags: list[str] | tuple[str, ...]) -> list[str]:
    """The tags of `tags` that no stored story carries and no `[tags]` alias names (a
    subscriber choosing only those would get nothing): for a warning, not an error — the
    stories may come later."""
    if not tags or not _store_exists(config):
        return list(tags or [])
    known = {k.casefold() for pair in config.tags.items() for k in pair}
    store = open_store(config.store)
    try:
        for s in store.list_stories():
            known |= story_tag_keys(s, config.tags)
    finally:
        store.close()
    return [t for t in tags if t.casefold() not in known]


def today_editions(config: Config, now: datetime, name: str | None = None) -> list[EditionProgress]:
    """Today's edition of each digest (or of `name`) per active subscribers' zone, with how
    far it got; empty when there is no store."""
    if not _store_exists(config):
        return []
    store = open_store(config.store)
    try:
        found = edition_progress(config, store, now, today=True)
    finally:
        store.close()
    return [e for e in found if name is None or e.digest == name]


def manual_send_notes(config: Config, name: str | None, now: datetime) -> list[str]:
    """What a manual `digest send` of `name` is about to do, when that is not the scheduled
    run: which edition it sends, and that the scheduled run will then skip it."""
    dcfg = config.digest(name)
    out = []
    for e in today_editions(config, now, dcfg.name):
        if not e.subscribers or e.state == "done":
            continue
        if e.fires_at is None:
            out.append(f"{dcfg.name}: not scheduled today in {e.timezone} ({dcfg.cron!r}); "
                       f"sending edition {e.edition} now; it counts as that day's edition")
        elif not e.due:
            out.append(f"{dcfg.name}: sending edition {e.edition} ({e.timezone}) now, before "
                       f"its scheduled time {e.fires_at}; the scheduled run will skip the "
                       f"subscribers who get it now")
    return out
