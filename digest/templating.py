"""The one home of Jinja2 (and markupsafe): the environments pages and mail are rendered with.

Callers bring what is theirs (the templates folder, the globals, the text filter); the
settings that decide the output bytes live here, so pages and mail cannot drift apart.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import (
    BytecodeCache,
    Environment,
    FileSystemBytecodeCache,
    FileSystemLoader,
    StrictUndefined,
    Template,
    select_autoescape,
)
from jinja2.bccache import Bucket
from markupsafe import Markup

__all__ = ["Environment", "Template", "mail_html_environment", "mail_text_environment",
           "page_environment"]


# Compiled templates are kept between processes (a cold compile of the page templates is
# ~0.16 s of every publish), outside the served directory: $DIGEST_CACHE_DIR, else
# $XDG_CACHE_HOME/digest, else ~/.cache/digest; DIGEST_CACHE_DIR=off turns it off. Jinja checks
# each entry against the template's source checksum, and the directory is per environment
# kind (the options change the compiled code) and per Jinja and Python version, so a cached
# template renders exactly the bytes a fresh compile does.
CACHE_ENV = "DIGEST_CACHE_DIR"


class _QuietCache(FileSystemBytecodeCache):
    """A cache that can only make things faster: an unreadable, damaged or unwritable entry
    means a compile, never an error."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a damaged entry (pickle, marshal, I/O): recompile
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def bytecode_cache(kind: str) -> BytecodeCache | None:
    """The compiled-template cache of one environment kind, or None when off or unusable."""
    root = os.environ.get(CACHE_ENV)
    if root is not None and root.strip().lower() in ("", "0", "off", "no", "false"):
        return None
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = os.path.join(xdg if xdg and os.path.isabs(xdg)
                            else os.path.join(os.path.expanduser("~"), ".cache"), "digest")
    version = f"jinja{jinja2.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    path = os.path.join(root, "jinja", version, kind)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            return None
    except OSError:
        return None
    return _QuietCache(path)


def _finalizer(text_filter: Callable[[str], str]) -> Callable[[Any], Any]:
    """Every value printed by a template goes through `text_filter` (already-safe markup stays
    markup), so one filter (e.g. XML-illegal characters out) covers every page."""

    def finalize(value: Any) -> Any:
        if isinstance(value, Markup):
            return Markup(text_filter(str(value)))
        if isinstance(value, str):
            return text_filter(value)
        return value

    return finalize


def page_environment(templates: Path, *, text_filter: Callable[[str], str] | None = None,
                     globals: Mapping[str, Any] | None = None) -> Environment:
    """Web pages, feeds.opml and feed fragments: autoescape for HTML/OPML/XML, undefined
    names are errors, block tags leave no blank lines, and `text_filter` cleans every
    printed value."""
    env = Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(["html", "opml", "xml"]),
        finalize=_finalizer(text_filter) if text_filter is not None else None,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=bytecode_cache("page-filtered" if text_filter is not None else "page"),
    )
    env.globals.update(globals or {})
    return env


def mail_html_environment(templates: Path) -> Environment:
    """HTML email bodies: always autoescaped, undefined names are errors."""
    return Environment(loader=FileSystemLoader(str(templates)), autoescape=True,
                       undefined=StrictUndefined, bytecode_cache=bytecode_cache("mail-html"))


def mail_text_environment(templates: Path) -> Environment:
    """The plain-text twin of each email: no escaping, trailing newline kept, block tags
    leave no blank lines."""
    return Environment(loader=FileSystemLoader(str(templates)), autoescape=False,
                       undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                       bytecode_cache=bytecode_cache("mail-text"))
