"""Golden digests from the seeds at a fixed time: the text part for each kind of reader and
the bilingual HTML part (refresh: DIGEST_UPDATE_GOLDEN=1 pytest tests/test_render_golden.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.send import NOW, SECRET, add_subscribers, maildir_messages, make_project, parts, sub

from digest.pipeline.sending import send_digest

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "email"
READERS = {"en": (["en"], []), "zh": (["zh"], []), "both-policy": (["en", "zh"], ["政策"])}


@pytest.fixture(scope="module")
def messages(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("golden")
    old = os.environ.get("DIGEST_SECRET")
    os.environ["DIGEST_SECRET"] = SECRET
    try:
        config = make_project(tmp)
        add_subscribers(config, *[sub(f"{k}@example.com", langs, tags)
                                  for k, (langs, tags) in READERS.items()])
        send_digest(config, now=NOW)
    finally:
        if old is None:
            os.environ.pop("DIGEST_SECRET", None)
        else:
            os.environ["DIGEST_SECRET"] = old
    return {m["To"].split("@")[0]: m for m in maildir_messages(config)}


def _check(name: str, actual: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("DIGEST_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert golden.exists(), f"{golden} missing: run DIGEST_UPDATE_GOLDEN=1 pytest {__file__}"
    assert actual == golden.read_text(encoding="utf-8"), (
        f"{name} changed; if intended: DIGEST_UPDATE_GOLDEN=1 pytest {Path(__file__).name}")


@pytest.mark.parametrize("reader", sorted(READERS))
def test_text_digest(messages: dict, reader: str) -> None:
    msg = messages[reader]
    head = "".join(f"{k}: {msg[k]}\n" for k in ("Subject", "To", "Message-ID", "List-Id",
                                                "List-Unsubscribe"))
    _check(f"{reader}.txt", head + "\n" + parts(msg)[0])


def test_html_digest(messages: dict) -> None:
    _check("both-policy.html", parts(messages["both-policy"])[1])
