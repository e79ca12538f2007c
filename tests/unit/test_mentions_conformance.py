"""twitter-text's own conformance cases for mentions and replies, run against bot.mentions.

The cases are read at test time from ``../shared/conformance/twitter-text-extract.yml``
(beside the repository), so an update of the suite is picked up without copying it here.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.mentions import (
    extract_mentions,
    extract_mentions_or_lists_with_indices,
    extract_mentions_with_indices,
    extract_reply_username,
)

CONFORMANCE = (
    Path(__file__).resolve().parents[3] / "shared" / "conformance" / "twitter-text-extract.yml"
)
GROUPS = ("mentions", "mentions_with_indices", "mentions_or_lists_with_indices", "replies")


@cache
def _suite() -> dict[str, list[dict[str, Any]]]:
    data = yaml.safe_load(CONFORMANCE.read_text(encoding="utf-8"))
    return {group: data["tests"][group] for group in GROUPS}


def _cases(group: str) -> list[Any]:
    if not CONFORMANCE.exists():
        reason = f"twitter-text conformance file not found at {CONFORMANCE}"
        return [pytest.param({}, id="conformance-file-absent", marks=pytest.mark.skip(reason))]
    return [pytest.param(case, id=case["description"]) for case in _suite()[group]]


@pytest.mark.parametrize("case", _cases("mentions"))
def test_mentions_are_extracted_as_twitter_text_does(case: dict[str, Any]) -> None:
    assert extract_mentions(case["text"]) == case["expected"]


@pytest.mark.parametrize("case", _cases("mentions_with_indices"))
def test_mentions_come_with_twitter_text_indices(case: dict[str, Any]) -> None:
    expected = [(e["screen_name"], e["indices"][0], e["indices"][1]) for e in case["expected"]]
    assert extract_mentions_with_indices(case["text"]) == expected


@pytest.mark.parametrize("case", _cases("mentions_or_lists_with_indices"))
def test_mentions_and_lists_come_with_twitter_text_indices(case: dict[str, Any]) -> None:
    expected = [
        (e["screen_name"], e["list_slug"], e["indices"][0], e["indices"][1])
        for e in case["expected"]
    ]
    assert extract_mentions_or_lists_with_indices(case["text"]) == expected


@pytest.mark.parametrize("case", _cases("replies"))
def test_the_reply_handle_is_found_as_twitter_text_does(case: dict[str, Any]) -> None:
    assert extract_reply_username(case["text"]) == case["expected"]


@pytest.mark.skipif(not CONFORMANCE.exists(), reason=f"{CONFORMANCE} not found")
def test_every_mention_group_of_the_suite_has_cases() -> None:
    assert all(len(_suite()[group]) > 0 for group in GROUPS)


def test_a_handle_longer_than_twenty_characters_is_not_a_mention() -> None:
    assert extract_mentions("hi @" + "a" * 21) == []
    assert extract_mentions("hi @" + "a" * 20) == ["a" * 20]


def test_a_full_width_at_sign_makes_a_mention() -> None:
    assert extract_mentions_with_indices("tip \uff20bob now") == [("bob", 4, 8)]


def test_mentions_inside_right_to_left_text_are_found_with_code_point_indices() -> None:
    text = "\u05ea\u05d5\u05d3\u05d4 @bob \u05e2\u05dc \u05d4\u05db\u05dc"
    assert extract_mentions_with_indices(text) == [("bob", 5, 9)]


def test_a_handle_followed_by_a_combining_mark_is_not_a_mention() -> None:
    assert extract_mentions("@bob\u0301 hi") == []


def test_a_mention_after_an_astral_emoji_counts_code_points() -> None:
    assert extract_mentions_with_indices("\U0001f600@bob") == [("bob", 1, 5)]


# A literal port of twitter-text's JS extractMentionsOrListsWithIndices (validMentionOrList,
# endMentionMatch), plus tipjar's one extra rule (no handle character after the match), as
# the oracle for bot.mentions' faster scanner.
_LATIN = (
    "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0100-\u024f\u0253\u0254\u0256\u0257"
    "\u0259\u025b\u0263\u0268\u026f\u0272\u0289\u028b\u02bb\u0300-\u036f\u1e00-\u1eff"
)
_REFERENCE = re.compile(
    "(?:^|[^a-zA-Z0-9_!#$%&*@\uff20]|(?:^|[^a-zA-Z0-9_+~.-])(?:rt|RT|rT|Rt):?)"
    "[@\uff20]([a-zA-Z0-9_]{1,20})(/[a-zA-Z][a-zA-Z0-9_-]{0,24})?"
)
_REFERENCE_END = re.compile("[@\uff20" + _LATIN + "]|://|[a-zA-Z0-9_]")


def reference_mentions_or_lists(text: str) -> list[tuple[str, str, int, int]]:
    return [
        (m.group(1), m.group(2) or "", m.start(1) - 1, m.end())
        for m in _REFERENCE.finditer(text)
        if not _REFERENCE_END.match(text, m.end())
    ]


mention_soup = st.lists(
    st.sampled_from(
        [
            "@",
            "\uff20",
            "r",
            "t",
            "R",
            "T",
            ":",
            "a",
            "_",
            "1",
            " ",
            "/",
            "-",
            ".",
            "!",
            "#",
            "~",
            "+",
            "\u00e9",
            "\u3042",
            "\n",
            "x" * 19,
            "//",
            "rt",
            "RT:",
            "@a",
            "/l",
        ]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(mention_soup, st.text(max_size=60)))
def test_the_fast_scanner_agrees_with_the_twitter_text_regex(text: str) -> None:
    expected = reference_mentions_or_lists(text)
    assert extract_mentions_or_lists_with_indices(text) == expected
    assert extract_mentions_with_indices(text) == [
        (name, start, end) for name, slug, start, end in expected if not slug
    ]
