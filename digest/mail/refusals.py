"""Whose fault is a 5xx: the relay refusing our whole session (no login, a relay that does not
relay for us, a refused sender or host), or one recipient's mailbox? Pure rules over the
replies the SMTP transport saw, and the words (what happened, the likely fix) the operator
gets when a session-level refusal stops a run.

Why it matters: a relay that refuses every RCPT (`554 5.7.1 Relay access denied`, what a
forgotten SMTP login looks like) would otherwise mark every subscriber bounced for good; a
`530` at MAIL FROM would mark every edition permanently failed."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Stages whose 5xx refuses the session, whoever the recipient: nothing about one mailbox has
# been said yet when the greeting, EHLO, STARTTLS, AUTH or MAIL FROM is refused.
SESSION_STAGES = ("connect", "EHLO", "STARTTLS", "AUTH", "MAIL")
# Alike refusals in a row, nothing accepted in between, that make it the relay's refusal,
# not the recipients': policy-looking RCPT refusals (even after earlier acceptances), DATA
# refusals before anything was delivered and policy-looking ones after. Replies about one
# mailbox (`recipient_specific`) never count, nor RCPT replies that do not read as policy
# (`550 mailbox unavailable` for three dead mailboxes is three bounces): those decide only
# at the end of a batch with nothing accepted, "all of them, the same way" (`all_the_same`).
SAME_REFUSALS = 3

_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_POLICY_WORDS = re.compile(r"relay|auth|login|credential|not permitted|access denied|"
                           r"starttls|tls required|sender|dmarc|\bspf\b|dkim|policy",
                           re.IGNORECASE)
# An account's sending quota (`550 5.4.5 Daily user sending quota exceeded`), not a full
# mailbox (X.2.2 `over quota` is the recipient's).
_QUOTA = re.compile(r"quota|sending limit|rate limit", re.IGNORECASE)
# The message itself was refused (its content or size): final for it, whatever the code.
_CONTENT_WORDS = re.compile(r"spam|unsolicited|content|virus|malware|attachment|too large|"
                            r"too big|size", re.IGNORECASE)
# Statuses about the recipient's mailbox (RFC 3463, RFC 7505): X.1.1 bad destination
# mailbox, X.1.2 bad destination system, X.1.3 bad mailbox syntax, X.1.4 ambiguous, X.1.5
# (valid), X.1.6 moved, X.1.10 null MX; X.2.1 mailbox disabled, X.2.2 mailbox full. Not
# X.1.0 (Postfix's "Sender address rejected"), X.1.7 / X.1.8 (our sender's address/system).
_RECIPIENT_STATUSES = {(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 10),
                       (2, 1), (2, 2)}
_ADDRESS = re.compile(r"<[^<>\s]*@[^<>\s]*>:?|[^\s<>:;,()\[\]]+@[^\s<>:;,()\[\]]+:?")


@dataclass(frozen=True)
class Refusal:
    """A 5xx (or a refused login) from the relay: at which stage, its code and its text."""

    stage: str  # "connect" | "EHLO" | "STARTTLS" | "AUTH" | "MAIL" | "RCPT" | "DATA"
    code: int
    message: str

    @property
    def reply(self) -> str:
        return f"{self.code} {self.message}".strip()


def enhanced_status(message: str) -> tuple[int, int, int] | None:
    """The RFC 3463 status a reply text starts with (`5.7.1 Relay access denied` → (5, 7, 1))."""
    m = _ENHANCED.match(message or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def recipient_specific(code: int, message: str) -> bool:
    """A refusal about this mailbox itself (X.1.1–X.1.6, X.1.10: no such user, bad domain;
    X.2.1, X.2.2: disabled, full): a bounce, whatever other recipients got. Never when the
    reply is about our sender (`5.1.0 <bounces+…>: Sender address rejected`, 5.1.7, 5.1.8)."""
    status = enhanced_status(message)
    return (status is not None and status[1:] in _RECIPIENT_STATUSES
            and "sender" not in (message or "").lower())


def reply_key(code: int, message: str, recipient: str = "") -> str:
    """The reply with every address taken out (Postfix writes `554 5.7.1 <a@example.org>:
    Relay access denied`, and with VERP `<bounces+a=example.org@…>: Sender address
    rejected`), so the same refusal of two recipients, or of two envelope senders, compares
    equal."""
    text = message or ""
    if recipient:
        text = re.sub(r"<?" + re.escape(recipient) + r">?:?", "", text, flags=re.IGNORECASE)
    text = _ADDRESS.sub("", text)
    return f"{code} " + " ".join(text.split()).lower()


def looks_like_policy(code: int, message: str, stage: str = "RCPT") -> bool:
    """A refusal that reads as the relay's policy rather than one mailbox's or one message's:
    530, words such as relay, auth, access denied, sender, DMARC, an account's sending quota,
    and at RCPT any X.7.x security/policy status. At DATA a bare X.7.x is not enough
    (`5.7.1 message refused as spam` is about that message), nor are words about the
    message's content or size."""
    text = message or ""
    status = enhanced_status(text)
    if code == 530:
        return True
    if stage == "DATA":
        return bool(_POLICY_WORDS.search(text)) and not _CONTENT_WORDS.search(text)
    mailbox = status is not None and status[1] == 2  # X.2.2 "over quota": a full mailbox
    sender = status is not None and status[1:] in ((1, 7), (1, 8))  # our sender's address
    return (status is not None and status[1] == 7) or sender or \
        bool(_POLICY_WORDS.search(text)) or (not mailbox and bool(_QUOTA.search(text)))


