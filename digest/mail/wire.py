"""Message bytes: link markers, `RenderedBody`, sender and Message-ID headers, and
`MessageWriter.build_message`, the RFC 5322 multipart message with per-recipient splices."""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, formataddr, parseaddr

from digest.mail.subjects import clean
from digest.subscribers import InvalidAddress, normalize_email

# Per-subscriber values are spliced into a body rendered once per distinct content.
# They are plain ASCII, survive autoescaping and CSS inlining, and `clean` defuses them in
# story text, so a story cannot plant a marker.
UNSUB_MARK = "%%DIGEST-UNSUBSCRIBE-URL%%"
PREFS_MARK = "%%DIGEST-PREFERENCES-URL%%"
ADDR_MARK = "%%DIGEST-RECIPIENT%%"


def sender_parts(sender: str) -> tuple[str, str]:
    """`AI News <digest@example.com>` → (display name, address); validates the address."""
    if any(c in sender for c in "\r\n"):
        raise InvalidAddress("[smtp] sender: line breaks are not allowed",
                             'set sender = "Name <address@example.com>" in config.toml')
    name, addr = parseaddr(sender)
    return clean(name), normalize_email(addr, "[smtp] sender", local_ok=True)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def message_id(digest: str, edition: str, email: str, domain: str) -> str:
    """Deterministic per (digest, edition, subscriber): a resend is recognisably the same."""
    h = hashlib.sha256(f"{digest}\x00{edition}\x00{email}".encode()).hexdigest()[:32]
    return f"<{h}@{domain}>"


@dataclass(frozen=True)
class RenderedBody:
    """One digest body shared by every subscriber with the same content; per-subscriber
    links and the address are markers until `build_message`."""

    text: str
    html: str
    story_ids: tuple[str, ...]
    boundary: str
    subject: str  # already RFC 2047-encoded
    html_lang: str
    archived_at: str = ""  # the public copy (`view_url`): the Archived-At header (RFC 5064)
    # Per part: the base64 lines of its text up to the first per-subscriber marker, cut at
    # a whole line (57 bytes → 76 chars), so each message encodes only the tail; and
    # "prepared": the recipient-independent header pieces as bytes. Filled by the first
    # build_message; the bytes equal building the whole message every time.
    encoded: dict[str, tuple] = field(default_factory=dict, compare=False, repr=False)


def _boundary(key: str) -> str:
    # "=_" never occurs in base64 bodies, so the boundary cannot collide with content.
    return "==_digest_" + hashlib.sha256(key.encode()).hexdigest()[:24]


