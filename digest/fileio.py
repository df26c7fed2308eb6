"""Low-level file I/O shared by the store and the output writer: full writes and fsyncs."""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """fsync a file or directory by path; `directory` insists that it is one (O_DIRECTORY)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
