"""The one golden-file mechanism: compare output with files under tests/golden/, rewrite them
with DIGEST_UPDATE_GOLDEN=1 (`make golden`). Tests get it as the `golden` fixture
(tests/conftest.py), which also marks them `golden`."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"


class Golden:
    """Compares output with the files under tests/golden/. With DIGEST_UPDATE_GOLDEN=1
    (`make golden`) it first rewrites what differs (and removes what is gone), so an
    unchanged output rewrites nothing.

        golden.check("email/en.txt", text)             # one file: str (UTF-8) or bytes
        golden.check("publish", {"index.html": b"..."})  # a directory: relative path -> bytes
    """

    HINT = "if the change is intended, refresh with `make golden` and review the diff"

    def __init__(self, root: Path = GOLDEN, update: bool | None = None) -> None:
        self.root = root
        self.update = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1" if update is None else update

    def path(self, name: str) -> Path:
        return self.root / name

    def check(self, name: str, got: str | bytes | Mapping[str, bytes]) -> None:
        if isinstance(got, Mapping):
            self._check_tree(self.path(name), got)
        else:
            self._check_file(self.path(name), got.encode("utf-8") if isinstance(got, str) else got)

    def _check_file(self, path: Path, got: bytes) -> None:
        if self.update and (not path.is_file() or path.read_bytes() != got):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(got)
        assert path.is_file(), f"{self._rel(path)} is missing; {self.HINT}"
        want = path.read_bytes()
        if got != want:
            pytest.fail(f"{self._rel(path)} differs; {self.HINT}\n{_diff(want, got)}", pytrace=False)

    def _check_tree(self, root: Path, got: Mapping[str, bytes]) -> None:
        if self.update:
            for rel, blob in got.items():
                p = root / rel
                if not p.is_file() or p.read_bytes() != blob:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(blob)
            for rel in set(_tree(root)) - set(got):
                (root / rel).unlink()
            for d in sorted((d for d in root.rglob("*") if d.is_dir()), reverse=True):
                if not any(d.iterdir()):
                    d.rmdir()
        have = _tree(root)
        missing, extra = sorted(set(got) - set(have)), sorted(set(have) - set(got))
        assert not missing and not extra, (
            f"{self._rel(root)}: files not in the golden tree {missing}, golden files no longer "
            f"produced {extra}; {self.HINT}")
        changed = sorted(rel for rel in got if got[rel] != have[rel])
        if changed:
            first = changed[0]
            pytest.fail(f"{self._rel(root)}: {len(changed)} file(s) differ {changed}; {self.HINT}\n"
                        f"{first}:\n{_diff(have[first], got[first])}", pytrace=False)

    def _rel(self, path: Path) -> str:
        return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()} if root.is_dir() else {}


def _diff(want: bytes, got: bytes, limit: int = 40) -> str:
    try:
        a, b = want.decode("utf-8"), got.decode("utf-8")
    except UnicodeDecodeError:
        return f"(binary: {len(want)} bytes golden, {len(got)} bytes now)"
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "golden", "now", lineterm=""))
    return "\n".join(lines[:limit] + (["..."] if len(lines) > limit else []))
