"""JSON bytes in and out: the one user of orjson (store files, feed JSON, the tree manifest)."""

from __future__ import annotations

from typing import Any

import orjson

# Re-exported so callers can catch them without importing orjson. EncodeError is a TypeError
# (unserializable value, lone surrogate); DecodeError is a ValueError (json.JSONDecodeError).
EncodeError = orjson.JSONEncodeError
DecodeError = orjson.JSONDecodeError


def dumps(obj: Any, *, indent: bool = False, sort_keys: bool = False) -> bytes:
    """UTF-8 JSON, compact by default; `indent` gives two spaces per level (the same bytes
    as the json module's `indent=2, ensure_ascii=False`), `sort_keys` orders object keys."""
    option = (orjson.OPT_INDENT_2 if indent else 0) | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    return orjson.dumps(obj, option=option or None)


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises DecodeError (a ValueError) on bad input."""
    return orjson.loads(data)
