"""Signed link tokens: round trip, purpose binding, tampering, expiry, URL safety."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.errors import DigestError
from digest.mail.tokens import TokenError, sign, verify

KEY = b"k" * 32
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_round_trip_and_compact_url_safe() -> None:
    t = sign(KEY, "unsubscribe", "reader@example.com", None)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", t)
    assert len(t) < 80
    assert verify(KEY, "unsubscribe", t, NOW) == "reader@example.com"


@pytest.mark.parametrize("purpose", ["confirm", "prefs"])
def test_token_is_bound_to_its_purpose(purpose: str) -> None:
    t = sign(KEY, "unsubscribe", "a@example.com", None)
    with pytest.raises(TokenError):
        verify(KEY, purpose, t, NOW)


def test_other_secret_rejected() -> None:
    t = sign(KEY, "prefs", "a@example.com", None)
    with pytest.raises(TokenError):
        verify(b"other", "prefs", t, NOW)


def test_expiry() -> None:
    t = sign(KEY, "confirm", "a@example.com", NOW + timedelta(days=7))
    assert verify(KEY, "confirm", t, NOW + timedelta(days=6)) == "a@example.com"
    with pytest.raises(TokenError, match="expired") as e:
        verify(KEY, "confirm", t, NOW + timedelta(days=7, seconds=1))
    assert isinstance(e.value, DigestError) and e.value.hint


@pytest.mark.parametrize("bad", ["", ".", "abc", "abc.", ".abc", "a.b.c", "!!!.???",
                                 "x" * 5000 + ".y"])
def test_malformed(bad: str) -> None:
    with pytest.raises(TokenError):
        verify(KEY, "unsubscribe", bad, NOW)


def test_swapping_the_email_part_fails() -> None:
    a = sign(KEY, "unsubscribe", "a@example.com", None)
    b = sign(KEY, "unsubscribe", "b@example.com", None)
    forged = b.split(".")[0] + "." + a.split(".")[1]
    with pytest.raises(TokenError):
        verify(KEY, "unsubscribe", forged, NOW)


def test_unknown_purpose_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        sign(KEY, "login", "a@example.com", None)


@given(st.emails(), st.sampled_from(["confirm", "prefs", "unsubscribe"]))
def test_any_email_round_trips(addr: str, purpose: str) -> None:
    t = sign(KEY, purpose, addr, None)
    assert verify(KEY, purpose, t, NOW) == addr


@given(st.text(max_size=60))
def test_garbage_never_verifies_or_crashes(junk: str) -> None:
    with pytest.raises(TokenError):
        verify(KEY, "unsubscribe", junk, NOW)
