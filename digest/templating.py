"""The one home of Jinja2 (and markupsafe): the environments pages and mail are rendered with.

Callers bring what is theirs (the templates folder, the globals, the text filter); the
settings that decide the output bytes live here, so pages and mail cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from markupsafe import Markup

__all__ = ["Environment", "Template", "mail_html_environment", "mail_text_environment",
           "page_environment"]


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
    )
    env.globals.update(globals or {})
    return env


def mail_html_environment(templates: Path) -> Environment:
    """HTML email bodies: always autoescaped, undefined names are errors."""
    return Environment(loader=FileSystemLoader(str(templates)), autoescape=True,
                       undefined=StrictUndefined)


def mail_text_environment(templates: Path) -> Environment:
    """The plain-text twin of each email: no escaping, trailing newline kept, block tags
    leave no blank lines."""
    return Environment(loader=FileSystemLoader(str(templates)), autoescape=False,
                       undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
