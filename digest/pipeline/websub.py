"""WebSub publisher: after a publish, tell every `[websub] hubs` hub which feed files changed
(one `hub.mode=publish` POST per hub and feed URL), and keep what a hub did not take.

Pings are an outbox in store meta (`websub_pending`): the pings of a publish are queued
before any is sent, so a crash mid-way loses none; a hub that answers 2xx removes its entry;
one that is down, slow, redirects or answers otherwise leaves it for the next publish (the
daemon's publish tick or `digest publish`), until it is taken, `GIVE_UP_AFTER` has passed
since the feed changed, or `MAX_ATTEMPTS` tries failed (a warning each). The queue is
bounded (`MAX_PENDING`, oldest dropped with a warning). Nothing here raises for a hub's
sake: the publish has already succeeded when pings start. Network I/O is stdlib urllib
with a short timeout, one thread per hub, and a hub that fails to answer at all is not
tried again in the same run (its remaining pings wait, untried).

Every wait is bounded by the clock, not by socket reads: each POST (DNS included) runs on a
daemon thread given `TIMEOUT` seconds in all, so a hub that trickles its answer a byte at a
time is abandoned as "no answer"; and the whole run waits at most `HUB_BUDGET + TIMEOUT`
(`RUN_DEADLINE`) for its hub threads, abandoning stragglers (daemon threads: they never
hold up the publish or the daemon's exit). Whatever had no answer by then stays queued.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from digest import __version__
from digest.config import Config
from digest.models import iso, parse_iso
from digest.publish.feeds import FORMATS, join_url

log = logging.getLogger("digest.websub")

PENDING = "websub_pending"  # store meta key: a list of entries, oldest first
MAX_PENDING = 10_000
GIVE_UP_AFTER = timedelta(hours=24)
MAX_ATTEMPTS = 100
TIMEOUT = 5.0  # seconds per POST, in all (connect, DNS, send, the whole answer)
HUB_BUDGET = 30.0  # seconds of pinging per hub and run; the rest waits for the next run
MAX_HUB_THREADS = 8  # hubs pinged at once

Post = Callable[[str, str], "Outcome"]  # (hub, topic url) -> outcome


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str = ""  # "HTTP 503", "timed out", …
    hub_down: bool = False  # no answer or 5xx/429: skip this hub's other pings this run


@dataclass
class WebSubReport:
    hubs: int = 0
    queued: int = 0  # pings added by this publish
    sent: list[tuple[str, str]] = field(default_factory=list)  # (hub, url) taken (2xx)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (hub, url, reason)
    given_up: list[tuple[str, str, str]] = field(default_factory=list)
    dropped: int = 0  # over MAX_PENDING, or for a hub no longer configured
    pending: int = 0  # left for the next publish
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"websub: {len(self.sent)} ping(s) accepted, {len(self.failed)} failed, "
                f"{self.pending} pending, {len(self.given_up)} given up")

    def lines(self) -> list[str]:
        return [self.summary(), *self.warnings]


def feed_urls(config: Config, written: Iterable[str], feeds: Iterable[str]) -> list[str]:
    """The absolute URL of every format (rss, atom, json) of each feed any of whose files
    are among `written` (the WordPress plugin's rule: a changed topic pings every format)."""
    feed_set = set(feeds)
    dirs = sorted({rel.rpartition("/")[0] for rel in written if rel in feed_set})
    return [join_url(config.site.base_url, f"{d}/{name}") for d in dirs for _, name, _, _ in FORMATS]


def _entries(raw: object) -> list[dict]:
    """The stored queue, keeping only well-formed entries."""
    if not isinstance(raw, list):
        return []
    out = []
    for e in raw:
        if isinstance(e, dict) and isinstance(e.get("hub"), str) and isinstance(e.get("url"), str) \
                and isinstance(e.get("since"), str) and isinstance(e.get("attempts"), int):
            out.append(e)
    return out


def _key(e: dict) -> tuple[str, str]:
    return e["hub"], e["url"]


def _warn(report: WebSubReport, text: str) -> None:
    log.warning("%s", text)
    report.warnings.append(text)


def _enqueue(store, hubs: Sequence[str], urls: Sequence[str], now: datetime,
             report: WebSubReport) -> list[dict]:
    """Add this publish's pings to the stored queue (a re-changed feed starts afresh), drop
    entries of hubs no longer configured and the oldest past MAX_PENDING; the queue."""
    with store.transaction():
        raw = store.meta_get(PENDING)
        queue = _entries(raw)
        before = list(queue)
        fresh = [(h, u) for u in urls for h in hubs]
        if fresh:
            new_keys = set(fresh)
            queue = [e for e in queue if _key(e) not in new_keys]
            queue += [{"hub": h, "url": u, "since": iso(now), "attempts": 0} for h, u in fresh]
            report.queued = len(fresh)
        configured = set(hubs)
        gone = [e for e in queue if e["hub"] not in configured]
        if gone:
            queue = [e for e in queue if e["hub"] in configured]
            report.dropped += len(gone)
            _warn(report, f"websub: dropped {len(gone)} pending ping(s) for hubs no longer in "
                          "[websub] hubs")
        if len(queue) > MAX_PENDING:
            cut = len(queue) - MAX_PENDING
            queue = queue[cut:]
            report.dropped += cut
            _warn(report, f"websub: {cut} oldest pending ping(s) dropped: more than "
                          f"{MAX_PENDING} queued (is a hub down?)")
        if queue != before or (raw is not None and not isinstance(raw, list)):
            store.meta_set(PENDING, queue)
    return queue


def _no_redirect() -> urllib.request.OpenerDirector:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # urllib would turn a redirected POST into a GET without the body: a 3xx is a failure.
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
            return None

    return urllib.request.build_opener(NoRedirect)


def post_publish(hub: str, url: str) -> Outcome:
    """One `hub.mode=publish` POST (W3C WebSub's publisher ping, as PubSubHubbub 0.4 hubs
    take it): 2xx is success."""
    body = urlencode({"hub.mode": "publish", "hub.url": url}).encode("ascii")
    req = urllib.request.Request(hub, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": f"digest/{__version__} (WebSub publisher)",
    })
    try:
        with _no_redirect().open(req, timeout=TIMEOUT) as resp:
            resp.read(65536)
            code = resp.status
    except urllib.error.HTTPError as e:
        code = e.code
        e.close()
    except (OSError, ValueError) as e:  # refused, timed out, DNS, TLS, bad status line
        reason = getattr(e, "reason", None) or e
        return Outcome(False, f"no answer ({reason})", hub_down=True)
    except Exception as e:  # http.client.HTTPException and kin: a broken answer
        return Outcome(False, f"bad answer ({type(e).__name__}: {e})", hub_down=True)
    if 200 <= code < 300:
        return Outcome(True)
    return Outcome(False, f"HTTP {code}", hub_down=code >= 500 or code == 429)


