"""Signed, expiring, URL-safe tokens for confirm / preferences / unsubscribe links (owns hmac)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from digest.errors import DigestError

PURPOSES = ("confirm", "prefs", "unsubscribe")
_MAC_BYTES = 16  # 128-bit tag: plenty against forgery, keeps links short
# How long a confirm link works; its issue time is then `expires - CONFIRM_LIFETIME`, which
# lets the web refuse a link older than the address's latest subscribe request.
CONFIRM_LIFETIME = timedelta(days=7)


class TokenError(DigestError):
    """A link token is malformed, forged, for another purpose, or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, body: str) -> bytes:
    # The purpose is inside the MAC, not the token: an unsubscribe token can never be
    # replayed as a confirm token, and the token stays short.
    msg = purpose.encode("ascii") + b"\x00" + body.encode("ascii")
    return hmac.new(secret, msg, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(secret: bytes, purpose: str, email: str, expires: datetime | None) -> str:
    """A token binding `email` to `purpose` until `expires` (None = never)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    exp = format(int(expires.timestamp()), "x") if expires is not None else ""
    body = _b64(f"{exp}:{email}".encode())
    return f"{body}.{_b64(_mac(secret, purpose, body))}"


def verify(secret: bytes, purpose: str, token: str, now: datetime) -> str:
    """The email a valid token was issued for; raises TokenError otherwise."""
    return decode(secret, purpose, token, now)[0]


def decode(secret: bytes, purpose: str, token: str, now: datetime) -> tuple[str, datetime | None]:
    """(email, expiry or None) of a valid token; raises TokenError otherwise."""
    hint = "ask for a fresh link (subscribe again or use the link in a newer email)"
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    body, dot, tag = (token or "").strip().partition(".")
    if not dot or not body or not tag or len(token) > 2048:
        raise TokenError("the link token is malformed", hint)
    try:
        given = _unb64(tag)
        body.encode("ascii")
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise TokenError("the link token is malformed", hint) from e
    if not hmac.compare_digest(given, _mac(secret, purpose, body)):
        raise TokenError("the link token is not valid for this page", hint)
    try:
        exp, _, email = _unb64(body).decode("utf-8").partition(":")
        expires_at = int(exp, 16) if exp else None
    except (binascii.Error, ValueError) as e:
        raise TokenError("the link token is malformed", hint) from e
    if expires_at is not None and now.timestamp() > expires_at:
        raise TokenError("the link has expired", hint)
    return email, (datetime.fromtimestamp(expires_at, UTC) if expires_at is not None else None)


def confirm_issued(expires: datetime | None) -> datetime | None:
    """When a confirm token was issued (its expiry minus CONFIRM_LIFETIME; None if it never expires)."""
    return expires - CONFIRM_LIFETIME if expires is not None else None
