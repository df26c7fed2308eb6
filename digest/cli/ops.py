"""Operations commands: `init`, `check`, `status`, `schedule`, `serve`, `run`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from digest.cli.output import _out


def init(args: argparse.Namespace) -> int:
    from digest import pipeline

    for line in pipeline.init_project(args.config, samples=args.samples).lines():
        _out(line)
    return 0


def check(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
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


def status(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import pipeline

    report = pipeline.status(config, now=args.now, full=True)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        for line in report.lines():
            _out(line)
    return 0


def schedule(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
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


def serve(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest import web
    from digest.logs import setup_logging

    # web.serve logs where it listens; unconfigured, that line is lost
    setup_logging(args.log_format)
    web.serve(config)
    return 0


def run(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
    from digest.scheduler import daemon as scheduler

    return scheduler.run(args.config, once=args.once, log_format=args.log_format)
