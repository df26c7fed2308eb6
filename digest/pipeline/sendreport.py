"""`SendReport`: what a send did, per subscriber, and its human report lines."""

from __future__ import annotations

from dataclasses import dataclass, field

from digest.pipeline.reporting import REPORT_LIST_MAX, capped


@dataclass
class SendReport:
    digest: str
    dry_run: bool = False
    sent: list[str] = field(default_factory=list)
    would_send: list[tuple[str, str, int]] = field(default_factory=list)  # email, edition, n
    failed: list[tuple[str, str]] = field(default_factory=list)  # email, reason
    bounced: list[tuple[str, str]] = field(default_factory=list)
    ambiguous: list[tuple[str, str]] = field(default_factory=list)  # email, message-id
    nothing_new: list[str] = field(default_factory=list)
    given_up: list[tuple[str, str]] = field(default_factory=list)  # email, reason (permanent)
    waiting: list[tuple[str, str, str]] = field(default_factory=list)  # email, reason, retry at
    already_sent: int = 0
    not_due: int = 0
    elsewhere: int = 0  # planned here, but claimed by another sender (shared store)
    renders: int = 0  # distinct bodies rendered (the rest were reused)
    # The relay refused the session (a missing login, a relay that does not relay for us):
    # the run stopped, nobody was marked bounced, nothing final; `stop_hint` is the fix.
    stopped: str = ""
    stop_hint: str = ""
    why: dict[str, str] = field(default_factory=dict)  # email → why nothing new
    active: int | None = None  # active subscribers seen (None: not counted)
    other_digests: int = 0  # active, but chose other digests (Subscriber.digests)
    editions: list[str] = field(default_factory=list)  # public pages recorded: date/langs
    published: str = ""  # the publish after the send (edition pages): its summary or error

    def lines(self) -> list[str]:
        """Human report: a summary, then who did not get the edition and why."""
        verb = "would send" if self.dry_run else "sent"
        n = len(self.would_send) if self.dry_run else len(self.sent)
        out = [f"{self.digest}: {verb} {n}, already sent {self.already_sent}, "
               f"nothing new {len(self.nothing_new)}, not due {self.not_due}, "
               f"failed {len(self.failed)}, bounced {len(self.bounced)} "
               f"({self.renders} distinct bodies rendered)"]
        if self.given_up or self.waiting:
            out[0] += (f"; not retried (permanent) {len(self.given_up)}, "
                       f"retry later {len(self.waiting)}")
        if self.elsewhere:
            out[0] += f"; claimed by another sender {self.elsewhere}"
        if self.other_digests:
            out[0] += f"; chose other digests {self.other_digests}"
        if self.stopped:
            out[0] += "; STOPPED: the relay refused the session"
            out += [f"  stopped: {self.stopped}", f"  hint: {self.stop_hint}"]

        capped(out, self.would_send, lambda x: f"  would send {x[0]} edition {x[1]} ({x[2]} stories)")
        capped(out, self.failed, lambda x: f"  not delivered to {x[0]}: {x[1]}"
                                    + ("" if x[1].endswith(_FINAL) else " (a rerun retries it)"))
        capped(out, self.given_up, lambda x: f"  not delivered to {x[0]}: {x[1]} (permanent: this "
                                      "edition is not retried)")
        capped(out, self.waiting, lambda x: f"  not delivered to {x[0]} yet: {x[1]} (next try after "
                                     f"{x[2]})")
        capped(out, self.bounced, lambda x: f"  bounced {x[0]}: {x[1]} (subscriber marked bounced)")
        capped(out, self.ambiguous, lambda x: f"  resent {x[0]} after an unconfirmed attempt, "
                                       f"same Message-ID {x[1]}")
        capped(out, self.nothing_new, lambda x: f"  nothing new for {x}: no email ("
                                         f"{self.why.get(str(x), 'no story qualifies')})")
        if self.active == 0:
            out.append("  no active subscribers: add one with `digest subscribers add EMAIL`")
        if self.editions:
            out.append(f"  new edition pages: {', '.join(self.editions[:REPORT_LIST_MAX])}")
        if self.published:
            out.append(f"  {self.published}")
        return out


_FINAL = "(permanent: not retried)"
