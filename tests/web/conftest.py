"""Web-stage fixtures. The in-process server harness (`running`, `Server`), `write_config`
and link helpers live in tests.support.web."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.web import Sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    """The loopback SMTP server seen as a mailbox: `sink.port`, `sink.wait(n)`."""
    with Sink() as s:
        yield s
