"""Helpers for the email digest tests: a temp project with seeds ingested, config overrides,
parsed Maildir / SMTP messages. Imported as `from tests.support.send import ...`."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import shutil
from datetime import UTC, datetime
from pathlib import Path

from digest.config import Config, load_config
from digest.models import Story, Subscriber

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "seeds"
AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # 16:00 in Shanghai, same local date
SECRET = "test-site-secret-not-for-production"


def make_project(tmp: Path, ingest: bool = True, **smtp: object) -> Config:
    """A config.toml in `tmp` (store, maildir, seeds inside it) with [smtp] overrides."""
    shutil.copy(REPO / "config.toml", tmp / "config.toml")
    shutil.copytree(SEEDS, tmp / "seeds")
    config = load_config(tmp / "config.toml")
    if smtp:
        config = dataclasses.replace(config, smtp=dataclasses.replace(config.smtp, **smtp))
    if ingest:
        from digest.pipeline import ingest_paths

        report = ingest_paths(config, as_of=AS_OF, echo=lambda _line: None)
        assert not report.rejected, report.rejected
    return config


def with_digest(config: Config, **changes: object) -> Config:
    return dataclasses.replace(config, digests=(dataclasses.replace(config.digests[0], **changes),))


def add_subscribers(config: Config, *subs: Subscriber) -> None:
    from digest.store import Store

    store = Store(config.store.path)
    for s in subs:
        store.add_subscriber(s)


def sub(email_: str, langs: list[str] | None = None, tags: list[str] | None = None,
        tz: str = "UTC") -> Subscriber:
    return Subscriber(email=email_, languages=langs or ["en", "zh"], tags=tags or [],
                      timezone=tz, status="active")


def three_subscribers() -> list[Subscriber]:
    """The must-show trio: English only; Chinese only; both languages with a tag filter."""
    return [sub("en@example.com", ["en"]), sub("zh@example.com", ["zh"], tz="Asia/Shanghai"),
            sub("both@example.com", ["en", "zh"], ["政策"], tz="Europe/Berlin")]


def maildir_messages(config: Config) -> list[email.message.EmailMessage]:
    new = Path(config.smtp.maildir) / "new"
    if not new.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(new.iterdir())]


def parts(msg: email.message.EmailMessage) -> tuple[str, str]:
    """(text, html) of a multipart/alternative digest."""
    return (msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content())


def story(id_: str, langs: list[str], title: dict[str, str], tldr: dict[str, list[str]],
          tags: list[str] | None = None, scores: dict[str, int] | None = None,
          excerpt: list[str] | None = None) -> Story:
    return Story(id=id_, languages=langs, title=title, published=AS_OF, updated=AS_OF,
                 tldr=tldr, tags=tags or [], scores=scores, tldr_excerpt=excerpt or [])
