"""The Maildir transport (owns mailbox): each message becomes a file in a local Maildir."""

from __future__ import annotations

import mailbox
from collections.abc import Sequence
from pathlib import Path

from digest.errors import DeliveryError
from digest.mail.transports.base import Envelope, OnOutcome, Outcome, Transport


class MaildirTransport(Transport):
    """Writes each message into a local Maildir (stdlib mailbox): the no-server default."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # Maildir makes one level only
            self.box = mailbox.Maildir(str(self.path), create=True)
        except OSError as e:
            raise DeliveryError(f"[smtp] maildir: cannot create {self.path}: {e.strerror}",
                                "set [smtp] maildir to a writable directory") from e

    def send(self, envelopes: Sequence[Envelope], on_outcome: OnOutcome | None = None
             ) -> list[Outcome]:
        out = []
        for i, env in enumerate(envelopes):
            try:
                # Maildir files use the platform's line ends, not SMTP's CRLF.
                self.box.add(env.data.replace(b"\r\n", b"\n"))
                out.append(Outcome(env.recipient, "sent"))
            except OSError as e:
                out.append(Outcome(env.recipient, "failed", f"maildir write: {e}"))
            if on_outcome is not None:
                on_outcome(i, out[-1])
        return out

