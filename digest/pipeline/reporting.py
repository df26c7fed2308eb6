"""Shared shape of the pipeline's printed reports: lists capped, counts always exact."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

REPORT_LIST_MAX = 50  # per category in a printed report; the counts are always exact


def capped(out: list[str], items: Sequence[Any], fmt: Callable[[Any], str],
           limit: int = REPORT_LIST_MAX) -> None:
    """Append one line per item (at most `limit`) and a "… and N more" line for the rest."""
    out.extend(fmt(x) for x in items[:limit])
    if len(items) > limit:
        out.append(f"  … and {len(items) - limit} more")
