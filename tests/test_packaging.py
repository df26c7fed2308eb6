"""`pip install .` (not only -e) ships what digest reads at run time: templates, default config."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# `pip wheel` builds in an isolated env, fetching setuptools from the package index
pytestmark = pytest.mark.external

REPO = Path(__file__).resolve().parent.parent


def test_wheel_holds_templates_default_config_and_console_script(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path),
                        str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("digest-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "templates").rglob("*") if p.is_file())
    assert templates, "no templates found in the checkout"
    missing = [t for t in templates if f"digest/{t}" not in names]
    assert not missing, f"templates not packaged: {missing}"
    assert "digest/default_config.toml" in names
    seeds = sorted(p.name for p in (REPO / "seeds").iterdir() if p.is_file())
    assert seeds and all(f"digest/seeds/{s}" in names for s in seeds), "seeds not packaged"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "digest = digest.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
