"""Command line: parse arguments, call one pipeline function, print its report.

`parser.py` builds the arguments; the commands live by area (`store.py`, `subscribers.py`,
`mail.py`, `ops.py`); `dispatch` picks one and `main` turns errors into messages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from digest.cli import mail, ops, store, subscribers
from digest.cli.parser import build_parser
from digest.errors import DigestError

__all__ = ["CREATES_STORE", "build_parser", "dispatch", "main"]

# Commands that may create the store; every other one needs it to exist (exit 1 otherwise).
CREATES_STORE = ("init", "check", "ingest", "run", "store")

# The commands that read config.toml, by name (`dkim` and `init` need none).
COMMANDS = {
    "check": ops.check, "status": ops.status, "ingest": store.ingest, "rank": store.rank,
    "publish": store.publish, "subscribers": subscribers.manage, "preview": mail.preview,
    "send": mail.send, "bounces": mail.bounces, "store": store.copy,
    "schedule": ops.schedule, "serve": ops.serve, "run": ops.run,
}


def dispatch(args: argparse.Namespace) -> int:
    from digest import config as cfgmod

    if args.command == "dkim":  # needs no config and no store
        return mail.dkim(args)
    if args.command == "init":
        return ops.init(args)

    config = cfgmod.load_config(args.config)
    from digest import pipeline

    if args.command not in CREATES_STORE:
        pipeline.require_store(config)
    command = COMMANDS.get(args.command)
    if command is None:
        raise AssertionError(args.command)
    return command(config, args)


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

