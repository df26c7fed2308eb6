"""The daemon (`digest run`) and CLI commands writing one store at the same time: the daemon
ingests its inbox, takes web subscriptions and sends, while `digest ingest` and
`digest subscribers add` run beside it — afterwards every write of both sides is there."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from digest.ingest import parse_stories
from digest.models import parse_iso
from digest.store import Store
from tests.support import kill_harness as kh
from tests.support.daemon import DaemonProc, free_port
from tests.support.store import make_story

pytestmark = pytest.mark.daemon

REPO = Path(__file__).resolve().parents[2]
SECRET = {"DIGEST_SECRET": "concurrency-secret"}
AS_OF = parse_iso("2026-11-22T00:00:00Z")


def write_stories(d: Path, prefix: str, n: int) -> dict[str, str]:
    """n structured story files; returns id → content hash as the parser reads them."""
    d.mkdir(parents=True, exist_ok=True)
    want = {}
    for i in range(n):
        blob = json.dumps(make_story(i, prefix=prefix).to_dict(), ensure_ascii=False)
        (d / f"{prefix}{i:04d}.json").write_text(blob, encoding="utf-8")
        (s,) = parse_stories(blob, "x.json", AS_OF)
        want[s.id] = s.content_hash()
    return want


def _round(tmp_path: Path, n_files: int, n_cli_subs: int) -> dict[str, int]:
    web_port = free_port()
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    for old, new in {"port = 8000": f"port = {web_port}", 'paths = ["seeds"]': 'paths = ["inbox"]',
                     'cron = "0 7 * * *"': 'cron = "* * * * *"'}.items():
        text = text.replace(old, new, 1)
    cfg = tmp_path / "config.toml"
    cfg.write_text(text, encoding="utf-8")
    daemon_wants = write_stories(tmp_path / "inbox", "dmn", n_files)
    cli_wants = write_stories(tmp_path / "cli-inbox", "cli", n_files)
    Store(tmp_path / "store")  # created up front, so both sides open the same schema

    errors: list[str] = []
    cli_runs: list[tuple[float, float]] = []

    def cli_side() -> None:
        t0 = time.monotonic()
        r = kh.run(kh.digest_cmd(cfg, "ingest", str(tmp_path / "cli-inbox")), SECRET)
        cli_runs.append((t0, time.monotonic()))
        if r.returncode != 0:
            errors.append("cli ingest: " + r.stderr[-2000:])
        for i in range(n_cli_subs):
            r = kh.run(kh.digest_cmd(cfg, "subscribers", "add", f"cli{i}@example.com",
                                     "--lang", "en"), SECRET)
            if r.returncode != 0:
                errors.append(f"cli add {i}: " + r.stderr[-2000:])

    web_emails = [f"web{i}@example.com" for i in range(4)]

    def web_side() -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=30) as client:
            while True:
                try:
                    token = client.get("/csrf").json()["token"]
                    break
                except (httpx.HTTPError, ValueError):
                    if time.monotonic() > deadline:
                        errors.append("web never came up")
                        return
                    time.sleep(0.05)
            for e in web_emails:
                r = client.post("/subscribe", data={"email": e, "languages": "en",
                                                    "timezone": "UTC", "csrf": token})
                if r.status_code != 200:
                    errors.append(f"web subscribe {e}: {r.status_code} {r.text[:300]}")

    d = DaemonProc(cfg, env=SECRET)
    try:
        threads = [threading.Thread(target=cli_side), threading.Thread(target=web_side)]
        for t in threads:
            t.start()
        d.wait_for(r"ingest: .* in [\d.]+ s")
        for t in threads:
            t.join(timeout=kh.TIMEOUT)
        d.wait_for(r"publish: .* in [\d.]+ s")
        assert d.stop() == 0, d.log()
    finally:
        d.kill()
    assert not errors, errors
    store = Store(tmp_path / "store")
    have = {s.id: store.story_hash(s.id) for s in store.list_stories()}
    lost = sum(1 for k, v in {**daemon_wants, **cli_wants}.items() if have.get(k) != v)
    subs = {s.email: s.status for s in store.list_subscribers()}
    lost += sum(1 for i in range(n_cli_subs) if subs.get(f"cli{i}@example.com") != "active")
    lost += sum(1 for e in web_emails if subs.get(e) != "pending")
    assert lost == 0, (lost, sorted(subs))
    for sid in list(daemon_wants)[:20] + list(cli_wants)[:20]:
        assert store.get_story(sid).content_hash() == have[sid]
    # the store is still consistent for the next writer
    r = kh.run(kh.digest_cmd(cfg, "ingest", str(tmp_path / "cli-inbox")), SECRET)
    assert r.returncode == 0 and f"{n_files} unchanged" in r.stdout, r.stdout
    return {"stories": len(have), "subscribers": len(subs), "lost": lost}


def test_cli_and_daemon_write_the_store_at_once(tmp_path: Path) -> None:
    figures = _round(tmp_path, n_files=150, n_cli_subs=6)
    print(f"\nconcurrent writers: {figures}")


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(5))
def test_cli_and_daemon_write_the_store_at_once_many(tmp_path: Path, round_: int) -> None:
    figures = _round(tmp_path, n_files=400, n_cli_subs=15)
    print(f"\nconcurrent writers round {round_}: {figures}")


def test_two_cli_sends_at_once_send_each_digest_once(tmp_path: Path) -> None:
    """Two `digest send` processes racing: one sends, the other is refused with a hint."""
    from digest.models import Subscriber
    from tests.support.faults import FaultServer, More

    with FaultServer(more=More(data_delay=0.02)) as srv:
        text = (REPO / "config.toml").read_text(encoding="utf-8")
        for old, new in {'transport = "maildir"': 'transport = "smtp"',
                         "port = 25": f"port = {srv.port}",
                         'paths = ["seeds"]': f'paths = ["{REPO / "seeds"}"]'}.items():
            text = text.replace(old, new, 1)
        cfg = tmp_path / "config.toml"
        cfg.write_text(text, encoding="utf-8")
        assert kh.run(kh.digest_cmd(cfg, "ingest", "--as-of", "2026-11-22T06:00:00Z")).returncode == 0
        people = sorted(f"r{i:02d}@example.com" for i in range(20))
        Store(tmp_path / "store").upsert_subscribers(
            [Subscriber(email=e, status="active") for e in people])
        cmd = kh.digest_cmd(cfg, "send", "--now", "2026-11-22T08:00:00Z")
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=kh.env(**SECRET)) for _ in range(2)]
        outs = [p.communicate(timeout=kh.TIMEOUT) for p in procs]
        codes = sorted(p.returncode for p in procs)
        for _out, err in outs:
            assert "Traceback" not in err, err
        assert codes[0] == 0, outs
        if codes[1] == 1:  # the loser was refused, and said why
            assert any("another process" in err for _, err in outs), outs
        ids = srv.message_ids()
        assert sorted(ids) == people and all(len(v) == 1 for v in ids.values()), ids
