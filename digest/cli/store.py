"""Story commands: `ingest` (with its progress bar), `rank`, `publish`, `store copy`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from digest.cli.output import _out

PROGRESS_MIN_FILES = 20  # below this a bar only flickers


class _ProgressBar:
    """`digest ingest`'s one-line bar on stderr, only on a terminal and only for long runs."""

    WIDTH = 30

    def __init__(self) -> None:
        self.drawn = False
        self.tty: bool | None = None  # asked once, not once per file

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_MIN_FILES:
            return
        if self.tty is None:
            self.tty = sys.stderr.isatty()
        if not self.tty:
            return
        fill = self.WIDTH * done // total
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (self.WIDTH - fill)}] {done}/{total}")
        sys.stderr.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r" + " " * 50 + "\r")
            sys.stderr.flush()
            self.drawn = False


def ingest(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline

    bar = _ProgressBar()
    try:
        report = pipeline.ingest_paths(config, args.paths or None, as_of=args.as_of, progress=bar)
    finally:
        bar.clear()
    # In the order the run met them: rejections (with hints) on stderr, the rest on stdout.
    for event in report.events:
        if event.kind == "rejected":
            print(event.text, file=sys.stderr)
            if event.hint:
                print(f"  hint: {event.hint}", file=sys.stderr)
        else:
            _out(event.text)
    _out(report.summary())
    return 1 if report.rejections else 0


def rank(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline

    now = args.now or datetime.now(UTC)
    ranked = pipeline.rank_stories(config, now, lang=args.lang, tag=args.tag, limit=args.limit)
    if args.json:
        print(json.dumps([r.as_json() for r in ranked], ensure_ascii=False, indent=2))
    elif not ranked and pipeline.status(config).stories > 0:
        # format_ranked would say "run digest ingest first": wrong when only the
        # --lang/--tag/--limit filter left nothing.
        _out("no stories match")
    else:
        for line in pipeline.format_ranked(ranked):
            _out(line)
    return 0


def publish(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline

    report = pipeline.publish(config, now=args.now)
    _out(report.summary())
    for warning in report.warnings:  # stories skipped for a damaged body
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def copy(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    """`digest store copy --to`: the one store action."""
    from digest.pipeline.storecopy import copy_store

    _out(copy_store(config, args.to).summary())
    return 0
