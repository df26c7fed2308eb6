"""Mail transports: an SMTP connection pool (`smtp.py`) and a local Maildir (`maildir.py`);
both take ready message bytes. `open_transport` picks the one config.toml asks for."""

from __future__ import annotations

from digest.config import SmtpConfig
from digest.errors import DeliveryError
from digest.mail.transports.base import Envelope, OnOutcome, Outcome, Transport
from digest.mail.transports.commands import plain_address, wire_data
from digest.mail.transports.maildir import MaildirTransport
from digest.mail.transports.smtp import SmtpTransport

__all__ = ["Envelope", "MaildirTransport", "OnOutcome", "Outcome", "SmtpTransport",
           "Transport", "open_transport", "plain_address", "wire_data"]


def open_transport(cfg: SmtpConfig, password: str | None = None, **smtp_options: object
                   ) -> Transport:
    """The transport config.toml asks for (`[smtp] transport`)."""
    if cfg.transport == "maildir":
        return MaildirTransport(cfg.maildir)
    if cfg.transport == "smtp":
        return SmtpTransport(cfg, password, **smtp_options)  # type: ignore[arg-type]
    raise DeliveryError(f"[smtp] transport: unknown value {cfg.transport!r}",
                        'use "maildir" (local files) or "smtp"')
