"""Golden digests from the seeds at a fixed time: the text part for each kind of reader and
the bilingual HTML part, in tests/golden/email/ (refresh: `make golden`)."""

from __future__ import annotations

import os

import pytest

from digest.pipeline.sending import send_digest
from tests.support.send import (
    NOW,
    SECRET,
    add_subscribers,
    maildir_messages,
    make_project,
    parts,
    sub,
)

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


@pytest.mark.parametrize("reader", sorted(READERS))
def test_text_digest(messages: dict, reader: str, golden) -> None:
    msg = messages[reader]
    head = "".join(f"{k}: {msg[k]}\n" for k in ("Subject", "To", "Message-ID", "List-Id",
                                                "List-Unsubscribe"))
    golden.check(f"email/{reader}.txt", head + "\n" + parts(msg)[0])


def test_html_digest(messages: dict, golden) -> None:
    golden.check("email/both-policy.html", parts(messages["both-policy"])[1])