def all_the_same(refusals: list[tuple[Refusal, str]]) -> bool:
    """Every recipient (or message) of the run refused with the same reply (`(refusal,
    recipient)` pairs, nothing accepted): two or more alike, or one that reads as policy."""
    if not refusals:
        return False
    keys = {reply_key(r.code, r.message, rcpt) for r, rcpt in refusals}
    if len(keys) != 1:
        return False
    first = refusals[0][0]
    return len(refusals) >= 2 or looks_like_policy(first.code, first.message, first.stage)


def _where(refusal: Refusal) -> str:
    return {"connect": "the greeting", "MAIL": "MAIL FROM",
            "RCPT": "RCPT TO (recipients refused alike)",
            "DATA": "DATA (messages refused alike)"}.get(refusal.stage, refusal.stage)


def describe(refusal: Refusal, username: str = "") -> str:
    """One line quoting the server: what it refused and where."""
    if refusal.stage == "AUTH":
        return f"SMTP login refused for user {username!r}: {refusal.reply}"
    return f"the relay refused the session: {refusal.reply} at {_where(refusal)}"


def session_hint(refusal: Refusal, *, password_env: str = "DIGEST_SMTP_PASSWORD",
                 username: str = "", sender: str = "", host: str = "") -> str:
    """The likely fix for a session-level refusal, in config.toml terms."""
    text = refusal.message.lower()
    login = (f"set [smtp] username and export {password_env}=… (the password never goes in "
             "config.toml)")
    status = enhanced_status(refusal.message)
    after = " Nothing was marked bounced or final: rerun `digest send` after the fix."
    if refusal.stage == "AUTH":
        return (f"check [smtp] username and the password in ${password_env}; the relay "
                "refused them." + after)
    if "starttls" in text or "tls required" in text or "encryption" in text:
        return ('the relay wants an encrypted session first: set [smtp] security = "starttls" '
                '(port 587) or "tls" (port 465).' + after)
    if refusal.code == 530 or "auth" in text or (status == (5, 7, 0)):
        if username:
            return (f"the relay wants a login and did not take ours: check [smtp] username and "
                    f"${password_env}, and that security allows AUTH." + after)
        return (f"{refusal.code} at {_where(refusal)}: the relay wants a login: {login}."
                + after)
    if refusal.stage == "connect":
        return (f"the server at {host or '[smtp] host'} refuses this machine: check [smtp] host "
                "and port, and that this host's address is allowed (not on a block list)." + after)
    if refusal.stage == "EHLO":
        return ("the server refused our EHLO name: set [smtp] helo to this host's public DNS "
                "name (one whose address has a matching PTR record)." + after)
    if refusal.stage == "STARTTLS":
        return ('STARTTLS was refused: try security = "tls" on port 465, or check [smtp] port.'
                + after)
    if refusal.stage == "MAIL":
        if refusal.code == 552 or status == (5, 3, 4):
            return ("the relay refuses messages this large: lower [[digests]] max_stories." + after)
        return (f"the relay refuses the envelope sender {sender or '([smtp] sender)'}: set [smtp] "
                f"sender to an address at a domain this relay sends for, or {login}." + after)
    if refusal.stage == "RCPT":
        if "sender" in text or status in ((5, 1, 7), (5, 1, 8)):
            return ("the relay refuses our envelope sender at RCPT: set [smtp] sender (and "
                    "[bounces] return_path, if set) to an address at a domain this relay sends "
                    f"for, or {login}." + after)
        if _QUOTA.search(text):
            return ("the relay's sending quota for this account is used up: rerun `digest "
                    "send` once it resets, or ask its admin for a higher limit." + after)
        if "relay" in text:
            return (f"the relay does not relay for us (a missing login looks like this): {login}; "
                    "or ask its admin to allow this host." + after)
        return ("the relay refused every recipient the same way: read its reply above; if it "
                f"wants a login, {login}." + after)
    if refusal.stage == "DATA":
        return ("the relay refused every message the same way: read its reply; often a "
                "sender policy (SPF/DKIM/DMARC, see docs/OPERATIONS.md, Deliverability)." + after)
    return "fix the relay settings its reply points at." + after
