"""What every transport speaks: `Envelope` in, `Outcome` out, the `Transport` facade."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from digest.mail.refusals import Refusal


@dataclass(frozen=True)
class Envelope:
    """One message for one recipient; `data` is the full message with CRLF line ends."""

    sender: str
    recipient: str
    data: bytes
    # The builder vouches that `data` has CRLF line ends only, ends with CRLF and has no
    # line starting with "." (wire.build_message: headers, boundaries, base64), so the
    # SMTP transport sends it as is instead of scanning ~44 KB three times per message.
    wire_ready: bool = False


@dataclass
class Outcome:
    recipient: str
    state: str  # "sent" | "failed" | "bounced"
    reason: str = ""
    attempts: int = 1
    ambiguous: bool = False  # the connection dropped after DATA may have been accepted
    # A 5xx at MAIL FROM or DATA: the server refused this message for good (content, size,
    # sender policy); resending the same edition would only be refused again.
    permanent: bool = False
    # Not sent because the relay refused the whole session (Transport.refusal): not this
    # recipient's fault and not final; the next run, after the fix, sends it.
    session: bool = False
    # The server's 5xx (stage, code, text) when it refused; None otherwise.
    refused: Refusal | None = field(default=None, repr=False)


OnOutcome = Callable[[int, Outcome], None]


class Transport:
    """Sync facade: `send(envelopes) -> outcomes` in the same order; close when done.

    `on_outcome(index, outcome)` is called as each message finishes (in the caller's thread
    of control), so the caller can journal results before the whole batch is done.

    `refusal` is set once the relay refused the session (refusals.py): every later message
    fails at once with `Outcome.session`, and the caller should stop its run.

    `submit(envelopes) -> Future` is the same send started in the background, where the
    transport can (SmtpTransport: its event loop's thread, which then calls `on_outcome`);
    here it sends before it returns a Future that is already done, raising what `send`
    raises. Read `refusal` once the Future is done."""

    refusal: Refusal | None = None

    def send(self, envelopes: Sequence[Envelope], on_outcome: OnOutcome | None = None
             ) -> list[Outcome]:
        raise NotImplementedError

    def submit(self, envelopes: Sequence[Envelope], on_outcome: OnOutcome | None = None
               ) -> Future[list[Outcome]]:
        done: Future[list[Outcome]] = Future()
        done.set_result(self.send(envelopes, on_outcome))
        return done

    def close(self) -> None:
        pass

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

