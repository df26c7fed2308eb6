"""Imports point downward, and each third-party library is owned by one module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "digest"

# Lower number = lower layer. A module may import digest modules of its own layer or below.
LAYERS = {
    "models": 0, "errors": 0, "resources": 0, "config": 0, "due": 0, "logs": 0, "fileio": 0,
    "ingest": 1, "rank": 1, "feeds": 1, "site": 1, "render": 1, "tokens": 1,
    "store": 2, "output": 2, "deliver": 2,
    "pipeline": 3,
    "scheduler": 4, "web": 4,
    "cli": 5, "__main__": 5, "__init__": 0,
}

# Third-party libraries and the modules allowed to import them.
OWNERS = {
    "feedgen": {"feeds"}, "lxml": {"feeds"},
    "tinydb": {"store"}, "filelock": {"store"},
    "aiosmtplib": {"deliver"}, "css_inline": {"render"},
    "jinja2": {"site", "render"}, "markupsafe": {"site", "render"},
    "apscheduler": {"scheduler", "due"}, "watchfiles": {"scheduler"},
    "starlette": {"web"}, "uvicorn": {"web"}, "multipart": {"web"},
    "tomllib": {"config"},
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        top = rel.parts[0].removesuffix(".py")
        out.append((top, path))
    return out


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            if node.module == "digest":
                names += [f"digest.{a.name}" for a in node.names]
    return names


@pytest.mark.parametrize("top,path", _modules(), ids=lambda v: str(v))
def test_imports_point_downward(top: str, path: Path) -> None:
    assert top in LAYERS, f"new module {top}: give it a layer in tests/test_layers.py"
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] == "digest" and len(parts) > 1:
            dep = parts[1]
            assert LAYERS[dep] <= LAYERS[top], f"{path.name} ({top}) imports {name}, a higher layer"
        elif parts[0] in OWNERS:
            assert top in OWNERS[parts[0]], f"{path.name} imports {parts[0]}, owned by {OWNERS[parts[0]]}"


def test_every_module_has_a_docstring() -> None:
    for _top, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{path} lacks a module docstring"
