"""What a message in the bounce mailbox says (pure; stdlib `email` parser): an RFC 3464
delivery status notification, an RFC 5965 (ARF) feedback report, or plain mail (to the
List-Unsubscribe address, say). The bounce run (pipeline/bounces.py) decides who it is about
and what changes; this module only reads.

What a notice offers to say whom it is about (digest.pipeline.bounces decides what counts):
- `delivered_to`: the addresses it was delivered to (`Delivered-To`, `X-Original-To`,
  `Envelope-To`, `To`: a DSN goes to the failed message's envelope sender, our signed VERP
  address);
- `returned_from` and `returned_unsubscribe`: the returned original's `Return-Path` (our
  VERP envelope sender) and the URIs of its `List-Unsubscribe` (the signed `bounces+unsub-`
  mailto and the https `unsubscribe?t=` link) — our own signed data inside the report;
- `original_to`: the DSN's `Final-Recipient` / `Original-Recipient`, the complaint's
  `Original-Rcpt-To` and the returned `To`. Anyone can write these: they are shown in the
  report, never believed."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# Where the address a message was delivered to shows up, most specific first.
_DELIVERED = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")
_URI = re.compile(r"<([^<>]*)>")


class NoticeError(ValueError):
    """The message says it is a report but cannot be read as one."""


@dataclass(frozen=True)
class Recipient:
    """One per-recipient block of a DSN."""

    address: str  # Final-Recipient (else Original-Recipient), lower-cased; "" if none
    action: str  # failed | delayed | delivered | relayed | expanded (lower-cased)
    status: str  # "5.1.1"; "" when absent or unreadable
    diagnostic: str = ""

    @property
    def permanent(self) -> bool:
        """A hard bounce: the server gave up for good (5.x.x)."""
        return self.action == "failed" and self.status.startswith("5")

    @property
    def transient(self) -> bool:
        """A soft bounce: a temporary failure (4.x.x), or a delay report."""
        if self.action == "failed":
            return self.status.startswith("4") or not self.status
        return self.action == "delayed"


@dataclass(frozen=True)
class Notice:
    kind: str  # "dsn" | "complaint" | "mail"
    message_id: str
    delivered_to: tuple[str, ...]  # addresses the notice was delivered to (VERP candidates)
    recipients: tuple[Recipient, ...] = ()  # DSN blocks
    feedback_type: str = ""  # complaint: abuse, fraud, ...
    original_to: tuple[str, ...] = ()  # whom the report names (unverified; lower-cased)
    subject: str = ""
    returned_from: tuple[str, ...] = ()  # the returned original's Return-Path (lower-cased)
    returned_unsubscribe: tuple[str, ...] = ()  # URIs of its List-Unsubscribe header

    @property
    def worst(self) -> Recipient | None:
        """The DSN block that decides: a permanent failure over a temporary one."""
        for test in (lambda r: r.permanent, lambda r: r.transient):
            found = [r for r in self.recipients if test(r)]
            if found:
                return found[0]
        return None


def _text(value: object) -> str:
    return " ".join(str(value or "").split())


def _addresses(msg: Message, names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        values = [str(v) for v in (msg.get_all(name) or [])]
        for _display, addr in getaddresses(values):
            addr = addr.strip().strip("<>").lower()
            if "@" in addr and addr not in out:
                out.append(addr)
    return out


def _typed_address(value: str) -> str:
    """`rfc822; a@example.com` → `a@example.com` (the address type is optional in practice)."""
    value = _text(value)
    _type, sep, addr = value.partition(";")
    addr = (addr if sep else value).strip().strip("<>").lower()
    return addr if "@" in addr else ""


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):  # some parsers leave it as text (or it was base64)
        raw = part.get_payload(decode=True) or payload.encode("utf-8", "replace")
        text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
        return [email.message_from_string(b.strip() + "\n", policy=email.policy.compat32)
                for b in re.split(r"\n\s*\n", text) if b.strip()]
    return []


def _dsn(msg: Message) -> list[Recipient]:
    part = next((p for p in msg.walk() if p.get_content_type() in
                 ("message/delivery-status", "message/global-delivery-status")), None)
    if part is None:
        raise NoticeError("a delivery-status report without a message/delivery-status part")
    out = []
    for block in _blocks(part)[1:]:  # the first block is the per-message fields
        final = _typed_address(block.get("Final-Recipient", "")) or \
            _typed_address(block.get("Original-Recipient", ""))
        action = _text(block.get("Action", "")).lower()
        m = _STATUS.search(_text(block.get("Status", "")))
        if not (final or action or m):
            continue
        out.append(Recipient(final, action, ".".join(m.groups()) if m else "",
                             _text(block.get("Diagnostic-Code", ""))[:300]))
    if not out:
        raise NoticeError("a delivery-status report without any recipient fields")
    return out


def _returned(msg: Message) -> Message | None:
    """The returned original (message/rfc822) or its headers (text/rfc822-headers)."""
    for p in msg.walk():
        ctype = p.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            inner = p.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if ctype in ("text/rfc822-headers", "message/rfc822-headers",
                     "text/global-headers"):
            raw = p.get_payload(decode=True) or b""
            return email.message_from_bytes(raw, policy=email.policy.compat32)
    return None


def _unsubscribe_uris(msg: Message) -> list[str]:
    """The `<…>` URIs of every List-Unsubscribe header (RFC 2369), unfolded."""
    out: list[str] = []
    for value in msg.get_all("List-Unsubscribe") or []:
        for uri in _URI.findall("".join(str(value).split())):
            if uri and uri not in out:
                out.append(uri)
    return out


def parse_notice(data: bytes) -> Notice:
    """Read one message of the bounce mailbox; NoticeError when it claims to be a report
    (multipart/report) but is not a readable one."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    delivered = _addresses(msg, _DELIVERED)
    mid = _text(msg.get("Message-ID", ""))
    subject = _text(msg.get("Subject", ""))[:200]
    report = (msg.get_param("report-type") or "") if msg.get_content_type() == \
        "multipart/report" else ""
    report = str(report).lower()
    original = _returned(msg)
    returned_from: tuple[str, ...] = ()
    returned_unsubscribe: tuple[str, ...] = ()
    if original is not None:
        returned_from = tuple(_addresses(original, ("Return-Path",)))
        returned_unsubscribe = tuple(_unsubscribe_uris(original))
    if report == "feedback-report":
        part = next((p for p in msg.walk()
                     if p.get_content_type() == "message/feedback-report"), None)
        blocks = _blocks(part) if part is not None else []
        if not blocks:
            raise NoticeError("a feedback report without a message/feedback-report part")
        fields = blocks[0]
        rcpts = _addresses(fields, ("Original-Rcpt-To",))
        if original is not None:
            rcpts += [a for a in _addresses(original, ("To",)) if a not in rcpts]
        return Notice("complaint", mid, tuple(delivered),
                      feedback_type=_text(fields.get("Feedback-Type", "")).lower(),
                      original_to=tuple(rcpts), subject=subject, returned_from=returned_from,
                      returned_unsubscribe=returned_unsubscribe)
    if report == "delivery-status":
        recipients = _dsn(msg)
        fallback = [r.address for r in recipients if r.address]
        return Notice("dsn", mid, tuple(delivered), tuple(recipients),
                      original_to=tuple(dict.fromkeys(fallback)), subject=subject,
                      returned_from=returned_from, returned_unsubscribe=returned_unsubscribe)
    if report:
        raise NoticeError(f"a report of an unknown type ({report[:40]})")
    return Notice("mail", mid, tuple(delivered), subject=subject)
