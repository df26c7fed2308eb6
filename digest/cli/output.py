"""What every command prints its report lines through: stdout, flushed per line."""

from __future__ import annotations


def _out(line: str) -> None:
    print(line, flush=True)
