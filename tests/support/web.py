"""Helpers for the web tests: a config in a temp dir, a real uvicorn socket, a loopback SMTP sink."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from digest.config import Config, load_config
from digest.web import WebState, serve_async
from tests.support.smtp_server import free_port as free_port  # re-exported for the web tests

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SEEDS = Path(__file__).resolve().parents[2] / "seeds"


def write_config(tmp: Path, port: int, smtp_port: int | None = None, base_url: str | None = None) -> Config:
    """config.toml with only the contract keys, so the test reads what an operator writes."""
    smtp = (f'transport = "smtp"\nhost = "127.0.0.1"\nport = {smtp_port}\ntimeout = 10.0\nretries = 1\n'
            if smtp_port else 'transport = "maildir"\nmaildir = "maildir"\n')
    text = (
        f'[site]\nbase_url = "{base_url or f"http://127.0.0.1:{port}/"}"\n'
        '[store]\npath = "store"\n[ingest]\npaths = ["seeds"]\n[feeds]\noutput = "public"\n'
        f"[smtp]\n{smtp}"
        f'[web]\nhost = "127.0.0.1"\nport = {port}\n'
    )
    (tmp / "config.toml").write_text(text, encoding="utf-8")
    return load_config(tmp / "config.toml")


class Server:
    """`digest.web.serve_async` on a real loopback socket, in a thread with its own loop."""

    def __init__(self, config: Config, state: WebState | None = None) -> None:
        self.config, self.state = config, state
        self.url = f"http://{config.web.host}:{config.web.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve_async(self.config, self._stop, state=self.state)

        try:
            asyncio.run(main())
        except BaseException as e:  # surfaced by start()/stop()
            self._error = e

    def start(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._error:
                raise self._error
            try:
                with socket.create_connection((self.config.web.host, self.config.web.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("web server did not start")

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        if self._error:
            raise self._error


@contextmanager
def running(config: Config, state: WebState | None = None) -> Iterator[Server]:
    server = Server(config, state).start()
    try:
        yield server
    finally:
        server.stop()


class Sink:
    """The shared loopback SMTP server (tests/smtp_server.py, a real aiosmtpd) seen as a mailbox."""

    def __init__(self) -> None:
        from tests.support.smtp_server import SMTPServer

        self.server = SMTPServer()
        self.port = self.server.port

    def __enter__(self) -> Sink:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def wait(self, count: int, timeout: float = 20) -> list[EmailMessage]:
        """At least `count` messages (raises TimeoutError when fewer arrive)."""
        self.server.wait_for(count, timeout)
        return self.server.parsed()


def message_text(msg: EmailMessage) -> str:
    parts = [msg] if not msg.is_multipart() else [p for p in msg.walk() if not p.is_multipart()]
    return "\n".join(p.get_content() for p in parts if p.get_content_type().startswith("text/"))


def link_in(msg: EmailMessage, path: str) -> str:
    """The first absolute link to `path` (e.g. "confirm") in a message, HTML entities undone."""
    import html

    found = re.search(r"https?://[^\s\"'<>]+/" + path + r"\?t=[A-Za-z0-9_\-.=%]+", message_text(msg))
    assert found, f"no /{path} link in the message"
    return html.unescape(found.group(0))


def fixture_site(out: Path) -> dict[str, bytes]:
    """A small hand-made site (used where the real publish is not the point)."""
    files = {
        "index.html": b"<!doctype html><html><head><title>t</title></head><body><h1>index</h1></body></html>",
        "feeds/en.rss": b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>t</title>'
                        + b"<link>http://x/</link><description>d</description>" + b"<!-- pad -->" * 100
                        + b"</channel></rss>\n",
        "feeds/en.atom": b'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>\n',
        "feeds/en.json": b'{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": []}\n',
        "feeds/en.xml": b'<?xml version="1.0"?>\n<rss version="2.0"><channel></channel></rss>\n',
        "feeds.opml": b'<?xml version="1.0"?>\n<opml version="2.0"><head/><body/></opml>\n',
        "data.json": b'{"a": 1}\n',
        ".tmp/partial.rss": b"half",
    }
    for rel, data in files.items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def set_secret(monkeypatch, value: str = "test-secret-0123456789abcdef") -> bytes:
    monkeypatch.setenv("DIGEST_SECRET", value)
    return value.encode()


def env_without_secret() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DIGEST_SECRET"}


def publish_seeds(config: Config) -> None:
    """The real pipeline: ingest the seeds, publish into the config's output dir."""
    from digest.pipeline import ingest_paths, publish

    report = ingest_paths(config, [SEEDS], as_of=NOW, echo=lambda *a, **k: None)
    assert not report.rejected, report.rejected
    publish(config, now=NOW)


def feed_paths(config: Config) -> list[str]:
    """Every feed file (each format) that index.html autodiscovers, as a path below the
    output dir (feeds.opml lists each feed once, in one format: `opml_paths`)."""
    import re

    base = config.site.base_url.rstrip("/") + "/"
    html = (config.feeds.output / "index.html").read_text(encoding="utf-8")
    urls = list(dict.fromkeys(re.findall(r'<link rel="alternate" type="[^"]+" title="[^"]*" href="([^"]+)"', html)))
    assert urls and all(u.startswith(base) for u in urls)
    return [u.removeprefix(base) for u in urls]


def opml_paths(config: Config) -> list[str]:
    """Every feed listed in feeds.opml, as a path below the output dir."""
    import xml.etree.ElementTree as ET

    base = config.site.base_url.rstrip("/") + "/"
    root = ET.fromstring((config.feeds.output / "feeds.opml").read_bytes())
    urls = [o.get("xmlUrl") for o in root.iter("outline") if o.get("xmlUrl")]
    assert urls and all(u.startswith(base) for u in urls)
    return [u.removeprefix(base) for u in urls]
