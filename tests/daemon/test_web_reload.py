"""Issue 17.2: a reload whose web settings cannot be applied (the new port is in use) keeps
the old server running; editing the port back, or to a free one, then just works."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.support.daemon import DaemonProc, editor_save, free_port, make_project

ENV = {"DIGEST_LOG_LEVEL": "DEBUG"}


def _get(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=10).status_code


def test_a_reload_to_a_port_in_use_keeps_the_old_server(tmp_path: Path) -> None:
    port = free_port()
    cfg = make_project(tmp_path, web_port=port)
    text = cfg.read_text(encoding="utf-8")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    busy = taken.getsockname()[1]
    d = DaemonProc(cfg, env=ENV)
    try:
        d.wait_for(r"daemon: running")
        d.wait_for(r"publish: \d+ written")
        assert _get(port) == 200
        editor_save(cfg, text.replace(f"port = {port}", f"port = {busy}"))
        d.wait_for(rf"web: cannot apply the new settings, still serving the old ones: "
                   rf"cannot listen on 127\.0\.0\.1:{busy}")
        d.wait_for(r"config: reloaded \(file changed\); changed: web")
        assert _get(port) == 200  # the old server still answers
        editor_save(cfg, text)  # the port back: nothing to restart, still served
        d.wait_for(r"config: reloaded \(file changed\); changed: web")
        assert _get(port) == 200
        new_port = free_port()
        editor_save(cfg, text.replace(f"port = {port}", f"port = {new_port}"))
        d.wait_for(r"web: serving http://127\.0\.0\.1:" + str(new_port))
        assert _get(new_port) == 200
        assert d.stop() == 0
    finally:
        d.kill()
        taken.close()