class MessageWriter:
    """The sender's headers, computed once; `build_message` turns a body into the bytes."""

    def __init__(self, sender: str, list_name: str = "daily") -> None:
        name, addr = sender_parts(sender)
        self.sender_addr = addr
        self.domain = domain_of(addr)
        self.from_header = formataddr((name, addr), charset="utf-8") if name else addr
        if any(c in self.from_header for c in "\r\n"):
            raise InvalidAddress("[smtp] sender: cannot be encoded", "simplify the display name")
        slug = re.sub(r"[^a-z0-9-]+", "-", list_name.lower()).strip("-")[:40] or "digest"
        self.list_id = f"{slug} <{slug}.{self.domain}>"
        self._date: tuple[datetime | None, str] = (None, "")

    def build_message(self, body: RenderedBody, to: str, msg_id: str, date: datetime,
                      unsubscribe_url: str = "", preferences_url: str = "",
                      unsubscribe_mailto: str = "") -> bytes:
        """The full RFC 5322 message (CRLF line ends): headers as bytes around the body.

        `to` must already be validated (normalize_email); the URLs are built from our own
        base_url and URL-safe tokens, so nothing untrusted reaches a header.
        `unsubscribe_mailto` (`addr?subject=…`, the signed VERP address of mail/verp.py)
        replaces the sender's address in List-Unsubscribe's mailto.
        """
        mailto = unsubscribe_mailto or f"{self.sender_addr}?subject=unsubscribe"
        if any(c in to for c in "\r\n<>,;") or any(c in unsubscribe_url + mailto
                                                   for c in "\r\n<> "):
            raise InvalidAddress(f"refusing unsafe header value for {to[:80]!r}",
                                 "validate addresses with normalize_email first")
        url = body.archived_at
        archived = bool(url and url.isascii() and not any(c in url for c in "\r\n<> "))
        key = (self.from_header, self.list_id, date)
        pre = body.encoded.get("prepared")
        if pre is None or pre[0] != key:  # recipient-independent pieces, once per body
            if self._date[0] != date:  # one run stamps every message with the same time
                self._date = (date, format_datetime(date))
            b = body.boundary
            lead = f"From: {self.from_header}\r\nTo: ".encode("ascii")
            mid_part = f"\r\nSubject: {body.subject}\r\nDate: {self._date[1]}\r\nMessage-ID: " \
                .encode("ascii")
            after = f"\r\nArchived-At: <{url}>" if archived else ""  # RFC 5064: the web copy
            mime = (f"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; "
                    f'boundary="{b}"\r\n\r\nThis is a multi-part message in MIME format.\r\n')
            listed = (f"{after}\r\nList-Id: {self.list_id}\r\nList-Unsubscribe: <").encode("ascii")
            tail = ("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                    "Precedence: bulk\r\nAuto-Submitted: auto-generated" + mime).encode("ascii")
            pre = body.encoded["prepared"] = (key, lead, mid_part, listed, tail,
                                              (after + mime).encode("ascii"),
                                              f"--{b}--\r\n".encode("ascii"))
        _, lead, mid_part, listed, tail, plain, end = pre
        if unsubscribe_url:
            head = [lead, to.encode("ascii"), mid_part, msg_id.encode("ascii"), listed,
                    unsubscribe_url.encode("ascii"), b">,\r\n <mailto:", mailto.encode("ascii"),
                    b">", tail]
        else:
            head = [lead, to.encode("ascii"), mid_part, msg_id.encode("ascii"), plain]
        # An address may hold `&` or `'` (dot-atom); the HTML part gets it escaped.
        return b"".join((
            *head,
            *_part(body, "text/plain", body.text, (unsubscribe_url, preferences_url, to)),
            *_part(body, "text/html", body.html,
                   (unsubscribe_url, preferences_url, html_lib.escape(to))),
            end,
        ))



def personalize(content: str, unsubscribe_url: str, preferences_url: str, address: str) -> str:
    """Replace the per-subscriber markers (`address` already escaped for the part)."""
    return (content.replace(UNSUB_MARK, unsubscribe_url).replace(PREFS_MARK, preferences_url)
            .replace(ADDR_MARK, address))


_LINE = 57  # bytes per 76-character base64 line (RFC 2045)
_MARKS = (UNSUB_MARK, PREFS_MARK, ADDR_MARK)


def _b64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"\r\n".join([encoded[i:i + 76] for i in range(0, len(encoded), 76)])


def _part(body: RenderedBody, ctype: str, content: str, links: tuple[str, str, str]
          ) -> tuple[bytes, bytes, bytes]:
    """One base64 MIME part with the subscriber's links and address spliced in, as pieces
    to join: the cached head (boundary, part headers, shared lines), the encoded tail, the
    line end."""
    cached = body.encoded.get(ctype)
    if cached is None:
        marks = [i for i in (content.find(m) for m in _MARKS) if i >= 0]
        first = min(marks, default=len(content))
        head = content[:first].encode("utf-8")
        cut = len(head) // _LINE * _LINE
        prefix = (f"--{body.boundary}\r\nContent-Type: {ctype}; charset=\"utf-8\"\r\n"
                  f"Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii")
        shared = _b64_lines(head[:cut])
        cached = body.encoded[ctype] = (prefix + shared + b"\r\n" if shared else prefix,
                                        head[cut:], content[first:], bool(shared))
    start, carry, tail, shared_lines = cached
    rest = _b64_lines(carry + personalize(tail, *links).encode("utf-8"))
    if rest:
        return start, rest, b"\r\n"
    return start, b"", b"" if shared_lines else b"\r\n"
