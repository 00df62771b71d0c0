"""Search values split on unescaped separators (``\\,`` ``\\|`` ``\\$`` stay literal)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hub.search.criteria import split_token, split_values


def by_character(raw: str, sep: str) -> list[str]:
    """The rule spelled out one character at a time: the oracle for the run-wise splitter."""
    out, buf, i = [], [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            buf.append(raw[i + 1])
            i += 2
            continue
        if ch == sep:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    out.append("".join(buf))
    return out


@given(st.text(alphabet="ab,|$\\\n 中", max_size=30), st.sampled_from([",", "|", "$"]))
def test_split_values_follows_the_rule(raw: str, sep: str) -> None:
    assert split_values(raw, sep) == by_character(raw, sep)


def test_a_feed_identifier_with_escaped_bars() -> None:
    assert split_token("https://ygt.example.org/sid/obx|LAB1\\|HGB\\|") == (
        "https://ygt.example.org/sid/obx",
        True,
        "LAB1|HGB|",
    )
    assert split_values("a\\,b,c\\") == ["a,b", "c\\"]
