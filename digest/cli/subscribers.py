"""`digest subscribers add|list|remove|import|reactivate`."""

from __future__ import annotations

import argparse
import json
import sys

from digest.cli.output import _out
from digest.errors import DigestError


def manage(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a Config
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

