"""`clean_lines` (one pass over a whole card) is `clean_line` of each line, exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from digest.ingest.text import clean_line, clean_lines

# The characters the cleaning is about, among ordinary and CJK text and line ends.
_SPECIAL = "\n\r\t \x00\x07\x0b\x0c\x1f\x7f\x85\x9f\u200b\u200c\u200d\u2060\ufeff" \
           "\u202a\u202e\u2066\u2069\ufffe\uffffaZ9中文\u3000"


@given(st.text(alphabet=st.sampled_from(_SPECIAL) | st.characters(), max_size=300))
def test_clean_lines_is_clean_line_per_line(text: str) -> None:
    assert clean_lines(text) == [clean_line(raw) for raw in text.split("\n")]


def test_clean_lines_on_a_card() -> None:
    text = "AI News 9h ago\n\t\u202eTitle \u200b\n\n  body\x07 text \ufeff\n"
    assert clean_lines(text) == ["AI News 9h ago", "Title", "", "body text", ""]
