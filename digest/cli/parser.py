"""The argument parser: every command, its options and help, the global options on each."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

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
