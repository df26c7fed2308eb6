"""Mail-stage fixtures. Shared ones (`config`, `empty_config`, `secret`, `smtp_server`) are in
tests/conftest.py; helpers that build subscribers and stories are in tests.support.send."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.smtp_server import SMTPServer

if TYPE_CHECKING:
    from digest.config import Config


@pytest.fixture
def smtp_config(tmp_path: Path, smtp_server: SMTPServer) -> Config:
    """`config` (seeds ingested) sending over SMTP to the loopback `smtp_server`."""
    from tests.support.send import make_project

    return make_project(tmp_path, transport="smtp", host=smtp_server.host, port=smtp_server.port,
                        sender="AI News <digest@news.example.org>", timeout=5.0)


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])
def pipelining(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the test twice: every SMTPServer (and FaultServer) it starts offers PIPELINING or
    not, so the transport takes its pipelined path (commands.Pipe) or one command at a time.
    Use with `pytestmark = pytest.mark.usefixtures("pipelining")`."""
    monkeypatch.setattr(SMTPServer, "PIPELINING", request.param)
    return request.param
