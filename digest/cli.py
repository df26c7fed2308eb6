"""Command line: parse arguments, call one pipeline function, print its report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from digest.errors import DigestError

RANK_LANGUAGES = ("en", "zh", "zh-Hans", "zh-Hant", "all")


def _when(text: str) -> datetime:
    from digest.models import parse_iso

    try:
        return parse_iso(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from e


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="digest", description=__doc__)
    p.add_argument("--config", type=Path, default=Path("config.toml"), help="config file (default ./config.toml)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("init", help="write the commented default config.toml")
    sub.add_parser("check", help="validate config.toml and print the effective settings")

    s = sub.add_parser("ingest", help="ingest story files and directories into the store")
    s.add_argument("paths", nargs="*", type=Path, help="files or directories (default: [ingest] paths)")
    s.add_argument("--as-of", type=_when, help="resolve relative ages ('9h ago') against this time")

    s = sub.add_parser("rank", help="stored stories in rank order with their score parts")
    s.add_argument("--lang", choices=RANK_LANGUAGES, help="only stories readable in it")
    s.add_argument("--tag")
    s.add_argument("--limit", type=int)
    s.add_argument("--json", action="store_true")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("publish", help="write feeds, story pages, index.html and feeds.opml")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("subscribers", help="manage subscribers")
    ss = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ss.add_parser("add", help="add an active subscriber")
    a.add_argument("email")
    a.add_argument("--lang", type=_csv, default=None)
    a.add_argument("--tags", type=_csv, default=None)
    a.add_argument("--tz", default=None)
    a = ss.add_parser("list", help="list subscribers")
    a.add_argument("--json", action="store_true")
    a = ss.add_parser("remove", help="remove a subscriber")
    a.add_argument("email")
    a = ss.add_parser("import", help="import a CSV: email,languages,tags,timezone")
    a.add_argument("file", type=Path)

    s = sub.add_parser("preview", help="render a digest to a file to look at")
    s.add_argument("--digest")
    s.add_argument("--email")
    s.add_argument("--lang", type=_csv)
    s.add_argument("--out", type=Path)
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("send", help="send the due edition to every active subscriber now")
    s.add_argument("--digest")
    s.add_argument("--dry-run", action="store_true")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("schedule", help="list scheduled jobs and their next run times")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)
    sub.add_parser("serve", help="serve the published files and subscription pages")
    s = sub.add_parser("run", help="run the scheduler and web server (the daemon)")
    s.add_argument("--once", action="store_true", help="ingest, publish, send what is due, exit")
    return p


def _out(line: str) -> None:
    print(line, flush=True)


def _write_hint(path: Path) -> str:
    parent = path.parent
    if not parent.exists():
        return f"create the directory first (mkdir -p {parent}), or give another --config path"
    return f"check that {parent} is a writable directory, or give another path"


PROGRESS_MIN_FILES = 20  # below this a bar only flickers


class _ProgressBar:
    """`digest ingest`'s one-line bar on stderr, only on a terminal and only for long runs."""

    WIDTH = 30

    def __init__(self) -> None:
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_MIN_FILES or not sys.stderr.isatty():
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


def _ingest(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
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


def _subscribers(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    """`digest subscribers add|list|remove|import`: one pipeline call, its result printed."""
    from digest import pipeline

    if args.action == "add":
        sub = pipeline.add_subscriber(config, args.email, args.lang, args.tags, args.tz)
        _out(f"added {sub.email} ({','.join(sub.languages)}; tags: "
             f"{','.join(sub.tags) or 'all'}; {sub.timezone})")
        return 0
    if args.action == "list":
        subs = pipeline.list_subscribers(config)
        if args.json:
            print(json.dumps([s.to_dict() for s in subs], ensure_ascii=False, indent=2))
        else:
            for s in subs:
                _out(f"{s.email}\t{s.status}\t{','.join(s.languages)}\t"
                     f"{','.join(s.tags) or '-'}\t{s.timezone}")
            _out(f"{len(subs)} subscriber(s)")
        return 0
    if args.action == "remove":
        _out(f"removed {pipeline.remove_subscriber(config, args.email)}")
        return 0
    if args.action == "import":
        report = pipeline.import_subscribers(config, args.file)
        for line in report.lines():
            _out(line)
        return 1 if report.bad else 0
    raise AssertionError(args.action)


def dispatch(args: argparse.Namespace) -> int:
    from digest import config as cfgmod

    if args.command == "init":
        if args.config.exists():
            raise DigestError(f"{args.config} already exists; not overwriting it",
                              "edit it, or move it away and run `digest init` again")
        try:
            args.config.write_text(cfgmod.default_config_text(), encoding="utf-8")
        except OSError as e:
            raise DigestError(f"{args.config}: cannot write ({e.strerror or e})",
                              _write_hint(args.config)) from e
        _out(f"wrote {args.config}")
        return 0

    config = cfgmod.load_config(args.config)
    from digest import pipeline

    if args.command == "check":
        print(json.dumps(config.redacted(), indent=2, ensure_ascii=False, default=str))
        _out(f"{args.config}: OK")
        return 0
    if args.command == "ingest":
        return _ingest(config, args)
    if args.command == "rank":
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
    if args.command == "publish":
        report = pipeline.publish(config, now=args.now)
        _out(report.summary())
        return 0
    if args.command == "subscribers":
        return _subscribers(config, args)
    if args.command == "preview":
        path = pipeline.preview(config, name=args.digest, email=args.email, langs=args.lang,
                                out=args.out, now=args.now)
        _out(f"wrote {path}")
        return 0
    if args.command == "send":
        report = pipeline.send_digest(config, name=args.digest, now=args.now, dry_run=args.dry_run)
        for line in report.lines():
            _out(line)
        return 1 if report.failed else 0
    if args.command == "schedule":
        from digest.scheduler import daemon as scheduler

        for line in scheduler.describe(config, now=args.now or datetime.now(UTC)):
            _out(line)
        return 0
    if args.command == "serve":
        from digest import web
        from digest.logs import setup_logging

        setup_logging()  # web.serve logs where it listens; unconfigured, that line is lost
        web.serve(config)
        return 0
    if args.command == "run":
        from digest.scheduler import daemon as scheduler

        return scheduler.run(args.config, once=args.once)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except DigestError as e:
        print(f"digest: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `digest rank --json | head` closed the pipe: not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        # A file the command had to read or write (disk full, permissions, a missing
        # directory) is the operator's to fix: a message and a hint, not a traceback.
        where = f"{e.filename}: " if e.filename else ""
        print(f"digest: error: {where}{e.strerror or e}", file=sys.stderr)
        print("  hint: check that the path exists and is writable, and that the disk has "
              "room", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
