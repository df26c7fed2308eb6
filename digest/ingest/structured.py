"""Structured story files: JSON in the `Story.to_dict()` form, validated field by field."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from digest.errors import ParseError
from digest.ingest.limits import check_limits
from digest.ingest.text import clean_line, clean_value, derive_id, latest_allowed
from digest.models import LANGUAGES, SCORE_KEYS, Story, parse_iso

# Ids become file names under store/bodies/: keep them to a safe alphabet.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # used with fullmatch: `$` passes "x\n"
_HINT = "a structured story is one object as `digest rank --json` prints (plus body sections)"
_PER_LANG_TEXT = ("title", "summary")
_PER_LANG_LIST = ("tldr", "analysis", "insights")


def _line_of(text: str, key: str, start: int = 0) -> int:
    """Best-effort line of `"key"` in the source (json keeps no positions after decoding)."""
    i = text.find(f'"{key}"', start)
    return text.count("\n", 0, i) + 1 if i >= 0 else 1


class _Checker:
    def __init__(self, text: str, source: str, base: int = 0) -> None:
        self.text, self.source, self.base = text, source, base

    def fail(self, key: str, reason: str, hint: str = _HINT) -> ParseError:
        return ParseError(self.source, _line_of(self.text, key, self.base), f"{key}: {reason}", hint)

    def text_map(self, d: dict[str, Any], key: str, langs: list[str]) -> dict[str, str]:
        v = d.get(key) or {}
        if not isinstance(v, dict):
            raise self.fail(key, "must be an object keyed by language code")
        out = {}
        for lang, s in v.items():
            if lang not in langs:
                raise self.fail(key, f"language {lang!r} is not in languages {langs}")
            if not isinstance(s, str):
                raise self.fail(key, f"{lang} value must be a string")
            out[lang] = clean_line(s) if key == "title" else clean_value(s)
        return out

    def list_map(self, d: dict[str, Any], key: str, langs: list[str]) -> dict[str, list[str]]:
        v = d.get(key) or {}
        if not isinstance(v, dict):
            raise self.fail(key, "must be an object keyed by language code")
        out = {}
        for lang, items in v.items():
            if lang not in langs:
                raise self.fail(key, f"language {lang!r} is not in languages {langs}")
            if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
                raise self.fail(key, f"{lang} value must be a list of strings")
            out[lang] = [clean_value(s) for s in items if clean_value(s)]
        return out


def story_from_obj(d: Any, text: str, source: str, as_of: datetime, base: int = 0,
                   not_after: datetime | None = None) -> Story:
    """Validate one decoded object and build the Story; strings are cleaned like text files.
    A `published`/`updated` later than `not_after` (default: a day after as_of) is refused."""
    c = _Checker(text, source, base)
    if not isinstance(d, dict):
        raise ParseError(source, text.count("\n", 0, base) + 1, "expected a JSON object", _HINT)
    langs = d.get("languages")
    if not isinstance(langs, list) or not langs:
        raise c.fail("languages", "required: a non-empty list such as [\"en\", \"zh-Hans\"]")
    for lang in langs:
        if lang not in LANGUAGES:
            raise c.fail("languages", f"{lang!r} is not one of {', '.join(LANGUAGES)}",
                         "use BCP 47 codes: en, zh-Hans, zh-Hant (never zh_CN)")
    if len(set(langs)) != len(langs):
        raise c.fail("languages", "lists a language twice")
    title = c.text_map(d, "title", langs)
    missing = [lang for lang in langs if not title.get(lang)]
    if missing:
        raise c.fail("title", f"required for every language; missing {', '.join(missing)}")

    scores = d.get("scores")
    if scores is not None:
        if not isinstance(scores, dict) or set(scores) != set(SCORE_KEYS):
            raise c.fail("scores", "must be null or an object with exactly hot, quality, impact")
        for k, v in scores.items():
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100:
                raise c.fail("scores", f"{k} must be a whole number 0-100, got {v!r}")

    times = {}
    for key in ("published", "updated"):
        v = d.get(key)
        if v is None:
            continue
        try:
            times[key] = parse_iso(v) if isinstance(v, str) else None
        except ValueError:
            times[key] = None
        if times[key] is None:
            raise c.fail(key, f"not an ISO 8601 time: {str(v)[:40]!r}",
                         "write e.g. 2026-11-22T09:00:00Z")
        if times[key] > latest_allowed(as_of, not_after):
            raise c.fail(key, f"{v[:40]!r} is in the future (more than a day after "
                              f"{as_of.isoformat()})",
                         "fix the date; a story cannot be published after it is ingested")
    published = times.get("published") or as_of.replace(microsecond=0)
    updated = max(times.get("updated") or published, published)

    sid = d.get("id")
    if sid is None:
        sid = derive_id(source, title[langs[0]])
    if not isinstance(sid, str) or not _ID.fullmatch(sid):
        raise c.fail("id", f"{str(sid)[:40]!r} is not a valid id",
                     "letters, digits, '_' and '-', at most 64, starting with a letter or digit")

    tags = d.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise c.fail("tags", "must be a list of strings")
    excerpt = d.get("tldr_excerpt") or []
    if not isinstance(excerpt, list) or any(x not in langs for x in excerpt):
        raise c.fail("tldr_excerpt", "must list language codes from languages")
    src = d.get("source")
    if src is not None and not isinstance(src, str):
        raise c.fail("source", "must be a string or null")

    clean = {
        "id": sid, "languages": list(langs), "title": title,
        "published": published.isoformat(), "updated": updated.isoformat(),
        "summary": c.text_map(d, "summary", langs),
        "tldr_excerpt": list(excerpt), "scores": scores,
        "tags": list(dict.fromkeys(clean_line(t) for t in tags if clean_line(t))),
        "source": clean_line(src) if src else None,
        "origin": source,
    }
    for key in _PER_LANG_LIST:
        clean[key] = c.list_map(d, key, langs)
    clean["key_data"] = _key_data(c, d, langs)
    clean["faq"] = _pairs(c, d, "faq", langs, ("q", "a"))
    clean["body"] = _pairs(c, d, "body", langs, ("kind", "text"))
    for lang, blocks in clean["body"].items():
        for b in blocks:
            if b["kind"] not in ("h", "p", "li"):
                raise c.fail("body", f"{lang} block kind {b['kind']!r} is not h, p or li")
    story = Story.from_dict(clean)
    check_limits(story, source, lambda key: _line_of(text, key, base))
    return story


def _key_data(c: _Checker, d: dict[str, Any], langs: list[str]) -> dict[str, list[list[str]]]:
    v = d.get("key_data") or {}
    if not isinstance(v, dict):
        raise c.fail("key_data", "must be an object keyed by language code")
    out = {}
    for lang, rows in v.items():
        if lang not in langs:
            raise c.fail("key_data", f"language {lang!r} is not in languages {langs}")
        if not isinstance(rows, list) or not all(
            isinstance(r, list) and all(isinstance(x, str) for x in r) for r in rows
        ):
            raise c.fail("key_data", f"{lang} value must be a list of rows of strings")
        out[lang] = [[clean_line(x) for x in r] for r in rows]
    return out


def _pairs(c: _Checker, d: dict[str, Any], key: str, langs: list[str],
           fields: tuple[str, str]) -> dict[str, list[dict[str, str]]]:
    v = d.get(key) or {}
    if not isinstance(v, dict):
        raise c.fail(key, "must be an object keyed by language code")
    out = {}
    for lang, items in v.items():
        if lang not in langs:
            raise c.fail(key, f"language {lang!r} is not in languages {langs}")
        if not isinstance(items, list):
            raise c.fail(key, f"{lang} value must be a list")
        rows = []
        for it in items:
            if not isinstance(it, dict) or set(it) != set(fields) or not all(
                isinstance(it[f], str) for f in fields
            ):
                raise c.fail(key, f"{lang} items must be objects with string {fields[0]!r} and {fields[1]!r}")
            rows.append({f: (it[f] if f == "kind" else clean_value(it[f])) for f in fields})
        out[lang] = rows
    return out


def _line_of_long_number(text: str) -> int:
    """1-based line of the first run of over 4300 digits (where json gave up), else 1."""
    import re

    m = re.search(r"\d{4300}", text)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def parse_structured(text: str, source: str, as_of: datetime,
                     not_after: datetime | None = None) -> list[tuple[Story, bool]]:
    """A JSON object (one story) or array (e.g. `digest rank --json` output) → Stories, each
    with a flag: True when the file gave its `published` (exact), False when derived."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(source, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})",
                         "fix the JSON syntax at that line") from e
    except RecursionError as e:
        raise ParseError(source, 1, "JSON nested too deeply", _HINT) from e
    except ValueError as e:
        # json raises a bare ValueError past Python's int-digits limit (4300 digits).
        line = _line_of_long_number(text)
        raise ParseError(source, line, "a number has more than 4300 digits",
                         "scores are integers from 0 to 100; fix or remove that value") from e
    if isinstance(data, list):
        stories, seen, pos = [], set(), 0
        for item in data:
            # Point errors at the right object: advance to its "id" (or "languages") key.
            anchor = text.find('"id"', pos)
            base = anchor if anchor >= 0 else pos
            s = story_from_obj(item, text, source, as_of, base, not_after)
            exact = isinstance(item, dict) and item.get("published") is not None
            if s.id in seen:
                raise ParseError(source, _line_of(text, "id", base), f"id {s.id!r} appears twice",
                                 "give each story in the array its own id")
            seen.add(s.id)
            stories.append((s, exact))
            pos = base + 1
        if not stories:
            raise ParseError(source, 1, "empty JSON array: no stories", _HINT)
        return stories
    exact = isinstance(data, dict) and data.get("published") is not None
    return [(story_from_obj(data, text, source, as_of, not_after=not_after), exact)]
