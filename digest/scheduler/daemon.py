"""The daemon: config.toml schedules as APScheduler jobs beside the web server, hot reload, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from digest.config import Config, load_config
from digest.errors import DigestError, SendBusy
from digest.logs import setup_logging
from digest.scheduler import cron as cronmath

log = logging.getLogger("digest.run")

# Wait this long after a change in the config directory before reading it: editors write
# a temp file, then rename it; reading mid-way would see half a file.
WATCH_DEBOUNCE_MS = 400

# Job ids. APScheduler's memory store orders jobs due at the same instant by id, and the
# asyncio executor starts them in that order, so at a shared minute ingest starts first and
# publish queues behind it on the content lock.
INGEST, PUBLISH, SEND = "ingest", "publish", "send"
BOUNCES = "bounces"

JOB_DEFAULTS = {
    # One run at a time per job; a run still going when the next is due skips that one.
    "max_instances": 1,
    # Many missed runs (laptop asleep, loop stalled) collapse into one catch-up run...
    "coalesce": True,
    # ...which always happens: the 1 s default would drop a late run with only a warning.
    "misfire_grace_time": None,
}


# --- the jobs: plain blocking functions, run in a worker thread --------------------------

def _metrics() -> Any:
    """digest.web.metrics (which owns prometheus_client), imported when a job first runs."""
    from digest.web import metrics

    return metrics


def ingest_job(config: Config, now: datetime) -> tuple[str, bool]:
    from digest import pipeline

    r = pipeline.ingest_paths(config, None)
    _metrics().observe_ingest(r)
    for event in r.events:  # each line once: the pipeline itself prints nothing
        if event.kind == "rejected":
            log.warning("ingest: rejected %s (hint: %s)", event.text, event.hint or "-")
        else:
            log.debug("ingest: %s", event.text)
    return (f"{len(r.added)} added, {len(r.updated)} updated, {len(r.unchanged)} unchanged, "
            f"{len(r.rejections)} rejected"), True


def publish_job(config: Config, now: datetime) -> tuple[str, bool]:
    from digest import pipeline

    r = pipeline.publish(config, now=now)
    _metrics().observe_publish(r)
    for warning in r.warnings:  # stories skipped for a damaged body
        log.warning("publish: %s", warning)
    # WebSub pings (and retries of those a hub did not take) ride on every publish tick.
    ws = f"; {r.websub.summary()}" if r.websub is not None and r.websub.hubs else ""
    return f"{len(r.written)} written, {len(r.unchanged)} unchanged, {len(r.removed)} removed{ws}", True


def send_job(config: Config, now: datetime) -> tuple[str, bool]:
    """Every digest's due edition; the pipeline decides per subscriber from the journal."""
    from digest import pipeline

    parts, busy = [], False
    for d in config.digests:
        try:
            r = pipeline.send_digest(config, name=d.name, now=now, due_only=True)
            _metrics().observe_send(r)
        except SendBusy:
            # Two daemons on one store: the other is sending this digest; nothing is wrong
            # (an ERROR here would repeat every minute). The next tick finds it done.
            parts.append(f"{d.name}: being sent by another process")
            continue
        acted = bool(r.sent or r.failed or r.bounced or r.ambiguous)
        busy = busy or acted
        lines = r.lines()
        parts.append(lines[0])
        # Details ("next try after …" for a waiting retry) would repeat every minute while
        # nothing happens: log them at INFO only on ticks that sent or failed something.
        for line in lines[1:]:
            log.log(logging.INFO if acted else logging.DEBUG, "send: %s", line.strip())
    return "; ".join(parts) or "no digests configured", busy


def bounces_job(config: Config, now: datetime) -> tuple[str, bool]:
    """Read the [bounces] mailbox (pipeline.process_bounces); idle without one."""
    from digest import pipeline

    if not config.bounces.mailbox:
        return "no [bounces] mailbox configured", False
    r = pipeline.process_bounces(config, now=now)
    lines = r.lines()
    for line in lines[1:]:
        log.log(logging.WARNING if "left in the mailbox" in line else logging.INFO,
                "bounces: %s", line.strip())
    return lines[0].removeprefix("bounces: "), bool(r.read)


