"""Helpers for daemon tests: a `digest run` subprocess with a log reader, an SMTP sink, a project dir."""

from __future__ import annotations

import email
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from aiosmtpd.controller import Controller

from tests.support.smtp_server import free_port as free_port  # re-exported for the daemon tests

REPO = Path(__file__).resolve().parents[2]
WAIT = 60.0  # generous bound for an event to show up in the log (not a speed assertion)


def make_project(tmp: Path, *, web_port: int, replace: dict[str, str] | None = None,
                 extra: str = "") -> Path:
    """A project dir: shipped config.toml with line replacements, plus the seeds."""
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    for old, new in {"port = 8000": f"port = {web_port}", **(replace or {})}.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    (tmp / "config.toml").write_text(text + extra, encoding="utf-8")
    shutil.copytree(REPO / "seeds", tmp / "seeds")
    return tmp / "config.toml"


def editor_save(path: Path, text: str) -> None:
    """Save like an editor: write a temp file beside it, then rename over the original."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def line_of(path: Path, exact: str) -> int:
    return path.read_text(encoding="utf-8").splitlines().index(exact) + 1


def add_subscribers(config_path: Path, people: list[tuple[str, str]]) -> None:
    from digest.config import load_config
    from digest.models import Subscriber
    from digest.store import Store

    store = Store(load_config(config_path).store.path)
    store.upsert_subscribers([Subscriber(email=e, timezone=tz, status="active")
                              for e, tz in people])


class DaemonProc:
    """`digest run` in a subprocess; its stderr is collected line by line in a thread."""

    def __init__(self, config_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config_path), "run", *args],
            cwd=config_path.parent, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match:
        """Block until a log line matches `pattern`; fail with the log so far if it never does."""
        rx = re.compile(pattern)
        for line in self.lines:
            m = rx.search(line)
            if m:
                return m
        while True:
            try:
                line = self._q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no log line matching {pattern!r}:\n" + self.log()) from None
            if line is None:
                raise AssertionError(f"daemon exited before {pattern!r}:\n" + self.log())
            self.lines.append(line)
            m = rx.search(line)
            if m:
                return m

    def drain(self) -> None:
        while True:
            try:
                line = self._q.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.lines.append(line)

    def log(self) -> str:
        self.drain()
        return "\n".join(self.lines)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = WAIT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        self.wait_eof()
        return rc

    def wait_eof(self) -> None:
        try:
            while True:
                line = self._q.get(timeout=5)
                if line is None:
                    return
                self.lines.append(line)
        except queue.Empty:
            return

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)


class Sink:
    """aiosmtpd handler collecting messages; optional per-message delay and a hook."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.messages: list[tuple[list[str], email.message.Message]] = []
        self.lock = threading.Lock()
        self.on_message = None  # called with the count after each message

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        import asyncio

        if self.delay:
            await asyncio.sleep(self.delay)
        msg = email.message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
            n = len(self.messages)
        if self.on_message:
            self.on_message(n)
        return "250 OK"

    def per_recipient(self) -> Counter:
        with self.lock:
            return Counter(r for rcpts, _ in self.messages for r in rcpts)

    def message_ids(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        with self.lock:
            for rcpts, msg in self.messages:
                for r in rcpts:
                    out.setdefault(r, set()).add(msg["Message-ID"])
        return out


def smtp_sink(delay: float = 0.0) -> tuple[Controller, Sink]:
    sink = Sink(delay)
    ctl = Controller(sink, hostname="127.0.0.1", port=free_port())
    ctl.start()
    return ctl, sink
