"""Mail commands: `preview`, `send`, `bounces`, `dkim keygen`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from digest.cli.output import _out


def preview(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline

    path = pipeline.preview(config, name=args.digest, email=args.email, langs=args.lang,
                            out=args.out, now=args.now, edition=args.edition)
    _out(f"wrote {path}")
    return 0


def send(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
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


def dkim(args: argparse.Namespace) -> int:
    """`digest dkim keygen`: the record on stdout (for scripts), what to do on stderr."""
    from digest import pipeline

    record = pipeline.dkim_keygen(args.domain, args.selector, args.key_file, args.algorithm)
    print(f"digest: wrote the private key {args.key_file} (mode 0600); publish this DNS TXT "
          "record, then set [dkim] domain, selector and key_file in config.toml:",
          file=sys.stderr)
    _out(record)
    return 0


def bounces(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline

    for line in pipeline.process_bounces(config, now=args.now).lines():
        _out(line)
    return 0
