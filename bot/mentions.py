"""Mention extraction: which handles a tweet's text mentions, following twitter-text's rules.

This is a port of the mention part of twitter-text (the platform's reference extractor:
``validMentionPrecedingChars``, ``atSigns``, ``validMentionOrList``, ``endMentionMatch``,
``validReply``) so that tipjar sees exactly the mentions the platform itself would link.
The conformance suite in ``../shared/conformance/twitter-text-extract.yml`` (groups
``mentions``, ``mentions_with_indices``, ``mentions_or_lists_with_indices``, ``replies``)
is run against this module by the unit tests.

The rules, in short:

- an at sign is ``@`` or the full-width ``＠``;
- a handle is 1 to 20 ASCII letters, digits or underscores;
- the character before the at sign must not be a letter, digit, ``_``, ``!``, ``#``, ``$``,
  ``%``, ``&``, ``*`` or another at sign (so ``f@kn`` and e-mail addresses are not
  mentions), except after a retweet marker (``RT@alice``, ``rt:@alice``);
- the handle must not be followed by another at sign (``@user@example.com``), a Latin
  accented letter or combining mark (``@aliceìnheiro``), or ``://`` (``@http://...``);
- tipjar adds one rule twitter-text leaves implicit: a match that stopped at the
  20-character limit while more handle characters follow is no mention at all, rather
  than a mention of a truncated (somebody else's) handle;
- ``@user/list-name`` is a list, reported by ``extract_mentions_or_lists_with_indices``
  and left out of plain mentions.

Indices are code-point offsets into the text (Python string indices), end exclusive, and
include the at sign. Nothing here does I/O; every function is total on any ``str``.
"""

from __future__ import annotations

import re

_AT_SIGNS = "@\uff20"

# twitter-text's latinAccentChars: a handle running into one of these is not a mention.
_LATIN_ACCENTS = (
    "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
    "\u0100-\u024f"
    "\u0253\u0254\u0256\u0257\u0259\u025b\u0263\u0268\u026f\u0272\u0289\u028b"
    "\u02bb"
    "\u0300-\u036f"
    "\u1e00-\u1eff"
)

# twitter-text's spaces group (Unicode White_Space), used by the reply rule.
_SPACES = "\u0009-\u000d\u0020\u0085\u00a0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# Explicit ASCII classes rather than re.IGNORECASE: in Unicode mode IGNORECASE lets [a-z]
# match the Kelvin sign and the long s, which twitter-text (ASCII-only) never does.
#
# twitter-text's validMentionOrList starts with the preceding-character alternation
# ``(?:^|[^a-zA-Z0-9_!#$%&*@＠]|(?:^|[^a-zA-Z0-9_+~.-])(?:rt|RT|rT|Rt):?)``, which the
# regex engine has to try at every position of the text. Starting the pattern at the at
# sign lets it jump from at sign to at sign; _scan then checks the preceding characters
# in Python with the same semantics, including the regex's consumption of text (a match,
# even one rejected afterwards, ends where the next one may begin). The unit tests check
# this scanner against a literal port of the twitter-text regex on random texts.
_AT_MENTION_OR_LIST = re.compile(
    "[" + _AT_SIGNS + "]([a-zA-Z0-9_]{1,20})(/[a-zA-Z][a-zA-Z0-9_-]{0,24})?"
)
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_BEFORE_EXCLUDED = frozenset(_ALNUM + "!#$%&*" + _AT_SIGNS)
_BEFORE_RT_EXCLUDED = frozenset(_ALNUM + "+~.-")
_RETWEET_MARKS = frozenset(("rt", "RT", "rT", "Rt"))

_VALID_REPLY = re.compile("(?:[" + _SPACES + "])*[" + _AT_SIGNS + "]([a-zA-Z0-9_]{1,20})")

# endMentionMatch, plus a handle character (only possible when a length limit cut the match).
_INVALID_MENTION_MATCH_END = re.compile("[" + _AT_SIGNS + _LATIN_ACCENTS + "]|://|[a-zA-Z0-9_]")


def _has_at_sign(text: str) -> bool:
    return "@" in text or "\uff20" in text


def _scan(text: str) -> list[tuple[str, str | None, int, int]]:
    """Every valid mention or list: ``(screen_name, slug or None, start, end)``."""
    found: list[tuple[str, str | None, int, int]] = []
    invalid_end = _INVALID_MENTION_MATCH_END.match
    consumed = 0  # where the previous match (accepted or not) ended
    for m in _AT_MENTION_OR_LIST.finditer(text):
        at = m.start()
        if at and (at - 1 < consumed or text[at - 1] in _BEFORE_EXCLUDED):
            # Not "^" nor an allowed character before the at sign: only a retweet marker
            # (``RT@x``, `` rt:@x``) may still precede it.
            rt = at - 3 if text[at - 1] == ":" else at - 2
            if (
                rt < consumed
                or text[rt : rt + 2] not in _RETWEET_MARKS
                or (rt and (rt - 1 < consumed or text[rt - 1] in _BEFORE_RT_EXCLUDED))
            ):
                continue
        end = m.end()
        consumed = end
        if not invalid_end(text, end):
            found.append((m.group(1), m.group(2), at, end))
    return found


def extract_mentions_or_lists_with_indices(text: str) -> list[tuple[str, str, int, int]]:
    """Every mention or list in ``text`` as ``(screen_name, list_slug, start, end)``.

    ``list_slug`` is ``""`` for a plain mention and ``"/slug"`` for a list; ``start`` is the
    index of the at sign and ``end`` the index just past the handle (or slug).
    """
    if not isinstance(text, str) or not _has_at_sign(text):
        return []
    return [(name, slug or "", start, end) for name, slug, start, end in _scan(text)]


def extract_mentions_with_indices(text: str) -> list[tuple[str, int, int]]:
    """Every mentioned handle (lists excluded) as ``(screen_name, start, end)``, in order."""
    if not isinstance(text, str) or not _has_at_sign(text):
        return []
    return [(name, start, end) for name, slug, start, end in _scan(text) if slug is None]


def extract_mentions(text: str) -> list[str]:
    """Every mentioned handle (lists excluded), in order of appearance, repeats kept."""
    return [name for name, _start, _end in extract_mentions_with_indices(text)]


def extract_reply_username(text: str) -> str | None:
    """The handle a tweet starts with (after optional spaces), as twitter-text reads a reply.

    ``None`` when the text does not open with a valid mention.
    """
    if not isinstance(text, str) or not _has_at_sign(text):
        return None
    m = _VALID_REPLY.match(text)
    if m is None or _INVALID_MENTION_MATCH_END.match(text, m.end()):
        return None
    return m.group(1)
