"""The build key covers the code of every module that shapes published bytes."""

from __future__ import annotations

import pkgutil

import digest.publish
from digest.publish import keys


def test_every_publish_module_is_in_the_build_key():
    # a publish module missing from keys._CODE: editing it would not rebuild the tree
    modules = {f"digest.publish.{m.name}" for m in pkgutil.iter_modules(digest.publish.__path__)}
    missing = sorted(modules - set(keys._CODE))
    assert not missing, f"add {missing} to digest.publish.keys._CODE"


def test_build_key_changes_with_any_listed_module(tmp_path, monkeypatch):
    before = keys._code_key()
    keys._code_key.cache_clear()
    real = keys.Path.read_bytes

    def edited(self):
        data = real(self)
        return data + b"# edited" if self.name == "storypage.py" else data

    monkeypatch.setattr(keys.Path, "read_bytes", edited)
    try:
        assert keys._code_key() != before
    finally:
        keys._code_key.cache_clear()
