"""The cached base64 of a shared body: every message is byte for byte what encoding each
part whole (links spliced in first) gives, wherever the markers fall."""

from __future__ import annotations

import base64
import html as html_lib
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.mail.render import ADDR_MARK, PREFS_MARK, UNSUB_MARK, RenderedBody, Renderer
from digest.mail.transports import wire_data
from tests.support.send import story


def _whole_part(boundary: str, ctype: str, content: str) -> bytes:
    """The reference: the pre-cache encoder, one full base64 pass per message."""
    encoded = base64.b64encode(content.encode("utf-8"))
    lines = b"\r\n".join([encoded[i:i + 76] for i in range(0, len(encoded), 76)])
    return (f"--{boundary}\r\nContent-Type: {ctype}; charset=\"utf-8\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii") + lines + b"\r\n"


_TEXT = st.lists(st.sampled_from(["a", "中", "é", "\n", "😀", " ", UNSUB_MARK, PREFS_MARK,
                                  ADDR_MARK, "x" * 56, "y" * 57]), max_size=40).map("".join)
_RENDERER = Renderer("https://news.example.org/", "AI News", "digest@example.org")
_NOW = datetime(2026, 4, 13, 7, 0, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(_TEXT, _TEXT, st.lists(st.sampled_from(["u1", "u22", "u333", "o'n&"]), min_size=2,
                              max_size=4))
def test_cached_parts_equal_whole_encoding(text: str, html: str, who: list[str]) -> None:
    body = RenderedBody(text=text, html=html, story_ids=("a",), boundary="==_digest_x",
                        subject="s", html_lang="en")
    for name in who:  # several subscribers share the body: the cache must not leak links
        unsub = f"https://news.example.org/unsubscribe?t={name}"
        prefs = f"https://news.example.org/preferences?t={name}{name}"
        msg = _RENDERER.build_message(body, f"{name}@example.com", "<m@x>", _NOW, unsub, prefs)
        to = f"{name}@example.com"
        parts = b"".join(
            _whole_part(body.boundary, ctype, content.replace(UNSUB_MARK, unsub)
                        .replace(PREFS_MARK, prefs).replace(ADDR_MARK, addr))
            for ctype, content, addr in (("text/plain", text, to),
                                         ("text/html", html, html_lib.escape(to))))
        assert msg.endswith(parts + f"--{body.boundary}--\r\n".encode())
        assert f"To: {name}@example.com\r\n".encode() in msg
        # What Envelope(wire_ready=True) promises the transport: nothing to fix.
        assert wire_data(msg) == wire_data(msg, ready=True)


def test_real_digest_messages_are_wire_ready() -> None:
    stories = [story("s1", ["en", "zh-Hans"],
                     {"en": ".dot\r\n.lead\nEvil: x", "zh-Hans": "。中文\r\n.标题"},
                     {"en": [".a", "b\n.c"], "zh-Hans": ["。要点"]}, tags=[".t"]),
               story("s2", ["en"], {"en": "Plain"}, {"en": ["one"]})]
    renderer = Renderer("https://news.example.org/", "AI News 日报",
                        "AI News <digest@example.org>")
    for langs in (["en"], ["zh"], ["en", "zh"]):
        body = renderer.render_digest(stories, langs, "2026-04-13", "daily")
        msg = renderer.build_message(body, "r@example.com", "<m@x>", _NOW,
                                     "https://news.example.org/unsubscribe?t=a",
                                     "https://news.example.org/preferences?t=b")
        assert wire_data(msg) == wire_data(msg, ready=True)
