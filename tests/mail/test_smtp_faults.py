"""`send_digest` against a fault-injecting aiosmtpd on loopback: every fault at every stage
ends with each deliverable digest delivered once (the ambiguous reply-lost cases reuse their
Message-ID) and everything else reported in the SendReport; a rerun completes the edition."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digest.mail.transports import SmtpTransport
from digest.pipeline.sending import send_digest
from digest.store import Store
from tests.support.faults import FaultServer, More
from tests.support.send import NOW, SECRET, add_subscribers, make_project, sub
from tests.support.smtp_server import Faults

PEOPLE = [sub(f"r{i}@example.com", ["en"] if i % 2 else ["zh"]) for i in range(4)]
EMAILS = sorted(p.email for p in PEOPLE)


pytestmark = pytest.mark.usefixtures("secret", "pipelining")  # DIGEST_SECRET = SECRET everywhere


def _project(tmp_path: Path, srv: FaultServer, **smtp: object):
    kw = {"transport": "smtp", "host": srv.host, "port": srv.port, "timeout": 5.0,
          "sender": "AI News <digest@news.example.org>", "pool_size": 1, "retries": 3, **smtp}
    config = make_project(tmp_path, **kw)
    add_subscribers(config, *PEOPLE)
    return config


def _send(config, **transport_kw):
    with SmtpTransport(config.smtp, backoff=0.01, **transport_kw) as t:
        return send_digest(config, now=NOW, transport=t)


def _assert_once_each(srv: FaultServer, ambiguous_ok: int = 0) -> None:
    """Every subscriber holds exactly one edition; copies beyond one only for the ambiguous
    cases, and then with the same Message-ID (a duplicate a mail client folds away)."""
    ids = srv.message_ids()
    assert sorted(ids) == EMAILS, ids
    for email, mids in ids.items():
        assert len(set(mids)) == 1, (email, mids)
    extra = sum(len(m) - 1 for m in ids.values())
    assert extra <= ambiguous_ok, ids


# Faults a retry overcomes within one run: (id, Faults, More, copies allowed beyond one).
RECOVERABLE = [
    ("421-at-greeting", None, More(greet_421=2), 0),
    ("drop-after-greeting", None, More(drop_at="ehlo", drops=2), 0),
    ("drop-after-mail", None, More(drop_at="mail", drops=1), 0),
    ("drop-after-rcpt", None, More(drop_at="rcpt", drops=1), 0),
    ("drop-at-data-command", None, More(drop_at="data", drops=1), 0),
    ("drop-during-data", Faults(drop_data=1), None, 0),
    ("reply-lost-after-data", Faults(drop_after_data=1), None, 1),
    ("451-at-rcpt", Faults(rcpt_4xx=2), None, 0),
    ("451-at-data", Faults(data_4xx=2), None, 0),
    ("stall-at-greeting", None, More(stall_at="greeting", stalls=1, stall_seconds=2.0), 0),
    ("stall-at-rcpt", None, More(stall_at="rcpt", stalls=1, stall_seconds=2.0), 0),
    ("stall-after-data", None, More(stall_at="data", stalls=1, stall_seconds=2.0), 1),
]


@pytest.mark.parametrize("case,faults,more,dupes", RECOVERABLE, ids=[c[0] for c in RECOVERABLE])
def test_fault_is_retried_and_every_digest_arrives_once(tmp_path, case, faults, more, dupes):
    # copies: the server counts them down, and each parameter serves both pipelining runs
    faults, more = copy.deepcopy(faults), copy.deepcopy(more)
    with FaultServer(faults=faults, more=more) as srv:
        # the stall cases need a timeout shorter than the stall
        config = _project(tmp_path, srv, timeout=0.8 if "stall" in case else 5.0)
        report = _send(config)
        assert sorted(report.sent) == EMAILS, report.lines()
        assert not report.failed and not report.bounced
        left = faults and (faults.drop_data + faults.drop_after_data + faults.rcpt_4xx
                           + faults.data_4xx)
        assert srv.events or left == 0, "the fault never fired: the test would prove nothing"
        _assert_once_each(srv, dupes)
        assert sum(len(m) - 1 for m in srv.message_ids().values()) == dupes
        if dupes:
            # The one copy that may be doubled was seen by the client as unconfirmed.
            doubled = [e for e, m in srv.message_ids().items() if len(m) > 1]
            assert set(doubled) <= {e for e, _ in report.ambiguous}, report.lines()
        again = _send(config)
        assert again.sent == [] and again.already_sent == len(EMAILS)


PERSISTENT = [
    ("421-at-every-greeting", More(greet_421=10_000)),
    ("drop-at-every-mail", More(drop_at="mail", drops=10_000)),
    ("stall-at-every-rcpt", More(stall_at="rcpt", stalls=10_000, stall_seconds=1.5)),
]


@pytest.mark.parametrize("case,more", PERSISTENT, ids=[c[0] for c in PERSISTENT])
def test_a_fault_that_persists_is_reported_then_a_rerun_completes(tmp_path, case, more):
    with FaultServer(more=copy.deepcopy(more)) as srv:
        config = _project(tmp_path, srv, retries=1, timeout=0.5)
        report = _send(config)
        assert report.sent == [] and sorted(e for e, _ in report.failed) == EMAILS
        assert all(reason for _, reason in report.failed)
        assert any("not delivered to" in line for line in report.lines())
        assert srv.messages == []
        journal = Store(config.store.path).journal
        assert {journal.state("daily", "2026-11-22", e)["state"] for e in EMAILS} == {"failed"}
        # the server recovers: the rerun sends each digest once, with the planned Message-ID
        srv.more.greet_421 = srv.more.drops = srv.more.stalls = 0
        rerun = _send(config)
        assert sorted(rerun.sent) == EMAILS, rerun.lines()
        _assert_once_each(srv)


def test_starttls_that_fails_is_retried_then_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "pw")
    with FaultServer(tls=True, auth={"digest": "pw"}, more=More(starttls_454=1)) as srv:
        config = _project(tmp_path, srv, security="starttls", username="digest")
        report = _send(config, password="pw", tls_context=srv.tls_client_context())
        assert sorted(report.sent) == EMAILS and ("starttls", "454") in srv.events
        _assert_once_each(srv)
        assert all(m.tls for m in srv.messages)
    with FaultServer(tls=True, auth={"digest": "pw"}, more=More(starttls_454=10_000)) as srv:
        (tmp_path / "b").mkdir()
        config = _project(tmp_path / "b", srv, security="starttls", username="digest",
                          retries=1)
        report = _send(config, password="pw", tls_context=srv.tls_client_context())
        assert report.sent == [] and sorted(e for e, _ in report.failed) == EMAILS
        assert any("454" in reason for _, reason in report.failed), report.failed
        assert srv.messages == []  # never in clear text


def test_starttls_with_an_untrusted_certificate_sends_nothing_in_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "pw")
    with FaultServer(tls=True, auth={"digest": "pw"}) as srv:
        config = _project(tmp_path, srv, security="starttls", username="digest", retries=1)
        report = _send(config, password="pw")  # default trust store: the cert is self-signed
        assert report.sent == [] and sorted(e for e, _ in report.failed) == EMAILS
        assert srv.messages == []


def test_cli_send_against_a_dead_server_exits_1_without_a_traceback(tmp_path):
    with FaultServer(more=More(greet_421=10_000)) as srv:
        config = _project(tmp_path, srv, retries=0, timeout=0.5)
        env = {**os.environ, "DIGEST_SECRET": SECRET}
        text = config.path.read_text(encoding="utf-8")
        text = (text.replace('transport = "maildir"', 'transport = "smtp"')
                .replace("port = 25", f"port = {srv.port}").replace("retries = 4", "retries = 0")
                .replace("timeout = 30.0", "timeout = 0.5"))
        config.path.write_text(text, encoding="utf-8")
        r = subprocess.run([sys.executable, "-m", "digest", "--config", str(config.path), "send",
                            "--now", "2026-11-22T08:00:00Z"], capture_output=True, text=True,
                           timeout=120, env=env)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
        assert "failed 4" in r.stdout and "not delivered to" in r.stdout, r.stdout
        assert "421" in r.stdout


def _random_mix(tmp_path: Path, seed: int) -> tuple[int, int]:
    """Several faults at once, drawn at random; returns (copies beyond one, reruns needed)."""
    import random

    rng = random.Random(seed)
    faults = Faults(rcpt_4xx=rng.randint(0, 2), data_4xx=rng.randint(0, 2),
                    drop_data=rng.randint(0, 1), drop_after_data=rng.randint(0, 1))
    more = More(greet_421=rng.randint(0, 2),
                drop_at=rng.choice(["", "ehlo", "mail", "rcpt", "data"]), drops=rng.randint(0, 2),
                stall_at=rng.choice(["", "greeting", "rcpt", "data"]), stalls=rng.randint(0, 1),
                stall_seconds=1.0)
    # only the ambiguous faults (kept, then the reply lost or late) may double a message
    ambiguous = faults.drop_after_data + (more.stalls if more.stall_at == "data" else 0)
    with FaultServer(faults=faults, more=more) as srv:
        config = _project(tmp_path, srv, timeout=0.5, retries=2, pool_size=rng.randint(1, 3))
        reruns = 0
        report = _send(config)
        while report.failed and reruns < 10:  # the operator's rerun, until the faults run out
            reruns += 1
            report = _send(config)
        assert not report.failed, report.lines()
        ids = srv.message_ids()
        assert sorted(ids) == EMAILS, ids
        assert all(len(set(v)) == 1 for v in ids.values()), ids  # duplicates share an id
        doubled = sum(len(v) - 1 for v in ids.values())
        assert doubled <= ambiguous, (doubled, ambiguous, srv.events)
        return doubled, reruns


@pytest.mark.parametrize("seed", range(3))
def test_random_fault_mixes(tmp_path, seed) -> None:
    _random_mix(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 160))
def test_random_fault_mixes_many(tmp_path, seed) -> None:
    doubled, reruns = _random_mix(tmp_path, seed)
    print(f"\nfault mix {seed}: doubled={doubled} reruns={reruns}")


def test_server_not_offering_starttls_gets_nothing_in_clear(tmp_path) -> None:
    # a downgrade (or a misconfigured relay): security = "starttls" must not fall back
    with FaultServer() as srv:
        config = _project(tmp_path, srv, security="starttls", retries=1)
        report = _send(config)
        assert report.sent == [] and sorted(e for e, _ in report.failed) == EMAILS
        assert all("STARTTLS" in reason or "TLS" in reason for _, reason in report.failed), \
            report.failed
        assert srv.messages == []
