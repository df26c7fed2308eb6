"""`digest serve` as an operator runs it: a subprocess that serves, stops cleanly, and says why it can't."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from digest.store import Store
from tests.support.web import free_port, publish_seeds, write_config

pytestmark = pytest.mark.daemon


REPO = Path(__file__).resolve().parents[2]


def _wait_for_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("digest serve did not start listening")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_digest_serve_serves_and_stops_cleanly(tmp_path, sig):
    port = free_port()
    config = write_config(tmp_path, port)
    publish_seeds(config)
    env = {"PATH": "/usr/bin:/bin", "DIGEST_SECRET": "cli-secret-value-123", "HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "digest", "--config", str(tmp_path / "config.toml"), "serve"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(port, proc)
        r = httpx.get(f"http://127.0.0.1:{port}/feeds.opml")
        assert r.status_code == 200 and r.headers["content-type"] == "text/x-opml; charset=utf-8"
        assert httpx.get(f"http://127.0.0.1:{port}/csrf").status_code == 200
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "cli-secret-value-123" not in out + err
    assert "Traceback" not in err


def test_port_in_use_is_a_user_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        write_config(tmp_path, port)
        Store(tmp_path / "store")  # serve needs a store (a missing one is its own error)
        run = subprocess.run([sys.executable, "-m", "digest", "--config", str(tmp_path / "config.toml"), "serve"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr
    assert "hint:" in run.stderr and "[web]" in run.stderr
    assert "Traceback" not in run.stderr


def test_serve_logs_its_address(empty_config, tmp_path: Path) -> None:
    port = free_port()
    text = (tmp_path / "config.toml").read_text(encoding="utf-8").replace(
        "port = 8000", f"port = {port}")
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    Store(empty_config.store.path)
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_LOG_LEVEL"}
    proc = subprocess.Popen([sys.executable, "-m", "digest", "--config", str(empty_config.path),
                             "serve"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until it accepts connections (a liveness bound, not a speed check), stop it,
        # then read everything it logged.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    lines = err.splitlines()
    assert any(f"http://127.0.0.1:{port}/" in line and " INFO digest.web: " in line
               for line in lines), lines
    assert proc.returncode == 0
