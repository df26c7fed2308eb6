"""Issue 16, deployment: one daemon per embedded store, the systemd unit passes
`systemd-analyze verify`, the Dockerfile has what the docs promise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.pipeline import daemon_lock
from tests.support.tools import REQUIRE_TOOLS

REPO = Path(__file__).resolve().parents[2]


def test_a_second_daemon_on_one_embedded_store_is_refused_naming_the_first(config) -> None:
    with daemon_lock(config):
        with pytest.raises(StoreError) as e:
            with daemon_lock(config):
                pass
        assert f"process {os.getpid()}" in e.value.message
        r = subprocess.run([sys.executable, "-m", "digest", "--config", str(config.path), "run",
                            "--once"], capture_output=True, text=True, timeout=120,
                           env=os.environ | {"PYTHONPATH": str(REPO)})
        assert r.returncode == 1
        assert f"another digest daemon (process {os.getpid()})" in r.stderr, r.stderr
    with daemon_lock(config):  # released with the first
        pass


def test_several_daemons_are_fine_on_postgresql(config) -> None:
    import dataclasses

    pg = dataclasses.replace(config, store=dataclasses.replace(
        config.store, url="postgresql://digest@127.0.0.1:1/none"))
    with daemon_lock(pg), daemon_lock(pg):  # no lock file: leader election shares the work
        pass


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if REQUIRE_TOOLS:
            pytest.fail("systemd-analyze is missing (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed")
    unit = (REPO / "deploy" / "digest.service").read_text(encoding="utf-8")
    for key in ("User=digest", "ProtectSystem=strict", "Restart=on-failure",
                "ReadWritePaths=/srv/digest/store /srv/digest/public"):
        assert key in unit, key
    # verify checks that ExecStart exists: point it at this installation's console script
    digest = shutil.which("digest") or sys.executable
    local = tmp_path / "digest.service"
    local.write_text(unit.replace("/usr/local/bin/digest", digest), encoding="utf-8")
    r = subprocess.run([tool, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_runs_as_non_root_with_volumes_and_a_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^USER digest$", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    for vol in ("/data/store", "/data/public", "/data/maildir"):
        assert vol in text.split("VOLUME", 1)[1].splitlines()[0]
    ops = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    assert "docker build" in ops and "docker run" in ops


def test_dockerfile_sed_sets_only_the_web_host(tmp_path: Path) -> None:
    """The image's config listens on 0.0.0.0 for the web server; [smtp] host (also
    "127.0.0.1" in the default config) must keep its value."""
    from digest.config import default_config_text, load_config

    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    seds = re.findall(r"sed -i ('[^']*') config\.toml", text)
    assert len(seds) == 1, seds
    config = tmp_path / "config.toml"
    config.write_text(default_config_text(), encoding="utf-8")
    subprocess.run(["sh", "-c", f"sed -i {seds[0]} config.toml"], cwd=tmp_path, check=True)
    before = default_config_text().splitlines()
    after = config.read_text(encoding="utf-8").splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [('host = "127.0.0.1"', 'host = "0.0.0.0"')], changed
    loaded = load_config(config)
    assert loaded.web.host == "0.0.0.0" and loaded.smtp.host == "127.0.0.1"