JOBS: dict[str, Callable[[Config, datetime], tuple[str, bool]]] = {
    INGEST: ingest_job, PUBLISH: publish_job, SEND: send_job, BOUNCES: bounces_job,
}

LEADER_ONLY = (INGEST, PUBLISH, BOUNCES)  # one node at a time on a shared store; sends share the work


def run_as_leader(job: str, config: Config, now: datetime) -> tuple[str, bool] | None:
    """Run a leader-only `job` if this process leads it now; None when another node does."""
    from digest import pipeline

    with pipeline.leader(config, job) as lead:
        return JOBS[job](config, now) if lead else None


# --- describe: `digest schedule` -------------------------------------------------------

def _fmt(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%MZ")


def describe(config: Config, now: datetime) -> list[str]:
    """Each job with its next 3 run times; digests once per active subscribers' time zone."""
    lines = []
    for job, cron in ((INGEST, config.schedule.ingest), (PUBLISH, config.schedule.publish)):
        tz = config.schedule.timezone
        nxt = ", ".join(_fmt(t) for t in cronmath.next_fires(cron, tz, now, 3))
        lines.append(f"{job:<8} {cron!r} {tz}  next: {nxt}")
    from digest import pipeline

    zones = pipeline.status(config).zones or {"UTC": 0}
    grace = f"{config.schedule.grace_hours:g} h"
    for d in config.digests:
        for tz in sorted(zones):
            try:
                fires = cronmath.next_fires(d.cron, tz, now, 3)
            except ValueError as e:  # a subscriber's zone the system does not know
                lines.append(f"digest {d.name} {d.cron!r} in {tz}: {e}")
                continue
            z = cronmath.zone(tz)
            nxt = ", ".join(f"{t.astimezone(z):%Y-%m-%d %H:%M %Z} ({_fmt(t)})" for t in fires)
            who = f"{zones[tz]} subscriber{'s' if zones[tz] != 1 else ''}" if zones[tz] else "no subscribers yet"
            lines.append(f"digest {d.name} {d.cron!r} in {tz} ({who}, grace {grace})  next: {nxt}")
    return lines


# --- the daemon ------------------------------------------------------------------------

@dataclass
class _Web:
    stop: asyncio.Event
    task: asyncio.Task
    key: tuple


def _web_key(config: Config) -> tuple:
    """The settings the web server is built from; a change restarts it."""
    return (config.web, config.site, config.feeds, config.store, tuple(sorted(config.tags.items())),
            config.smtp, config.websub)  # websub: the Link headers of feed responses


def _text_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


class Daemon:
    """One asyncio loop: scheduler, web server, config watcher, signal handlers."""

    def __init__(self, config_path: Path, config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.seen_hash = _text_hash(config_path)
        self.stop = asyncio.Event()
        self.content_lock = asyncio.Lock()  # ingest and publish never overlap
        self.reload_lock = asyncio.Lock()
        self.busy: set[str] = set()
        self.tasks: set[asyncio.Task] = set()
        self.web: _Web | None = None
        self.background: set[asyncio.Task] = set()
        self.sched = AsyncIOScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)

    # jobs
    def _triggers(self, config: Config) -> dict[str, Any]:
        return {
            INGEST: cronmath.cron_trigger(config.schedule.ingest, config.schedule.timezone),
            PUBLISH: cronmath.cron_trigger(config.schedule.publish, config.schedule.timezone),
            BOUNCES: cronmath.cron_trigger(config.schedule.bounces, config.schedule.timezone),
            # Digests are due per subscriber zone; waking every minute and letting the journal
            # decide (anacron) needs no per-zone jobs and survives restarts and reloads.
            SEND: CronTrigger(minute="*", timezone=UTC),
        }

    def schedule_jobs(self) -> None:
        now = datetime.now(UTC)
        for job, trigger in self._triggers(self.config).items():
            # next_run_time=now: one run at start, which sends an edition missed while down.
            self.sched.add_job(self.run_job, trigger, args=[job], id=job, name=job,
                               next_run_time=now)

    async def run_job(self, job: str, quiet_idle: bool = True) -> bool:
        """One run of `job`, unless it is still running or the daemon is stopping."""
        if self.stop.is_set():
            log.info("%s: not started, daemon is stopping", job)
            return False
        if job in self.busy:
            log.info("%s: previous run still in progress; skipping this one", job)
            return False
        self.busy.add(job)
        # APScheduler's executor cancels running coroutines on shutdown, but the worker thread
        # cannot be cancelled: the body runs in its own task, which the stop sequence awaits.
        inner = asyncio.ensure_future(self._run(job, quiet_idle))
        self.tasks.add(inner)
        inner.add_done_callback(self.tasks.discard)
        return await asyncio.shield(inner)

    async def _run(self, job: str, quiet_idle: bool) -> bool:
        config = self.config  # this run keeps the config it started with, across reloads
        t0 = time.monotonic()
        try:
            if job in LEADER_ONLY:
                async with self.content_lock:
                    result = await asyncio.to_thread(run_as_leader, job, config,
                                                     datetime.now(UTC))
                if result is None:
                    log.debug("%s: skipped, another node runs it (leader lock held)", job)
                    return True
                summary, notable = result
            else:
                # Let a running ingest/publish finish first (at start they all fire at once),
                # without holding the lock through a long send.
                async with self.content_lock:
                    pass
                summary, notable = await asyncio.to_thread(JOBS[job], config, datetime.now(UTC))
            # The every-minute send tick logs at debug level when there was nothing due.
            level = logging.DEBUG if quiet_idle and job in (SEND, BOUNCES) and not notable else logging.INFO
            log.log(level, "%s: %s in %.2f s", job, summary, time.monotonic() - t0)
            _metrics().observe_job(job, time.monotonic() - t0, True)
            return True
        except DigestError as e:
            log.error("%s: failed after %.2f s: %s (hint: %s)", job, time.monotonic() - t0,
                      e.message, e.hint or "-")
        except Exception:
            log.exception("%s: crashed after %.2f s", job, time.monotonic() - t0)
        finally:
            self.busy.discard(job)
        _metrics().observe_job(job, time.monotonic() - t0, False)
        return False

    @staticmethod
    def _jobs_text(config: Config) -> str:
        tz = config.schedule.timezone
        return (f"ingest {config.schedule.ingest!r} {tz}, publish {config.schedule.publish!r} {tz}, "
                f"send every minute ({', '.join(f'{d.name} {d.cron!r}' for d in config.digests)} "
                f"in subscriber time zones, grace {config.schedule.grace_hours:g} h)")

    # web
    async def start_web(self, config: Config, sock: Any = None) -> None:
        from digest import web

        self.serving = True  # wanted from now on: a failed restart is retried on reload
        sock = sock or web.bind(config)  # a port in use is a DigestError naming host:port
        stop = asyncio.Event()
        task = asyncio.create_task(web.serve_async(config, stop, sock=sock))
        task.add_done_callback(self._web_done)
        self.web = _Web(stop, task, _web_key(config))
        log.info("web: serving http://%s:%s/", config.web.host, sock.getsockname()[1] if sock else config.web.port)

    def _web_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("web: server stopped: %s", task.exception())

    async def stop_web(self) -> None:
        if self.web is not None:
            self.web.stop.set()
            with contextlib.suppress(Exception):
                await self.web.task
            self.web = None

    async def restart_web(self, new: Config) -> None:
        """Serve with `new`'s settings. On a new address the new socket is bound first, and
        only then is the old server stopped: a reload that cannot bind keeps the old one."""
        from digest import web

        running = self.web
        sock = None
        if running is not None and (running.key[0].host, running.key[0].port) != \
                (new.web.host, new.web.port):
            try:
                sock = web.bind(new)
            except DigestError as e:
                log.error("web: cannot apply the new settings, still serving the old ones: %s "
                          "(hint: %s)", e.message, e.hint or "-")
                return
        await self.stop_web()
        try:
            await self.start_web(new, sock)
        except DigestError as e:  # same address, freed and then taken: retried on reload
            log.error("web: restart failed: %s (hint: %s)", e.message, e.hint or "-")

    # reload
    async def reload(self, why: str, force: bool = False) -> None:
        async with self.reload_lock:
            digest_hash = _text_hash(self.config_path)
            if not force and digest_hash == self.seen_hash:
                return
            self.seen_hash = digest_hash
            try:
                new = load_config(self.config_path)
            except DigestError as e:
                log.error("config: reload (%s) refused, keeping the running configuration: %s "
                          "(hint: %s)", why, e.message, e.hint or "-")
                return
            old, self.config = self.config, new
            new_t = self._triggers(new)
            for job in (INGEST, PUBLISH, BOUNCES):
                if (getattr(old.schedule, job), old.schedule.timezone) != \
                        (getattr(new.schedule, job), new.schedule.timezone):
                    self.sched.reschedule_job(job, trigger=new_t[job])
            changed = [name for name in ("site", "store", "ingest", "feeds", "websub", "rank", "tags", "smtp",
                                         "web", "schedule", "digests")
                       if getattr(old, name) != getattr(new, name)]
            if getattr(self, "serving", False) and (self.web is None
                                                    or self.web.key != _web_key(new)):
                await self.restart_web(new)
            log.info("config: reloaded (%s); changed: %s; now %s", why, ", ".join(changed) or "nothing",
                     self._jobs_text(new))

    async def watch(self) -> None:
        """Watch the directory holding config.toml (editors replace the file by renaming)."""
        from watchfiles import awatch

        name = self.config_path.name

        def only_config(_change: Any, path: str) -> bool:
            return Path(path).name == name

        try:
            async for _changes in awatch(self.config_path.resolve().parent, watch_filter=only_config,
                                         stop_event=self.stop, debounce=WATCH_DEBOUNCE_MS,
                                         recursive=False):
                await self.reload("file changed")
        except Exception as e:  # a broken watcher must not stop the daemon
            log.error("config: watching %s stopped: %s; SIGHUP still reloads", self.config_path.parent, e)

    # lifecycle
    def _on_hup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP", force=True))
        self.background.add(task)  # keep a reference until it is done
        task.add_done_callback(self.background.discard)

    def request_stop(self, signame: str) -> None:
        if self.stop.is_set():
            # A second signal means "now": cut in-flight sends short; the journal has them
            # as `sending` and the next start completes them.
            log.warning("%s again: exiting now with %d job(s) unfinished", signame, len(self.tasks))
            logging.shutdown()
            os._exit(1)
        log.info("%s: stopping; no new jobs start, waiting for %d running", signame, len(self.tasks))
        self.stop.set()

    async def main(self, serve_web: bool = True) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        if serve_web:
            await self.start_web(self.config)
        self.schedule_jobs()
        self.sched.start()
        watcher = asyncio.create_task(self.watch())
        log.info("daemon: running (pid %d); %s; watching %s", os.getpid(),
                 self._jobs_text(self.config), self.config_path.resolve().parent)
        await self.stop.wait()

        self.sched.pause()  # start nothing new; running jobs go on
        await self.stop_web()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        running = set(self.tasks)
        # A send cut off after this is left as "sending" in the delivery journal and
        # completed by the next start (the pipeline's rule).
        wait = self.config.schedule.stop_wait_seconds
        if running:
            log.info("daemon: waiting up to %g s for %s", wait, ", ".join(sorted(self.busy)))
            _done, pending = await asyncio.wait(running, timeout=wait)
            if pending:
                # Threads cannot be cancelled; the journal lets the next start finish the send.
                log.warning("daemon: %s still running after %g s; exiting anyway",
                            ", ".join(sorted(self.busy)), wait)
                logging.shutdown()
                os._exit(0)
        self.sched.shutdown(wait=False)
        log.info("daemon: stopped")
        return 0


async def _once(config: Config) -> int:
    """Ingest, publish, then every due digest; one log line each (no scheduler, no web)."""
    d = Daemon(config.path, config)
    ok = True
    for job in (INGEST, PUBLISH, SEND):
        ok = await d.run_job(job, quiet_idle=False) and ok
    return 0 if ok else 1


def run(config_path: Path, once: bool = False, log_format: str = "text") -> int:
    """`digest run`: the daemon until SIGTERM/SIGINT, or `--once` and exit. One at a time
    per embedded store: a second exits 1 naming the first one's pid."""
    from digest import pipeline

    setup_logging(log_format)
    config_path = Path(config_path)
    config = load_config(config_path)  # a bad config at start is the CLI's exit 1
    with pipeline.daemon_lock(config):
        if once:
            return asyncio.run(_once(config))
        return asyncio.run(Daemon(config_path, config).main())
