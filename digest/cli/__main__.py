"""Entry point for `python -m digest.cli`."""

from digest.cli import main

raise SystemExit(main())
