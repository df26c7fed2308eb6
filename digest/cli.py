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


DESCRIPTION = """\
digest publishes curated AI news stories as RSS, Atom and JSON feeds with a static site,
and emails bilingual (English/Chinese) digests to subscribers on a schedule.

Start in an empty directory:  digest init --samples && digest run --once
Then run the daemon (schedules + web server):  digest run"""

EPILOG = """\
Every command reads ./config.toml unless --config PATH is given (before or after the
command). Exit status: 0 success, 1 an error (message and hint on stderr), 2 bad usage.
Environment: DIGEST_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR; default INFO), the site secret
in the variable [web] secret_env names (DIGEST_SECRET), the SMTP password in the one
[smtp] password_env names (DIGEST_SMTP_PASSWORD), libpq's PG* variables for [store] url.
See README.md and docs/OPERATIONS.md."""

LOG_FORMATS = ("text", "json")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("digest")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown (not installed)"


class _VersionAction(argparse._VersionAction):
    """`--version`, the installed version looked up only when asked for: importlib.metadata
    and the search of sys.path cost every other command ~10 ms."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        self.version = f"digest {_version()}"
        super().__call__(parser, namespace, values, option_string)


def _add_common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """The global options, accepted before and after the command (`digest check --config X`).
    On subcommands their default is SUPPRESS, so one given before the command stands."""
    default = (lambda v: v) if top else (lambda _v: argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, metavar="PATH", default=default(Path("config.toml")),
                        help="the config file to read (default: ./config.toml); relative paths "
                             "inside it are read against its directory")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=default("text"),
                        help="log lines of `run` and `serve` as text or as one JSON object "
                             "per line for log shippers (default: text)")


def _finish(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand the global options and a description (its help line)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            if sub.description is None and helps.get(name):
                sub.description = helps[name][0].upper() + helps[name][1:] + "."
            _add_common(sub)
            _finish(sub)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="digest", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action=_VersionAction,
                   help="print the installed version and exit")
    _add_common(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", help="start a project here: write a commented config.toml, "
                                    "create the inbox and the store, print the next steps")
    s.add_argument("--samples", action="store_true",
                   help="also copy the sample stories into the inbox (default: an empty inbox)")
    sub.add_parser("check", help="validate config.toml, print the effective settings (secrets "
                                 "redacted) and whether the store exists")
    s = sub.add_parser("status", help="what the store holds: stories, subscribers, the last "
                                      "ingest, publish and editions, next runs, quarantined files")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("ingest", help="ingest story files and directories into the store "
                                      "(creates the store)")
    s.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="story files (.txt, .md, .json) or directories of them "
                        "(default: [ingest] paths)")
    s.add_argument("--as-of", type=_when, metavar="ISO8601",
                   help="the time the files were written, e.g. 2026-11-22T12:00:00Z: relative "
                        "ages ('9h ago') count from it, and stories already stored get their "
                        "derived times resolved again (default: each file's modification time)")

    s = sub.add_parser("rank", help="stored stories in rank order with their score parts")
    s.add_argument("--lang", choices=RANK_LANGUAGES,
                   help="only stories readable in this language (default: all)")
    s.add_argument("--tag", metavar="TAG", help="only stories with this tag or [tags] alias "
                                                "(default: all)")
    s.add_argument("--limit", type=int, metavar="N", help="at most N stories (default: all)")
    s.add_argument("--json", action="store_true",
                   help="print a JSON array of story objects (a structured story file for "
                        "`digest ingest`) instead of text")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("publish", help="write feeds, story pages, index.html and feeds.opml "
                                       "into [feeds] output")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("subscribers", help="add, list, remove or import subscribers")
    ss = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ss.add_parser("add", help="add an active subscriber (or change one's choices)")
    a.add_argument("email", help="the address, e.g. reader@example.org")
    a.add_argument("--lang", type=_csv, default=None, metavar="LANGS",
                   help="comma-separated languages: en, zh or both (default: en,zh)")
    a.add_argument("--tags", type=_csv, default=None, metavar="TAGS",
                   help="comma-separated tags or [tags] aliases to receive (default: all "
                        "stories)")
    a.add_argument("--tz", default=None, metavar="ZONE",
                   help="IANA time zone the digest cron is read in, e.g. Asia/Shanghai "
                        "(default: UTC)")
    a.add_argument("--digests", type=_csv, default=None, metavar="NAMES",
                   help="comma-separated [[digests]] names to receive, e.g. daily,weekly "
                        "(default: those marked default = true, else all)")
    a = ss.add_parser("list", help="list subscribers: email, status, languages, tags, zone")
    a.add_argument("--json", action="store_true", help="print a JSON array instead of text")
    a = ss.add_parser("remove", help="remove a subscriber")
    a.add_argument("email", help="the address to remove")
    a = ss.add_parser("import", help="import a CSV file with the columns email,languages,"
                                     "tags,timezone (and optionally digests)")
    a.add_argument("file", type=Path, metavar="CSV", help="the CSV file (UTF-8, header row)")
    a = ss.add_parser("reactivate", help="make bounced subscribers active again (after a "
                                         "mistake, e.g. a relay that refused everyone)")
    a.add_argument("emails", nargs="*", metavar="EMAIL", help="bounced addresses to reactivate")
    a.add_argument("--bounced", action="store_true", help="every bounced subscriber")
    a.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("preview", help="render a digest to a file to look at (sends nothing)")
    s.add_argument("--digest", metavar="NAME",
                   help="which [[digests]] table (default: the first)")
    s.add_argument("--email", metavar="ADDRESS",
                   help="render for this subscriber (default: a reader of --lang)")
    s.add_argument("--lang", type=_csv, metavar="LANGS",
                   help="comma-separated languages of the sample reader without --email "
                        "(default: en,zh)")
    s.add_argument("--edition", metavar="DATE",
                   help="show the edition sent to --email on DATE (YYYY-MM-DD, the "
                        "subscriber's local date), with the stories the journal recorded "
                        "(default: the next edition)")
    s.add_argument("--out", type=Path, metavar="FILE",
                   help="where to write it; a name ending in .eml writes the whole message "
                        "(default: ./preview-NAME.html)")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("send", help="send today's edition to every active subscriber who has "
                                    "not had it (a manual run; the daemon sends on schedule)")
    s.add_argument("--digest", metavar="NAME",
                   help="which [[digests]] table (default: the first)")
    s.add_argument("--dry-run", action="store_true",
                   help="report who would get what; send and record nothing")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("bounces", help="read the bounce mailbox ([bounces] maildir or IMAP): "
                                       "mark bounced and complaining subscribers, unsubscribe "
                                       "by mail; handled messages move to its processed folder")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)

    s = sub.add_parser("dkim", help="DKIM keys for signing digests ([dkim] in config.toml)")
    ss = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ss.add_parser("keygen", help="write a new private key (mode 0600) and print the DNS "
                                     "TXT record to publish for it")
    a.add_argument("--domain", required=True, metavar="D",
                   help="the signing domain, [dkim] domain (e.g. news.example.org)")
    a.add_argument("--selector", required=True, metavar="S",
                   help="the selector, [dkim] selector (e.g. digest2026)")
    a.add_argument("--key-file", required=True, type=Path, metavar="PATH",
                   help="where to write the private key, [dkim] key_file; never overwritten")
    a.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa",
                   help="rsa (2048 bits, read by every receiver; default) or ed25519 "
                        "(RFC 8463; publish it beside an RSA key)")

    s = sub.add_parser("store", help="manage the store itself")
    ss = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ss.add_parser("copy", help="copy the whole store, history included, into another "
                      "(idempotent: run it again to resume or catch up)")
    a.add_argument("--to", required=True, metavar="URL_OR_PATH",
                   help="a postgresql://user@host:port/db url or a store directory")

    s = sub.add_parser("schedule", help="list scheduled jobs, their next run times and whether "
                                        "today's edition of each digest is done")
    s.add_argument("--now", type=_when, help=argparse.SUPPRESS)
    sub.add_parser("serve", help="serve the published files and subscription pages on "
                                 "[web] host:port (no schedules)")
    s = sub.add_parser("run", help="run the daemon: scheduled ingest, publish and digests "
                                   "beside the web server, until SIGTERM")
    s.add_argument("--once", action="store_true",
                   help="ingest, publish and send what is due once, then exit (no web server)")
    _finish(p)
    return p


def _out(line: str) -> None:
    print(line, flush=True)


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
        sub = pipeline.add_subscriber(config, args.email, args.lang, args.tags, args.tz,
                                      digests=args.digests)
        _out(f"added {sub.email} ({','.join(sub.languages)}; tags: "
             f"{','.join(sub.tags) or 'all'}; {sub.timezone}; digests: "
             f"{','.join(config.digests_of(sub.digests))})")
        for tag in pipeline.unknown_tags(config, sub.tags):
            print(f"digest: warning: no stored story and no [tags] alias has the tag {tag!r}; "
                  f"{sub.email} gets no story for it until one does", file=sys.stderr)
        return 0
    if args.action == "list":
        subs = pipeline.list_subscribers(config)
        if args.json:
            # `digests`: what each receives (their choice, else the config's defaults)
            print(json.dumps([{**s.to_dict(), "digests": list(config.digests_of(s.digests))}
                              for s in subs], ensure_ascii=False, indent=2))
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
    if args.action == "reactivate":
        if not args.emails and not args.bounced:
            raise DigestError("subscribers reactivate: name the addresses, or give --bounced",
                              "e.g. `digest subscribers reactivate --bounced`")
        report = pipeline.reactivate_subscribers(config, args.emails, bounced=args.bounced,
                                                 now=args.now)
        for line in report.lines():
            _out(line)
        return 1 if report.refused else 0
    raise AssertionError(args.action)


# Commands that may create the store; every other one needs it to exist (exit 1 otherwise).
CREATES_STORE = ("init", "check", "ingest", "run", "store")


def _check(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline

    print(json.dumps(config.redacted(), indent=2, ensure_ascii=False, default=str))
    where = pipeline.store_where(config)
    if pipeline.store_exists(config):
        report = pipeline.status(config)
        _out(f"store: {where} holds {report.stories} stories and {report.subscribers} active "
             "subscribers")
    else:
        _out(f"store: {where} does not exist yet; `digest ingest` or `digest run` creates it")
    from digest.config.checks import deliverability_warnings

    for warning in deliverability_warnings(config):  # advice, not errors: still exit 0
        print(f"digest: warning: {warning}", file=sys.stderr)
    _out(f"{args.config}: OK")
    return 0


def _status(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline

    report = pipeline.status(config, now=args.now, full=True)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        for line in report.lines():
            _out(line)
    return 0


def _send(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline

    now = args.now or datetime.now(UTC)
    for line in pipeline.manual_send_notes(config, args.digest, now):
        _out(line)
    report = pipeline.send_digest(config, name=args.digest, now=now, dry_run=args.dry_run)
    for line in report.lines():
        _out(line)
    if report.stopped:  # the relay refused the session: the fix is the operator's
        print(f"digest: error: {report.stopped}", file=sys.stderr)
        print(f"  hint: {report.stop_hint}", file=sys.stderr)
        return 1
    return 1 if report.failed else 0


def _dkim(args: argparse.Namespace) -> int:
    """`digest dkim keygen`: the record on stdout (for scripts), what to do on stderr."""
    from digest import pipeline

    record = pipeline.dkim_keygen(args.domain, args.selector, args.key_file, args.algorithm)
    print(f"digest: wrote the private key {args.key_file} (mode 0600); publish this DNS TXT "
          "record, then set [dkim] domain, selector and key_file in config.toml:",
          file=sys.stderr)
    _out(record)
    return 0


def _schedule(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline
    from digest.scheduler import daemon as scheduler

    now = args.now or datetime.now(UTC)
    for line in scheduler.describe(config, now=now):
        _out(line)
    for e in pipeline.today_editions(config, now):
        if not e.subscribers:
            continue
        c = e.counts
        when = f"at {e.fires_at}" if e.fires_at else "not scheduled today"
        _out(f"today: digest {e.digest} edition {e.edition} in {e.timezone} ({when}): {e.state}"
             f" — sent {c['sent']}, failed {c['failed']}, bounced {c['bounced']}, "
             f"not sent {c['none'] + c['sending']} of {e.subscribers}")
    return 0


def dispatch(args: argparse.Namespace) -> int:
    from digest import config as cfgmod

    if args.command == "dkim":  # needs no config and no store
        return _dkim(args)
    if args.command == "init":
        from digest import pipeline

        for line in pipeline.init_project(args.config, samples=args.samples).lines():
            _out(line)
        return 0

    config = cfgmod.load_config(args.config)
    from digest import pipeline

    if args.command not in CREATES_STORE:
        pipeline.require_store(config)
    if args.command == "check":
        return _check(config, args)
    if args.command == "status":
        return _status(config, args)
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
        for warning in report.warnings:  # stories skipped for a damaged body
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    if args.command == "subscribers":
        return _subscribers(config, args)
    if args.command == "preview":
        path = pipeline.preview(config, name=args.digest, email=args.email, langs=args.lang,
                                out=args.out, now=args.now, edition=args.edition)
        _out(f"wrote {path}")
        return 0
    if args.command == "send":
        return _send(config, args)
    if args.command == "bounces":
        for line in pipeline.process_bounces(config, now=args.now).lines():
            _out(line)
        return 0
    if args.command == "store":  # the one action: copy
        from digest.pipeline.storecopy import copy_store

        _out(copy_store(config, args.to).summary())
        return 0
    if args.command == "schedule":
        return _schedule(config, args)
    if args.command == "serve":
        from digest import web
        from digest.logs import setup_logging

        # web.serve logs where it listens; unconfigured, that line is lost
        setup_logging(args.log_format)
        web.serve(config)
        return 0
    if args.command == "run":
        from digest.scheduler import daemon as scheduler

        return scheduler.run(args.config, once=args.once, log_format=args.log_format)
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