def _bounded_post(post: Post, hub: str, url: str, limit: float) -> Outcome:
    """`post(hub, url)` on a daemon thread, waited for at most `limit` seconds: a socket
    timeout bounds each read, not the POST, and not the DNS lookup."""
    box: list[Outcome] = []

    def call() -> None:
        try:
            box.append(post(hub, url))
        except Exception as e:  # a post function that raises is a hub without an answer
            box.append(Outcome(False, f"no answer ({type(e).__name__}: {e})", hub_down=True))

    t = threading.Thread(target=call, name="websub-post", daemon=True)
    t.start()
    t.join(max(limit, 0.0))
    if box:
        return box[0]
    return Outcome(False, f"no answer (timed out after {limit:.0f} s)", hub_down=True)


def _ping_one_hub(post: Post, hub: str, entries: list[dict],
                  record: Callable[[dict, Outcome], bool]) -> None:
    """Ping `hub` for each entry until its budget is spent or it stops answering; each
    outcome goes to `record`, which says False once the run stopped waiting."""
    deadline = time.monotonic() + HUB_BUDGET
    for e in entries:
        if time.monotonic() > deadline:
            break
        outcome = _bounded_post(post, hub, e["url"], TIMEOUT)
        if not record(e, outcome):
            break
        if outcome.hub_down:
            break  # the others wait for the next run instead of each waiting out a timeout


