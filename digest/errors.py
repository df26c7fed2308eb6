"""Errors that carry a hint: what went wrong and the operator's next step."""

from __future__ import annotations


class DigestError(Exception):
    """A user-facing error: a message plus a hint; the CLI prints both and exits 1."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(DigestError):
    """config.toml is missing or invalid; message is `FILE:LINE: [section].key: problem`."""


class ParseError(DigestError):
    """A story file could not be parsed; carries file and line."""

    def __init__(self, source: str, line: int, reason: str, hint: str = "") -> None:
        super().__init__(f"{source}:{line}: {reason}", hint)
        self.source = source
        self.line = line
        self.reason = reason


class StoreError(DigestError):
    """The store could not be read or written (locked, corrupt, disk full)."""


class DeliveryError(DigestError):
    """Mail could not be handed to the transport."""


class SendBusy(DeliveryError):
    """Another process is sending this digest right now: the CLI says so (exit 1), while a
    scheduled run just leaves it to that process (the daemon logs it at INFO, not ERROR)."""
