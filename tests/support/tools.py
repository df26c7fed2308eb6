"""The programs some tests drive beyond Python (Chromium, newsboat, Postfix's smtp-sink), and
what a missing one means: under `make test` and CI (`DIGEST_REQUIRE_TOOLS=1`, or `CI` set) it
is an error, because those runs promise to exercise it; anywhere else the test is skipped with
the reason, so `pytest` on a bare checkout still runs everything it can."""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import NoReturn

import pytest

CHROMIUM = "/usr/bin/chromium"
REQUIRE_TOOLS = os.environ.get("DIGEST_REQUIRE_TOOLS") == "1" or bool(os.environ.get("CI"))


def missing_tool(reason: str) -> NoReturn:
    """Fail (under DIGEST_REQUIRE_TOOLS=1 / CI) or skip the running test because of `reason`."""
    if REQUIRE_TOOLS:
        pytest.fail(f"{reason} (required: DIGEST_REQUIRE_TOOLS=1 or CI is set; `make system-deps` "
                    "installs it)", pytrace=False)
    pytest.skip(reason)


def chromium_missing() -> str | None:
    """Why headless Chromium cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "needs the playwright package (pip install -e '.[test]')"
    if not os.path.exists(CHROMIUM):
        return f"needs Debian chromium at {CHROMIUM}"
    return None


def newsboat_missing() -> str | None:
    """Why newsboat cannot run here, or None."""
    return None if shutil.which("newsboat") else "needs Debian newsboat"