def ping_hubs(config: Config, store, changed_feed_urls: Sequence[str], now: datetime,
              *, post: Post = post_publish) -> WebSubReport:
    """Queue one ping per configured hub and URL in `changed_feed_urls`, then send every
    queued ping (this run's and those left by earlier runs). `now` is wall-clock time: it
    dates new entries and decides when old ones are given up. Returns within about
    `HUB_BUDGET + TIMEOUT` seconds whatever the hubs do."""
    hubs = tuple(config.websub.hubs)
    report = WebSubReport(hubs=len(hubs))
    if not hubs and not store.meta_get(PENDING):
        return report  # the common case without WebSub: no lock, no write
    queue = _enqueue(store, hubs, changed_feed_urls, now, report)
    if not queue:
        return report
    by_hub: dict[str, list[dict]] = {}
    for e in queue:
        by_hub.setdefault(e["hub"], []).append(e)
    results = _ping_all(post, by_hub)
    _settle(store, results, now, report)
    return report


def _ping_all(post: Post, by_hub: dict[str, list[dict]]) -> list[tuple[dict, Outcome]]:
    """Ping every hub (at most MAX_HUB_THREADS at once, each on a daemon thread) and wait at
    most HUB_BUDGET + TIMEOUT in all; the outcomes known by then. A hub thread still running
    is abandoned: what it reports later is ignored, and its untried pings stay queued."""
    lock = threading.Lock()
    results: list[tuple[dict, Outcome]] = []
    closed = False
    todo = list(by_hub)
    slots = threading.Semaphore(MAX_HUB_THREADS)

    def record(e: dict, outcome: Outcome) -> bool:
        with lock:
            if closed:
                return False
            results.append((e, outcome))
            return True

    def run(hub: str) -> None:
        try:
            _ping_one_hub(post, hub, by_hub[hub], record)
        finally:
            slots.release()

    deadline = time.monotonic() + HUB_BUDGET + TIMEOUT
    threads = []
    for hub in todo:
        if not slots.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            break  # out of time: the remaining hubs wait for the next run
        t = threading.Thread(target=run, args=(hub,), name="websub", daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.0))
    with lock:
        closed = True
        done = list(results)
    if any(t.is_alive() for t in threads):
        log.warning("websub: stopped waiting for hub(s) after %.0f s; their pings stay queued",
                    HUB_BUDGET + TIMEOUT)
    return done


def _settle(store, results: list[tuple[dict, Outcome]], now: datetime,
            report: WebSubReport) -> None:
    """Write the outcomes back: taken entries leave the queue, failed ones count an attempt,
    and entries past the bounds are given up. Re-read under the lock: another publish may
    have queued (or re-queued) pings meanwhile, and those are kept as they are."""
    tried = {(_key(e), e["since"]): o for e, o in results}
    with store.transaction():
        raw = store.meta_get(PENDING)
        queue = _entries(raw)
        kept = []
        for e in queue:
            outcome = tried.get((_key(e), e["since"]))
            if outcome is not None and outcome.ok:
                report.sent.append(_key(e))
                continue
            if outcome is not None:
                e = {**e, "attempts": e["attempts"] + 1, "error": outcome.reason, "last": iso(now)}
                report.failed.append((*_key(e), outcome.reason))
            try:
                age = now - parse_iso(e["since"])
            except ValueError:
                age = GIVE_UP_AFTER
            if e["attempts"] >= MAX_ATTEMPTS or age >= GIVE_UP_AFTER:
                why = e.get("error") or "no answer"
                report.given_up.append((*_key(e), why))
                _warn(report, f"websub: gave up pinging {e['hub']} for {e['url']} after "
                              f"{e['attempts']} attempt(s) since {e['since']} (last: {why})")
                continue
            kept.append(e)
        if kept != queue or raw != kept:
            store.meta_set(PENDING, kept)
    report.pending = len(kept)
    for hub, url, reason in report.failed:
        log.info("websub: %s did not take the ping for %s (%s); retried at the next publish",
                 hub, url, reason)


__all__ = ["MAX_PENDING", "PENDING", "Outcome", "WebSubReport", "feed_urls", "ping_hubs",
           "post_publish"]
