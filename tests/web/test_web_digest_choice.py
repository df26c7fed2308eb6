"""Choose your digests on the web (issue 15): with two [[digests]] the subscribe form and the
preferences page offer them as checkboxes, checked by the CLI's rule; with one, no choice."""

from __future__ import annotations

import re

import httpx

from digest import web
from digest.config import load_config
from digest.store import Store
from tests.support.web import free_port, running, set_secret, write_config

WEEKLY = ('\n[[digests]]\nname = "daily"\ncron = "0 7 * * *"\ndefault = true\n'
          '[[digests]]\nname = "weekly"\ncron = "0 7 * * 1"\n')


def test_subscribe_and_preferences_offer_the_digests(tmp_path, monkeypatch, sink) -> None:
    set_secret(monkeypatch)
    config = write_config(tmp_path, free_port(), smtp_port=sink.port)
    path = tmp_path / "config.toml"
    path.write_text(path.read_text(encoding="utf-8") + WEEKLY, encoding="utf-8")
    config = load_config(path)
    config.feeds.output.mkdir(parents=True)
    state = web.WebState(config)
    store = Store(config.store.path)
    with running(config, state) as server, httpx.Client(base_url=server.url, timeout=20) as c:
        page = c.get("/subscribe").text
        assert 'name="digests" value="daily" checked' in page  # the default
        assert re.search(r'name="digests" value="weekly"(?! checked)', page)

        def post(url: str, **data: object) -> httpx.Response:
            token = c.get("/csrf").json()["token"]
            return c.post(url, data={"languages": ["en"], "tags": "", "timezone": "UTC",
                                     "csrf": token, **data})

        r = post("/subscribe", email="w@example.com", digests=["weekly"])
        assert r.status_code == 200, r.text
        assert store.get_subscriber("w@example.com").digests == ("weekly",)
        r = post("/subscribe", email="n@example.com")  # none ticked: refused, re-shown
        assert r.status_code == 400 and "choose at least one digest" in r.text
        r = post("/subscribe", email="x@example.com", digests=["monthly"])
        assert r.status_code == 400 and "unknown digest" in r.text

        store.update_subscriber("w@example.com", status="active")
        url = "/preferences?t=" + state.subscriptions.link_tokens("w@example.com")["prefs_token"]
        page = c.get(url).text
        assert 'value="weekly" checked' in page and 'value="daily" checked' not in page
        r = post(url, digests=["daily", "weekly"])
        assert r.status_code == 200, r.text
        assert store.get_subscriber("w@example.com").digests == ("daily", "weekly")
