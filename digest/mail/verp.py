"""VERP addresses (pure; the secret is passed in): the envelope sender that names one
subscriber's edition, and the List-Unsubscribe mailto address, both signed.

    bounces+<who>-<yyyymmdd>-<dg>-<mac>@domain     a digest's envelope sender (35-char token)
    bounces+unsub-<who>-<mac>@domain               the List-Unsubscribe mailto (33 chars)

`who` is an HMAC of the address (10 base32 characters), not the address: addresses may be
254 characters and RFC 5321 allows 64 in a local part, so the token cannot carry them. The
bounce run resolves `who` against the stored subscribers (`subscriber_index`) and then checks
the full `mac`, which covers digest, edition and address: a forged, truncated or tampered
token resolves to nobody. Base32 lowercase, so a mail system that folds the case of the local
part changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WHO_CHARS = 10  # 50 bits: a collision among 100k addresses is ~1 in 200,000 (and harmless:
# the MAC is checked against every candidate)
DIGEST_CHARS = 4
MAC_CHARS = 10  # 50 bits: guessing one needs ~10^15 mails sent to us
UNSUB_MAC_CHARS = 16  # 80 bits: an unsubscribe is a state change anyone could try to forge
UNSUB = "unsub"
_TOKEN = re.compile(r"([a-z2-7]{10})-(\d{8})-([a-z2-7]{4})-([a-z2-7]{10})")
_UNSUB = re.compile(r"unsub-([a-z2-7]{10})-([a-z2-7]{16})")
_EDITION = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def _b32(data: bytes, n: int) -> str:
    return base64.b32encode(data).decode("ascii").lower().rstrip("=")[:n]


def _mac(secret: bytes, *parts: str) -> bytes:
    return hmac.new(secret, "\x00".join(parts).encode("utf-8"), hashlib.sha256).digest()


def who(secret: bytes, email: str) -> str:
    """The short keyed id of an address (what a token carries instead of it)."""
    return _b32(_mac(secret, "verp-who", email.lower()), WHO_CHARS)


def digest_tag(name: str) -> str:
    """4 base32 characters naming a [[digests]] table (resolved against the config)."""
    return _b32(hashlib.sha256(name.encode("utf-8")).digest(), DIGEST_CHARS)


def split(address: str) -> tuple[str, str]:
    """`bounces@example.org` → ("bounces", "example.org")."""
    local, _, domain = address.strip().rpartition("@")
    return local, domain.lower()


def bounce_address(return_path: str, secret: bytes, digest: str, edition: str,
                   email: str) -> str:
    """The envelope sender of `digest`'s `edition` to `email`; ValueError when the edition is
    not a date (editions are subscriber-local dates, YYYY-MM-DD)."""
    m = _EDITION.fullmatch(edition)
    if m is None:
        raise ValueError(f"edition {edition!r} is not YYYY-MM-DD")
    local, domain = split(return_path)
    ed = "".join(m.groups())
    mac = _b32(_mac(secret, "verp", digest, edition, email.lower()), MAC_CHARS)
    return f"{local}+{who(secret, email)}-{ed}-{digest_tag(digest)}-{mac}@{domain}"


def unsubscribe_address(return_path: str, secret: bytes, email: str) -> str:
    """The List-Unsubscribe mailto address of `email` (never expires, like the link)."""
    local, domain = split(return_path)
    mac = _b32(_mac(secret, "verp-unsub", email.lower()), UNSUB_MAC_CHARS)
    return f"{local}+{UNSUB}-{who(secret, email)}-{mac}@{domain}"


@dataclass(frozen=True)
class Token:
    """A token read from an address (structure only: nothing is verified yet)."""

    kind: str  # "bounce" | "unsubscribe"
    who: str
    mac: str
    edition: str = ""  # YYYY-MM-DD (bounce)
    digest_tag: str = ""  # (bounce)


def parse(address: str, return_path: str) -> Token | None:
    """The token in `address` when it is `return_path` with a `+token` of ours, else None."""
    base_local, base_domain = split(return_path)
    local, domain = split(address.strip().strip("<>"))
    if not base_local or domain != base_domain:
        return None
    prefix = base_local.lower() + "+"
    if not local.lower().startswith(prefix):
        return None
    tail = local[len(prefix):].lower()
    m = _UNSUB.fullmatch(tail)
    if m:
        return Token("unsubscribe", m.group(1), m.group(2))
    m = _TOKEN.fullmatch(tail)
    if m:
        d = m.group(2)
        return Token("bounce", m.group(1), m.group(4), f"{d[:4]}-{d[4:6]}-{d[6:]}", m.group(3))
    return None


def verify(token: Token, secret: bytes, email: str, digests: Sequence[str] = ()) -> str | None:
    """Does `token` belong to `email`? For a bounce token, the digest name (one of
    `digests`) it was minted for; "" for an unsubscribe token; None when it does not verify."""
    if not hmac.compare_digest(token.who, who(secret, email)):
        return None
    if token.kind == "unsubscribe":
        mac = _b32(_mac(secret, "verp-unsub", email.lower()), UNSUB_MAC_CHARS)
        return "" if hmac.compare_digest(token.mac, mac) else None
    for name in digests:
        if digest_tag(name) != token.digest_tag:
            continue
        mac = _b32(_mac(secret, "verp", name, token.edition, email.lower()), MAC_CHARS)
        if hmac.compare_digest(token.mac, mac):
            return name
    return None


def subscriber_index(secret: bytes, emails: Iterable[str]) -> dict[str, list[str]]:
    """`who` → the addresses with that id (usually one): how a token finds its subscriber."""
    out: dict[str, list[str]] = {}
    for email in emails:
        out.setdefault(who(secret, email), []).append(email)
    return out
