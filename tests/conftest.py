"""The suite's shared fixtures and rules.

Fixtures: `project` (a temp dir with the shipped config.toml and the seeds), `config` (that
project loaded, seeds ingested), `empty_config` (the same, nothing ingested), `secret`
(DIGEST_SECRET set), `smtp_server` (a real loopback SMTP server) and `golden` (the one
golden-file check; `make golden` refreshes). Stage folders add their own in
tests/<stage>/conftest.py; classes and harnesses live in tests/support/.

Markers (declared in pyproject.toml): `browser`, `newsboat`, `daemon` and `bench` tests get
`external` here, and whole files that need more than Python say `pytestmark =
pytest.mark.external`; so `pytest -m "not external and not slow"` (`make test-fast`) is
hermetic. A browser/newsboat test whose tool is missing fails under `make test` and CI
(DIGEST_REQUIRE_TOOLS=1 / CI) and is skipped elsewhere. Every test using `golden` gets `golden`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from tests.support.golden import Golden
from tests.support.smtp_server import SMTPServer
from tests.support.tools import REQUIRE_TOOLS, chromium_missing, missing_tool, newsboat_missing

if TYPE_CHECKING:
    from digest.config import Config

# The default run (CI, `make test`) replays the same hypothesis examples every time, so a
# red run is reproducible and never a coin toss, and keeps no example database (nothing
# written under .hypothesis/examples); `HYPOTHESIS_PROFILE=fuzz` (used by `make test-all`)
# explores fresh random examples and keeps failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("fuzz", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
AS_OF = "2026-11-22T12:00:00Z"

# Markers that mean "needs more than Python": each implies `external`.
EXTERNAL_KINDS = ("browser", "newsboat", "daemon", "bench")
# The tools those markers drive, and why each is missing (None when present).
TOOL_CHECKS = {"browser": chromium_missing, "newsboat": newsboat_missing}


# --- markers --------------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, so `-m "not external"` sees these
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(kind) for kind in EXTERNAL_KINDS):
            item.add_marker(pytest.mark.external)
        if "golden" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.golden)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for kind, why_missing in TOOL_CHECKS.items():
        if item.get_closest_marker(kind) and (reason := why_missing()):
            missing_tool(reason)


def pytest_report_header() -> str:
    return ("digest: missing external tools are errors (DIGEST_REQUIRE_TOOLS=1 or CI)"
            if REQUIRE_TOOLS else "digest: missing external tools skip their tests")


# --- projects and configs -------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A temp project dir holding a copy of the shipped config.toml and the seeds."""
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    shutil.copytree(SEEDS, tmp_path / "seeds")
    return tmp_path


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The shipped config.toml in tmp_path (store, maildir, seeds inside it), seeds ingested
    at tests.support.send.AS_OF."""
    from tests.support.send import make_project

    return make_project(tmp_path)


@pytest.fixture
def empty_config(tmp_path: Path) -> Config:
    """Like `config`, with nothing ingested: an empty store."""
    from tests.support.send import make_project

    return make_project(tmp_path, ingest=False)


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """DIGEST_SECRET set to the tests' site secret (tests.support.send.SECRET)."""
    from tests.support.send import SECRET

    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return SECRET


# --- the loopback SMTP server ---------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """A real aiosmtpd on 127.0.0.1 without faults (tests.support.smtp_server.SMTPServer);
    tests that script faults, TLS or AUTH start their own."""
    with SMTPServer() as srv:
        yield srv


# --- golden files ---------------------------------------------------------------------------


@pytest.fixture
def golden() -> Golden:
    """The golden-file check against tests/golden/ (tests.support.golden.Golden):
    `golden.check(name, got)`; DIGEST_UPDATE_GOLDEN=1 (`make golden`) rewrites what differs.
    Tests using it are marked `golden`."""
    return Golden()
