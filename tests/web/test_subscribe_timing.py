"""Issue 17, item 6: subscriber enumeration by timing. An unknown address used to be answered
measurably slower than an active one. Every address gets the same work, the same answer and
the same time: the page is answered at once and the confirmation mail (a confirm link; for an
active subscriber it opens the "already subscribed" page with the preferences links) goes in
a background task, for every state. Behavioural, not a speed threshold: against an SMTP server
that takes DELAY seconds per message, neither kind of address waits for it."""

from __future__ import annotations

import re
import statistics
import time

import httpx
import pytest

from digest import web
from digest.models import Subscriber
from digest.store import Store
from tests.support.smtp_server import Faults, SMTPServer
from tests.support.web import free_port, running, set_secret, write_config

DELAY = 1.0  # seconds the SMTP server takes to answer each DATA
N = 30  # requests per kind of address
STATES = ("active", "pending", "unsubscribed", "bounced")


@pytest.fixture
def slow(tmp_path, monkeypatch):
    set_secret(monkeypatch)
    with SMTPServer(faults=Faults(data_delay=DELAY)) as smtp:
        config = write_config(tmp_path, free_port(), smtp_port=smtp.port)
        config.feeds.output.mkdir(parents=True)
        (config.feeds.output / "index.html").write_text("<h1>index</h1>")
        state = web.WebState(config, per_ip=web.RateLimiter(burst=10_000, refill=1))
        store = Store(config.store.path)
        with running(config, state) as server, \
                httpx.Client(base_url=server.url, timeout=30) as client:
            yield client, smtp, store


def _post(client: httpx.Client, email: str) -> tuple[float, httpx.Response]:
    token = client.get("/csrf").json()["token"]  # not timed
    data = {"email": email, "languages": ["en"], "tags": "", "timezone": "UTC", "csrf": token}
    start = time.perf_counter()
    r = client.post("/subscribe", data=data)
    return time.perf_counter() - start, r


def _shape(r: httpx.Response, email: str) -> tuple[int, dict, bytes]:
    """Status, headers and body with the address itself and the per-response nonce out."""
    body = r.content.replace(email.encode(), b"ADDRESS")
    headers = {k: re.sub(r"nonce-[\w-]+", "nonce-N", v) for k, v in r.headers.items()
               if k != "date"}
    return r.status_code, headers, body


def test_every_address_gets_the_same_page_at_once(slow):
    client, smtp, store = slow
    # Same-length addresses, so even Content-Length cannot differ by the address.
    for i in range(N):
        store.add_subscriber(Subscriber(email=f"a{i:02d}@example.com", status="active"))
    times: dict[str, list[float]] = {"active": [], "unknown": []}
    shapes = set()
    for i in range(N):
        pair = [("active", f"a{i:02d}@example.com"), ("unknown", f"u{i:02d}@example.com")]
        for kind, email in pair if i % 2 else pair[::-1]:
            took, r = _post(client, email)
            assert r.status_code == 200, r.text
            times[kind].append(took)
            shapes.add(repr(_shape(r, email)))
    assert len(shapes) == 1  # byte-equal answers (but for the address and the CSP nonce)
    medians = {k: statistics.median(v) for k, v in times.items()}
    # Neither waits for the SMTP conversation (figures: ~0.02 s each against DELAY = 1 s).
    assert medians["active"] < DELAY and medians["unknown"] < DELAY, medians
    # ... which still happens, for both: the same mail work for every address.
    got = smtp.wait_for(2 * N, timeout=120)
    assert sorted(m.rcpt_tos[0] for m in got) == sorted(
        [f"a{i:02d}@example.com" for i in range(N)] + [f"u{i:02d}@example.com" for i in range(N)])


def test_every_stored_state_is_answered_like_an_unknown_address(slow):
    client, smtp, store = slow
    for st in STATES:
        store.add_subscriber(Subscriber(email=f"{st[:4]}@example.com", status=st))
    took, first = _post(client, "none@example.com")
    answers = {"unknown": (took, _shape(first, "none@example.com"))}
    for st in STATES:
        took, r = _post(client, f"{st[:4]}@example.com")
        answers[st] = (took, _shape(r, f"{st[:4]}@example.com"))
    assert {repr(shape) for _, shape in answers.values()} == {repr(answers["unknown"][1])}
    assert all(took < DELAY for took, _ in answers.values()), answers
    assert len(smtp.wait_for(len(answers), timeout=60)) == len(answers)
