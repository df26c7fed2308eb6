"""`digest run` as a real subprocess: reloads, signals, restart safety with aiosmtpd on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from digest.store import Store
from tests.support.daemon import (
    WAIT,
    DaemonProc,
    add_subscribers,
    editor_save,
    free_port,
    line_of,
    make_project,
    smtp_sink,
)

pytestmark = pytest.mark.daemon

ENV = {"DIGEST_LOG_LEVEL": "DEBUG"}
ZONES = ["UTC", "Asia/Shanghai", "America/New_York", "Europe/Berlin", "Asia/Kolkata",
         "America/Los_Angeles"]


def due_a_minute_ago() -> str:
    """An hourly cron whose latest fire was about a minute ago in every whole-hour zone
    (and under an hour ago in half-hour zones): due now, and not again for ~59 minutes."""
    return f"{(datetime.now(UTC) - timedelta(minutes=1)).minute} * * * *"


def smtp_project(tmp_path: Path, smtp_port: int, n: int) -> tuple[Path, list[str]]:
    cfg = make_project(tmp_path, web_port=free_port(), replace={
        'transport = "maildir"': 'transport = "smtp"',
        "port = 25": f"port = {smtp_port}",
        "pool_size = 4": "pool_size = 1",
        "retries = 4": "retries = 1",
        'cron = "0 7 * * *"': f'cron = "{due_a_minute_ago()}"',
    })
    people = [(f"reader{i}@example.org", ZONES[i % len(ZONES)]) for i in range(n)]
    add_subscribers(cfg, people)
    return cfg, [e for e, _ in people]


def get(port: int, path: str = "/index.html") -> int:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code


def web_port_of(cfg: Path) -> int:
    from digest.config import load_config

    return load_config(cfg).web.port


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digest", "--config", str(cfg), *args],
                          cwd=cfg.parent, capture_output=True, text=True, timeout=WAIT,
                          env={**os.environ, **ENV})


# --- reloads and signals ---------------------------------------------------------------

def test_valid_reload_takes_effect_and_sigterm_exits_0(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, web_port=free_port())
    port = web_port_of(cfg)
    d = DaemonProc(cfg, env=ENV)
    try:
        d.wait_for(r"daemon: running")
        d.wait_for(r"publish: \d+ written")
        assert get(port) == 200
        text = cfg.read_text(encoding="utf-8").replace('ingest = "*/15 * * * *"', 'ingest = "0 3 * * 1-5"')
        editor_save(cfg, text)
        d.wait_for(r"config: reloaded \(file changed\); changed: schedule; now ingest '0 3 \* \* 1-5' UTC")
        assert get(port) == 200
        # SIGHUP reloads too, even with nothing changed
        d.signal(signal.SIGHUP)
        d.wait_for(r"config: reloaded \(SIGHUP\); changed: nothing")
        # a new web port: the server moves without a restart of the daemon
        new_port = free_port()
        editor_save(cfg, text.replace(f"port = {port}", f"port = {new_port}"))
        d.wait_for(r"config: reloaded \(file changed\); changed: web")
        assert get(new_port) == 200
        pid = d.proc.pid
        assert d.stop() == 0
        assert d.proc.pid == pid
        assert "daemon: stopped" in d.log()
    finally:
        d.kill()


def test_invalid_reload_is_refused_while_serving(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, web_port=free_port())
    port = web_port_of(cfg)
    good = cfg.read_text(encoding="utf-8")
    d = DaemonProc(cfg, env=ENV)
    try:
        d.wait_for(r"daemon: running")
        d.wait_for(r"publish: \d+ written")
        editor_save(cfg, good.replace("items = 50", 'items = "many"'))
        line = line_of(cfg, 'items = "many"')
        d.wait_for(rf"config: reload \(file changed\) refused, keeping the running configuration: "
                   rf"\S*config\.toml:{line}: \[feeds\]\.items: expected an integer, got string 'many'")
        assert d.proc.poll() is None
        assert get(port) == 200
        # an unknown key, by SIGHUP: refused with its own line and key
        editor_save(cfg, good.replace("[schedule]\n", "[schedule]\ningets = \"* * * * *\"\n"))
        line = line_of(cfg, 'ingets = "* * * * *"')
        d.wait_for(rf"refused.*config\.toml:{line}: \[schedule\]\.ingets: unknown key")
        d.signal(signal.SIGHUP)
        d.wait_for(rf"reload \(SIGHUP\) refused.*config\.toml:{line}: \[schedule\]\.ingets")
        assert get(port) == 200
        editor_save(cfg, good)
        d.wait_for(r"config: reloaded \(file changed\)")
        assert d.stop() == 0
    finally:
        d.kill()


def test_invalid_config_at_start_exits_1(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, web_port=free_port(), replace={'security = "none"': 'security = "ssl"'})
    r = cli(cfg, "run")
    assert r.returncode == 1
    line = line_of(cfg, 'security = "ssl"')
    assert f"config.toml:{line}: [smtp].security: 'ssl' is not one of none, starttls, tls" in r.stderr


def test_run_once_runs_each_job_and_exits_0(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, web_port=free_port())
    r = cli(cfg, "run", "--once")
    assert r.returncode == 0, r.stderr
    for pattern in ("ingest: 3 added", "publish: ", "send: daily: sent 0"):
        assert pattern in r.stderr
    assert (tmp_path / "public" / "index.html").exists()


def test_run_once_logs_each_rejection_once_with_its_hint(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, web_port=free_port())
    (tmp_path / "seeds" / "empty.txt").write_bytes(b"")
    r = cli(cfg, "run", "--once")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("empty.txt:1: file is empty") == 1, r.stderr  # the log only, not a print too
    assert "WARNING digest.run: ingest: rejected " in r.stderr
    assert "(hint: write the story text, or delete the file)" in r.stderr
    assert "ingest: 3 added, 0 updated, 0 unchanged, 1 rejected" in r.stderr


def test_schedule_lists_jobs_and_zones(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, web_port=free_port())
    Store(tmp_path / "store")  # `schedule` needs a store (a missing one: tests/cli/test_ops.py)
    r = cli(cfg, "schedule", "--now", "2024-03-09T12:00:00Z")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "ingest   '*/15 * * * *' UTC  next: 2024-03-09T12:15Z, 2024-03-09T12:30Z, 2024-03-09T12:45Z",
        "publish  '*/15 * * * *' UTC  next: 2024-03-09T12:15Z, 2024-03-09T12:30Z, 2024-03-09T12:45Z",
        "digest daily '0 7 * * *' in UTC (no subscribers yet, grace 6 h)  next: 2024-03-10 07:00 UTC "
        "(2024-03-10T07:00Z), 2024-03-11 07:00 UTC (2024-03-11T07:00Z), 2024-03-12 07:00 UTC (2024-03-12T07:00Z)",
    ]
    add_subscribers(cfg, [("a@example.org", "America/New_York"), ("b@example.org", "America/New_York"),
                          ("c@example.org", "Asia/Shanghai")])
    out = cli(cfg, "schedule", "--now", "2024-03-09T12:00:00Z").stdout
    assert ("digest daily '0 7 * * *' in America/New_York (2 subscribers, grace 6 h)  next: "
            "2024-03-10 07:00 EDT (2024-03-10T11:00Z), 2024-03-11 07:00 EDT (2024-03-11T11:00Z), "
            "2024-03-12 07:00 EDT (2024-03-12T11:00Z)") in out
    assert "in Asia/Shanghai (1 subscriber, grace 6 h)  next: 2024-03-10 07:00 CST (2024-03-09T23:00Z)" in out


# --- restart safety --------------------------------------------------------------------

def test_started_late_sends_each_subscriber_once_and_restart_sends_nothing(tmp_path: Path) -> None:
    ctl, sink = smtp_sink()
    try:
        cfg, emails = smtp_project(tmp_path, ctl.port, 6)
        d = DaemonProc(cfg, env=ENV)
        try:
            d.wait_for(r"send: daily: sent 6, already sent 0")
            assert d.stop() == 0
        finally:
            d.kill()
        assert sink.per_recipient() == {e: 1 for e in emails}
        # a restart just after the send: nothing goes out again
        d = DaemonProc(cfg, env=ENV)
        try:
            d.wait_for(r"send: daily: sent 0, already sent 6")
            assert d.stop() == 0
        finally:
            d.kill()
        assert sink.per_recipient() == {e: 1 for e in emails}
    finally:
        ctl.stop()


def test_reload_and_sigterm_during_send_let_it_finish_and_exit_0(tmp_path: Path) -> None:
    ctl, sink = smtp_sink(delay=1.0)
    first = threading.Event()
    sink.on_message = lambda n: first.set()
    try:
        cfg, emails = smtp_project(tmp_path, ctl.port, 4)
        d = DaemonProc(cfg, env=ENV)
        try:
            assert first.wait(WAIT), d.log()
            # a valid edit mid-send: the new settings load, the send in progress goes on
            text = cfg.read_text(encoding="utf-8")
            editor_save(cfg, text.replace("max_stories = 10", "max_stories = 5"))
            d.wait_for(r"config: reloaded \(file changed\); changed: digests")
            d.signal(signal.SIGTERM)
            assert d.proc.wait(timeout=WAIT) == 0
            d.wait_eof()
        finally:
            d.kill()
        log = "\n".join(ln for ln in d.log().splitlines() if "digest.run" in ln)
        assert "SIGTERM: stopping; no new jobs start, waiting for 1 running" in log, log
        assert log.index("config: reloaded") < log.index("send: daily: sent 4"), log
        assert log.index("SIGTERM") < log.index("send: daily: sent 4") < log.index("daemon: stopped"), log
        assert sink.per_recipient() == {e: 1 for e in emails}
    finally:
        ctl.stop()


def test_sigterm_past_stop_wait_exits_0_and_next_start_completes(tmp_path: Path) -> None:
    ctl, sink = smtp_sink(delay=1.0)
    first = threading.Event()
    sink.on_message = lambda n: first.set()
    try:
        cfg, emails = smtp_project(tmp_path, ctl.port, 5)
        text = cfg.read_text(encoding="utf-8")
        cfg.write_text(text.replace("stop_wait_seconds = 120.0", "stop_wait_seconds = 0.5"), encoding="utf-8")
        d = DaemonProc(cfg, env=ENV)
        try:
            assert first.wait(WAIT), d.log()
            d.signal(signal.SIGTERM)
            assert d.proc.wait(timeout=WAIT) == 0
            d.wait_eof()
        finally:
            d.kill()
        assert "send still running after 0.5 s; exiting anyway" in d.log()
        assert len(sink.per_recipient()) < len(emails)  # cut short
        d = DaemonProc(cfg, env=ENV)
        try:
            d.wait_for(r"send: daily: sent [1-5], already sent")
            assert d.stop() == 0
        finally:
            d.kill()
        ids = sink.message_ids()
        assert set(ids) == set(emails) and all(len(v) == 1 for v in ids.values()), ids
        assert sum(c - 1 for c in sink.per_recipient().values()) <= 1
    finally:
        ctl.stop()


def _kill_and_restart(tmp_path: Path, kill_at: int, n: int = 5) -> dict[str, int]:
    """SIGKILL the daemon when the SMTP server has taken `kill_at` messages, restart it, and
    check every subscriber ends with one edition (one Message-ID). Returns raw copies each."""
    ctl, sink = smtp_sink(delay=0.2)
    reached = threading.Event()
    sink.on_message = lambda count: reached.set() if count >= kill_at else None
    try:
        cfg, emails = smtp_project(tmp_path, ctl.port, n)
        d = DaemonProc(cfg, env=ENV)
        try:
            assert reached.wait(WAIT), d.log()
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait(timeout=WAIT)
        finally:
            d.kill()
        d = DaemonProc(cfg, env=ENV)
        try:
            d.wait_for(r"send: daily: sent \d+")
            assert d.stop() == 0
        finally:
            d.kill()
        ids = sink.message_ids()
        assert set(ids) == set(emails)
        assert all(len(v) == 1 for v in ids.values()), ids  # one edition each
        counts = dict(sink.per_recipient())
        # A kill after the server took DATA but before the outcome was journalled can deliver
        # that one message twice (same Message-ID). The sink takes 0.2 s per message, longer
        # than the journal's group-commit window, so nothing else may repeat.
        assert sum(c - 1 for c in counts.values()) <= 1, counts
        # and the journal agrees: nothing more is due, nothing more goes out
        again = cli(cfg, "run", "--once")
        assert "send: daily: sent 0, already sent" in again.stderr, again.stderr
        assert dict(sink.per_recipient()) == counts
        return counts
    finally:
        ctl.stop()


def test_sigkill_mid_send_and_restart_delivers_one_edition_each(tmp_path: Path) -> None:
    _kill_and_restart(tmp_path, kill_at=2)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5])
def test_sigkill_trials(tmp_path: Path, kill_at: int) -> None:
    _kill_and_restart(tmp_path, kill_at=kill_at)
