"""Postfix's smtp-sink and smtp-source, unpacked from Debian's package: the machine's SMTP limit.

No daemon is installed or started: `apt-get download postfix && dpkg -x` into a cache dir, then
the two test programs run from there with the package's private libraries on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).parent / "out" / "postfix"


class PostfixUnavailable(RuntimeError):
    """smtp-sink/smtp-source could not be fetched or run; the message says why."""


@dataclass(frozen=True)
class Postfix:
    sink: Path
    source: Path
    libdir: Path

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(
            p for p in (str(self.libdir), env.get("LD_LIBRARY_PATH", "")) if p)
        return env


def ensure(cache: Path = CACHE) -> Postfix:
    """Unpack the postfix .deb into `cache` once; raise PostfixUnavailable with the reason."""
    root = cache / "root"
    tools = Postfix(root / "usr/sbin/smtp-sink", root / "usr/sbin/smtp-source",
                    root / "usr/lib/postfix")
    if tools.sink.exists() and tools.source.exists():
        return tools
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob("postfix_*.deb"))
    if not debs:
        try:
            r = subprocess.run(["apt-get", "download", "postfix"], cwd=cache,
                               capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PostfixUnavailable(f"apt-get download postfix failed: {e}") from e
        debs = sorted(cache.glob("postfix_*.deb"))
        if r.returncode != 0 or not debs:
            raise PostfixUnavailable(
                f"apt-get download postfix failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    r = subprocess.run(["dpkg", "-x", str(debs[-1]), str(root)], capture_output=True, text=True)
    if r.returncode != 0 or not tools.sink.exists():
        raise PostfixUnavailable(f"dpkg -x {debs[-1].name} failed: {r.stderr.strip()[-300:]}")
    return tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PostfixUnavailable(f"smtp-sink exited with {proc.returncode}: "
                                     f"{proc.stderr.read().decode(errors='replace')[-300:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise PostfixUnavailable(f"smtp-sink did not listen on 127.0.0.1:{port} within {timeout}s")


def start_sink(tools: Postfix, port: int, backlog: int = 1024) -> subprocess.Popen:
    """smtp-sink on 127.0.0.1:port; it accepts and discards every message. Caller stops it."""
    cmd = [str(tools.sink)]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # it refuses to run as root without dropping privileges
    # -m: allow far more sessions than any sender here opens, so the sink never throttles.
    cmd += ["-m", "1000", f"127.0.0.1:{port}", str(backlog)]
    proc = subprocess.Popen(cmd, env=tools.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _wait_listening(port, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def source_command(tools: Postfix, port: int, messages: int, size: int, sessions: int,
                   reuse: bool = True) -> list[str]:
    """smtp-source sending `messages` of `size` payload bytes over `sessions` parallel
    sessions; `reuse` keeps each connection for many messages (-d), like our SMTP pool."""
    cmd = [str(tools.source), "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-f", "bench@localhost", "-t", "reader@example.com", "-M", "localhost"]
    if reuse:
        cmd.append("-d")
    return cmd + [f"127.0.0.1:{port}"]
