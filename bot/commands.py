"""The tip language: what a tweet that mentions the bot asks tipjar to do.

``parse(text, bot_username=..., ...)`` reads one tweet and returns exactly one of

- ``TipCommand``: tip these recipients (handles, in order) this amount each, or flattr them
  (``amount is None``: one share of the supporter's monthly budget);
- ``ControlCommand``: ``help`` or ``stop`` (no more notices for the author);
- ``Rejection``: a named outcome (``bad_amount``, ``self_tip``, ...) with the offending
  part of the text, so the reply can quote it;
- ``NotACommand``: conversation that merely mentions the bot; the bot stays silent.

It is a pure function: no I/O, no clock, and it never raises, whatever the text.

Grammar (handles are found with twitter-text's rules, see ``bot.mentions``; the bot's
handle matches in any case; "gap" means whitespace or invisible format characters such as
zero-width spaces and direction marks, which a user cannot see or avoid typing):

- **Explicit tip**: a mention of the bot, a gap, then one or more mentions separated by
  gaps (a comma between them is allowed: ``@flattr @bob, @carol``): ``@flattr @bob``,
  ``@flattr @bob @carol thanks!``. Handles elsewhere in the text are not recipients.
  ``@flattr @bob's thread`` is prose (a possessive handle ends the list of recipients).
  When the bot is named several times, the first of its mentions that reads as a tip
  counts.
- **Amount**, optional, right after the recipients, optionally after the word ``tip`` or
  ``flattr``: a currency symbol or ISO code (or the words euro/dollar/pound/yen...) before
  or after a number, any case, with or without a space: ``€2``, ``2€``, ``2 EUR``,
  ``EUR 2``, ``2.50eur``, ``0,50 €``. Decimal point or comma. ``1,000`` (thousands or
  one?) and ``1.000`` are refused as ``bad_amount``, never guessed; so are more decimals
  than the currency has, zero, negative and malformed numbers. A marker of another known
  currency (``$1`` in a EUR deployment, ``£2``, ``USD 2``, ``₹50``) is ``wrong_currency``.
  Below ``min_tip`` is ``too_small``, above ``max_tip`` is ``too_large``. With several
  recipients each gets the amount. Full-width and Arabic-Indic digits read as digits.
- **Never guess an amount**: after the recipients, a token that looks like money (a
  digit, a currency symbol, a country's dollar like ``US$``, or a bare currency code) and
  does not read exactly is ``bad_amount`` (``wrong_currency`` when it names another
  currency), never a flattr: ``€abc``, ``€two``, ``~€2``, ``US$2``, ``€<zero-width
  space>2``. A space or any other character inside a number is ``bad_amount``: ``€1 000``,
  ``€ 1 000``, ``EUR 1 000``, ``€2 50``, ``€2/3``; a keycap emoji is not a digit. A
  flattr has nothing money-like anywhere after the recipients (``❤️ €2`` and ``thanks for
  episode 2`` are ``bad_amount``; handles, hashtags and links do not count); after an
  amount, a second amount with its currency is ``bad_amount`` (``€2, and €3 for carol``).
- **A bare number** (``@flattr @bob 2``) is read in the deployment's currency only when
  nothing but punctuation or emoji follows it, which is what a user typing a quick tip
  means. When words follow (``@flattr @bob 2 thanks``) it is ``bad_amount``: the reply
  asks for a currency rather than guessing whether "2" was money.
- **What may follow**: after the recipients (and amount) a short note may follow: at most
  12 words and 140 characters, no link, no question mark. Anything longer, a link or a
  question is conversation (``@Twitter @TwitterSupport this is my feed, why ... <link>``)
  and gives ``NotACommand``: a tip is a short imperative, and when unsure no money moves.
  A trailing link that is the tweet's own photo, video or quoted tweet (``attachment_urls``,
  from the platform's entities) is not text: a tip with a photo or a quote works.
- **Only the author's words** (``display_range``, X's ``display_text_range``): in a reply
  X prefixes the text with the thread's mentions and marks where the author's own text
  starts. The mentions before that are context, never recipients: the explicit rule and
  the reply-tip rule read the displayed text only, so a reply tip needs the bot's handle
  typed by the author. Commands still read the whole leading run, so ``stop`` typed under
  the prefix ``@flattr @alice`` of a notice still works.
- **Replies without a display range** (Mastodon, or X leaving it out): a reply counts as
  a tip only if its words after the leading run of mentions hold an amount (a digit or a
  currency symbol) or the word ``tip``/``flattr``: ``@alice @flattr 🙏`` under alice's tip
  is thread chatter. When the bot's handle is part of the leading run, the stricter reply
  rule for the text after the recipients applies: nothing, the word tip/flattr or an
  amount (which may carry a short note). ``@alice @flattr @bob €1`` still tips bob.
- **Reply tip**: when no explicit tip is found, a reply whose leading run of mentions ends
  with the bot's handle, followed by nothing, an amount, or the word ``flattr``/``tip``,
  tips the author of the tweet replied to: ``@carol @flattr €0.50``, ``@carol @flattr
  tip`` (and, with a display range, ``@flattr`` typed by the author under ``@carol``).
  ``@carol @flattr what happened???`` is conversation.
- **Never a tip**: a reply to the bot's own tweet (its mentions are the thread's prefix);
  a tweet by the bot itself; a classic retweet (``RT @...``). Commands still work in
  replies to the bot, so a creator can answer a notice with ``stop``.
- **Commands**: the bot's handle followed by ``help`` or ``stop`` (``@flattr stop``), or a
  leading run of mentions that contains the bot followed by ``help``/``stop`` (the
  form a reply to the bot's notice takes: ``@flattr @alice stop``). At most a short note
  may follow, and a command wins over a tip in the same tweet.
- **Recipients**: duplicates collapse to the first spelling (case-insensitive); the bot
  and the author are dropped; if nobody is left the result is ``self_tip`` (the author
  was named) or ``bot_tip``.

``Outcome`` holds every named outcome of a tip command (DESIGN section 5) plus ``help``
and ``stop``, the outcomes of the two control commands, so that replies are keyed by one
enum.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final, Literal

from bot.mentions import extract_mentions_with_indices
from escrow.money import Currency, Money, MoneyError, currency, parse_minor


class Outcome(StrEnum):
    tipped = "tipped"
    held = "held"
    flattred = "flattred"
    already_flattred = "already_flattred"
    insufficient_funds = "insufficient_funds"
    unknown_supporter = "unknown_supporter"
    unknown_recipient = "unknown_recipient"
    self_tip = "self_tip"
    bot_tip = "bot_tip"
    refusing_recipient = "refusing_recipient"
    bad_amount = "bad_amount"
    wrong_currency = "wrong_currency"
    too_small = "too_small"
    too_large = "too_large"
    not_a_command = "not_a_command"
    # Outcomes of the control commands, so every reply is found through one enum.
    help = "help"
    stop = "stop"


_DEFAULT_MIN_TIP: Final = Money(10, "EUR")
_DEFAULT_MAX_TIP: Final = Money(10000, "EUR")


@dataclass(frozen=True)
class AmountRules:
    """The deployment's currency and tip bounds (inclusive).

    Built once from configuration; a mismatch of currencies is a configuration error and
    raises here, so that ``parse`` itself never has to.
    """

    currency: str = "EUR"
    min_tip: Money = _DEFAULT_MIN_TIP
    max_tip: Money = _DEFAULT_MAX_TIP
    unit: Currency = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unit = currency(self.currency)
        code = unit.code
        object.__setattr__(self, "currency", code)
        object.__setattr__(self, "unit", unit)
        if self.min_tip.currency != code or self.max_tip.currency != code:
            raise ValueError(
                f"min_tip ({self.min_tip.currency}) and max_tip ({self.max_tip.currency}) "
                f"must be in the deployment currency {code}"
            )
        if self.min_tip.minor <= 0 or self.max_tip < self.min_tip:
            raise ValueError(f"need 0 < min_tip <= max_tip, got {self.min_tip}..{self.max_tip}")


@dataclass(frozen=True)
class TipCommand:
    """Tip each recipient ``amount`` (or flattr them when ``amount`` is None).

    ``is_reply``: the recipient is the author of the tweet replied to (reply tip).
    """

    recipients: tuple[str, ...]
    amount: Money | None
    is_reply: bool = False

    @property
    def is_flattr(self) -> bool:
        return self.amount is None


@dataclass(frozen=True)
class ControlCommand:
    action: Literal["help", "stop"]


@dataclass(frozen=True)
class Rejection:
    """A tip that will not happen, and why; ``detail`` is the offending part of the text."""

    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class NotACommand:
    """Conversation that mentions the bot: no tip, no reply."""


Command = TipCommand | ControlCommand | Rejection | NotACommand

_NOT_A_COMMAND: Final = NotACommand()
_DEFAULT_RULES: Final = AmountRules()


def _ci(word: str) -> str:
    """A regex matching ``word`` in any ASCII case (re.IGNORECASE would also fold Unicode)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


def _ci_trie(words: list[str]) -> str:
    """A regex matching any of ``words`` (any ASCII case), shaped as a trie.

    A flat alternation of 40 words is tried word by word at every position; the trie
    fails on the first letter that starts no word, which keeps chatter cheap to read.
    """
    if not words:
        return ""
    ends_here = "" in words
    heads = sorted({w[0] for w in words if w})
    branches = [_ci(head) + _ci_trie([w[1:] for w in words if w[:1] == head]) for head in heads]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if ends_here:
        return f"(?:{body})?"
    return body


# Whitespace plus invisible format characters: zero-width space/joiners, direction marks
# and embeddings, word joiner, BOM, Arabic letter mark, Mongolian vowel separator.
_GAP_CHARS = "\\s\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u061c\u180e"
_GAP_RE = re.compile(f"[{_GAP_CHARS}]+")
_LIST_GAP_RE = re.compile(f"[{_GAP_CHARS}]*,?[{_GAP_CHARS}]*")
_POSSESSIVE = ("'", "\u2019")

_HANDLE_RE = re.compile("[A-Za-z0-9_]{1,20}")
_RETWEET_RE = re.compile(f"[{_GAP_CHARS}]*[rR][tT][ :]*[@\uff20]")
_TIP_WORD_RE = re.compile(f"(?:{_ci('tip')}|{_ci('flattr')})(?!\\w)")
_CONTROL_RE = re.compile(f"[{_GAP_CHARS}]+({_ci('help')}|{_ci('stop')})(?!\\w)")

_NOTE_MAX_WORDS: Final = 12
_NOTE_MAX_CHARS: Final = 140
_WORD_RE = re.compile(r"[^\W_]+")
_LINK_RE = re.compile(r"https?://|www\.", re.IGNORECASE)
_QUESTION_RE = re.compile("[?\uff1f\u061f]")
_SAID_RE = re.compile("[^\\W_]|[?\uff1f\u061f]")

# Currency markers. Codes of currencies escrow.money knows map to themselves; other known
# currencies are recognised only to say "wrong currency" instead of "bad amount".
_SYMBOLS: Final[dict[str, str]] = {
    "€": "EUR",
    "$": "USD",
    "£": "GBP",
    "¥": "JPY",
    "₹": "INR",
    "₩": "KRW",
    "₽": "RUB",
    "₺": "TRY",
    "₴": "UAH",
    "₦": "NGN",
    "₱": "PHP",
    "₫": "VND",
    "฿": "THB",
    "₪": "ILS",
    "₿": "BTC",
}
_WORDS: Final[dict[str, str]] = {
    **{
        code.lower(): code
        for code in (
            "EUR USD GBP CHF SEK JPY CAD AUD NZD INR CNY HKD SGD NOK DKK PLN CZK HUF "
            "BRL MXN ZAR KRW RUB TRY UAH ILS BTC ETH"
        ).split()
    },
    "euro": "EUR",
    "euros": "EUR",
    "dollar": "USD",
    "dollars": "USD",
    "pound": "GBP",
    "pounds": "GBP",
    "franc": "CHF",
    "francs": "CHF",
    "kr": "SEK",
    "krona": "SEK",
    "kronor": "SEK",
    "yen": "JPY",
}

# Dollars written with their country ("US$2", "C$5"): markers of those currencies.
_PREFIXED: Final[dict[str, str]] = {
    "US$": "USD",
    "C$": "CAD",
    "CA$": "CAD",
    "A$": "AUD",
    "AU$": "AUD",
    "NZ$": "NZD",
    "HK$": "HKD",
    "S$": "SGD",
    "R$": "BRL",
    "MX$": "MXN",
}
_SIGN = "[-+\u2212\u2013]"
_NEGATIVE_SIGNS = ("-", "\u2212", "\u2013")
_NUM = "(?:[0-9]+(?:[.,'][0-9]+)*|[.,][0-9]+)"
_SPACE = "[ \u00a0\u2009\u202f]{0,3}"
_SYM = "[" + "".join(re.escape(s) for s in _SYMBOLS) + "]"
# Not in the amount's own pattern (it would slow every amount down for a rare spelling):
# "US$2" is read as money that does not parse, and named by _MARKER_RE.
_COUNTRY_DOLLAR = "(?:US|CA?|AU?|NZ|HK|S|R|MX)\\$"
_CODE = "(?:" + _ci_trie(sorted(_WORDS)) + ")"

_AMOUNT_RE = re.compile(
    f"(?P<s1>{_SIGN})?(?:"
    f"(?P<sym1>{_SYM}){_SPACE}(?P<s2>{_SIGN})?(?P<n1>{_NUM})"
    f"|(?P<code1>{_CODE}){_SPACE}(?P<s3>{_SIGN})?(?P<n2>{_NUM})"
    f"|(?P<n3>{_NUM})(?:{_SPACE}(?:(?P<sym2>{_SYM})|(?P<code2>{_CODE})))?"
    # A keycap ("2\ufe0f\u20e3") is an emoji, not a number: never read as one.
    ")(?!\\w|[.,][0-9]|[\ufe0e\ufe0f\u20e3])"
)
# Something that starts like an amount but is not one ("2nd", "€2abc", "1.2.3"): reported
# as bad_amount (or as conversation, see _judge) instead of being silently ignored.
_ATTEMPT_RE = re.compile(
    f"{_SIGN}?(?:(?P<sym>{_SYM}){_SPACE}|(?P<code>{_CODE}){_SPACE}(?={_SIGN}?[.,]?[0-9]))?"
    f"{_SIGN}?[.,]?[0-9]"
)
_TOKEN_RE = re.compile(r"\S{1,32}")
_GROUPS: Final = ("s1", "s2", "s3", "sym1", "sym2", "code1", "code2", "n1", "n2", "n3")
_AMOUNT_WINDOW: Final = 64

# Full-width and Arabic-Indic digits, separators and signs read as their ASCII forms;
# one character for one, so indices into the folded text are indices into the original.
_FOLD: Final = str.maketrans(
    {
        **{0xFF10 + i: str(i) for i in range(10)},
        **{0x0660 + i: str(i) for i in range(10)},
        **{0x06F0 + i: str(i) for i in range(10)},
        **{0xFF21 + i: chr(ord("A") + i) for i in range(26)},
        **{0xFF41 + i: chr(ord("a") + i) for i in range(26)},
        0xFF0E: ".",
        0xFF0C: ",",
        0x066B: ".",
        0x066C: ",",
        0xFF04: "$",
        0xFFE1: "£",
        0xFFE5: "¥",
        0xFF0D: "-",
        0xFF0B: "+",
    }
)


# Whether a text needs folding at all: most amounts with "€" need none.
_FOLDABLE_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _FOLD) + "]")

# Characters an amount can start with; anything else is settled without a regex.
_AMOUNT_STARTS: Final = frozenset(
    "0123456789.,+-\u2212\u2013"
    + "".join(_SYMBOLS)
    + "".join({w[0] for w in _WORDS} | {w[0].upper() for w in _WORDS})
    + "".join(chr(c) for c in _FOLD)
)

# Never guess an amount: a token after the recipients that holds a digit or a currency
# symbol (or is a currency code) is money the author wrote, and must read exactly.
_DIGIT_CHARS = "0-9\uff10-\uff19\u0660-\u0669\u06f0-\u06f9"
_SYMBOL_CHARS = "".join(re.escape(s) for s in _SYMBOLS) + "\uff04\uffe1\uffe5"
_MONEYISH_RE = re.compile(f"[{_DIGIT_CHARS}{_SYMBOL_CHARS}]")
# Tokens that hold digits without being money: handles, hashtags, links.
_NOT_MONEY_RE = re.compile("[@\uff20#\uff03]|https?://|www\\.", re.IGNORECASE)
_WORD_TOKEN_RE = re.compile(r"\S+")
# A number that goes on after a space ("€1 000", "€2 50"), and the marker that may end it.
_RUNS_ON_RE = re.compile(f"[ \\t\u00a0\u2009\u202f]+[{_DIGIT_CHARS}]\\S{{0,31}}")
# Either of the above, tried once after every amount: almost always it fails at once.
_MAY_RUN_ON_RE = re.compile(
    f"[^\\s{_DIGIT_CHARS}{_SYMBOL_CHARS}]{{0,31}}[{_DIGIT_CHARS}{_SYMBOL_CHARS}]"
    f"|[ \\t\u00a0\u2009\u202f]+[{_DIGIT_CHARS}]"
)
# A bare currency code or word right after the recipients ("@flattr @bob EUR").
_BARE_CODE_RE = re.compile(f"{_CODE}[.,;:!?\u2026]*(?!\\S)")
_RUN_MARKER_RE = re.compile(f"[ \\t\u00a0\u2009\u202f]+(?:{_SYM}|{_CODE})(?![^\\W\\d_])")
# A currency marker inside a token ("~$2", "5usd"), to tell wrong_currency from bad_amount.
_MARKER_RE = re.compile(f"{_COUNTRY_DOLLAR}|{_SYM}|(?<![A-Za-z]){_CODE}(?![A-Za-z])")
# An amount with its currency in a note after the amount ("€2, and €3 for carol").
_MARKED_AMOUNT_RE = re.compile(
    f"{_SYM}{_SPACE}{_SIGN}?[.,]?[0-9]|[0-9]{_SPACE}{_SYM}"
    f"|(?<![A-Za-z]){_CODE}{_SPACE}{_SIGN}?[.,]?[0-9]|[0-9]{_SPACE}{_CODE}(?![A-Za-z])"
)
_TRAILING_PUNCTUATION = ".,;:!?\u2026"
# Replies without a display range (Mastodon rule): the author's words must ask for money.
_ASKS_RE = re.compile(
    f"[{_DIGIT_CHARS}{_SYMBOL_CHARS}]|(?<![\\w@\uff20])(?:{_ci('tip')}|{_ci('flattr')})(?!\\w)"
)


# The result of reading an amount at one position of a tweet (a plain tuple: it is built
# for most tweets, and a dataclass costs more than the rest of the reading):
# (index just past what was read, the amount or its rejection or None when no amount was
# written, whether a currency symbol or code was written).
_Read = tuple[int, Money | Rejection | None, bool]


class _Chatter:
    """Marker: the text is conversation, not a command."""


_CHATTER: Final = _Chatter()


def _normalise_handle(handle: object) -> str | None:
    return _clean_handle(handle) if isinstance(handle, str) else None


@lru_cache(maxsize=4096)  # the same few handles (bot, regular authors) come back all day
def _clean_handle(handle: str) -> str | None:
    handle = handle.strip().lstrip("@\uff20")
    return handle if _HANDLE_RE.fullmatch(handle) else None


def _skip(text: str, pos: int) -> int:
    """The index of the first visible character at or after ``pos``."""
    gap = _GAP_RE.match(text, pos)
    return gap.end() if gap else pos


def _marker_code(marker: str) -> str | None:
    """The currency a symbol, a country's dollar (``US$``) or a code/word names."""
    return _SYMBOLS.get(marker) or _PREFIXED.get(marker.upper()) or _WORDS.get(marker.lower())


def _fold(text: str) -> str:
    return text if text.isascii() else text.translate(_FOLD)


def _evaluate(groups: tuple[str | Any, ...], detail: str, rules: AmountRules) -> Money | Rejection:
    """Judge one amount; ``groups`` are _AMOUNT_RE's groups in the order of _GROUPS."""
    s1, s2, s3, sym1, sym2, code1, code2, n1, n2, n3 = groups
    symbol = sym1 or sym2
    word = code1 or code2
    code = _SYMBOLS[symbol] if symbol else _WORDS.get(word.lower()) if word else None
    if word and code is None:  # unreachable with ASCII codes; kept so this never raises
        return Rejection(Outcome.bad_amount, detail)
    if code is not None and code != rules.currency:
        return Rejection(Outcome.wrong_currency, detail)
    if (s1 or s2 or s3) in _NEGATIVE_SIGNS:
        return Rejection(Outcome.bad_amount, detail)
    number: str = n1 or n2 or n3
    if number[0] in ".,":
        number = "0" + number
    if len(number) > 15 and len(number.split(".", 1)[0].split(",", 1)[0].lstrip("0")) > 15:
        return Rejection(Outcome.too_large, detail)
    try:
        minor = parse_minor(number, rules.unit)
    except MoneyError:
        return Rejection(Outcome.bad_amount, detail)
    if minor == 0:
        return Rejection(Outcome.bad_amount, detail)
    # AmountRules guarantees one currency, so comparing minor units is comparing money.
    if minor < rules.min_tip.minor:
        return Rejection(Outcome.too_small, detail)
    if minor > rules.max_tip.minor:
        return Rejection(Outcome.too_large, detail)
    return Money(minor, rules.currency)


def _misread(detail: str, rules: AmountRules) -> tuple[Rejection, bool]:
    """Money-like text that is not an amount: its rejection, and whether it names a currency."""
    codes = [_marker_code(m.group()) for m in _MARKER_RE.finditer(_fold(detail))]
    foreign = any(code is not None and code != rules.currency for code in codes)
    outcome = Outcome.wrong_currency if foreign else Outcome.bad_amount
    return Rejection(outcome, detail), bool(codes)


def _runs_on(text: str, end: int) -> int:
    """Where an amount read up to ``end`` really ends.

    A digit or currency symbol later in the same token (``€2/3``, ``€2​50`` with an
    invisible character) or a number after a space (``€1 000``, ``€2 50``) means the
    author wrote one amount that does not read exactly: never guess which part was meant.
    """
    if _MAY_RUN_ON_RE.match(text, end) is None:
        return end
    stop = end
    rest = _TOKEN_RE.match(text, end)
    if rest is not None and _MONEYISH_RE.search(text, end, rest.end()):
        stop = rest.end()
    more = _RUNS_ON_RE.match(text, stop)
    if more is None:
        return stop
    while more is not None and more.end() - end < _AMOUNT_WINDOW:
        stop = more.end()
        more = _RUNS_ON_RE.match(text, stop)
    marker = _RUN_MARKER_RE.match(_fold(text[stop : stop + 8]))
    return stop + marker.end() if marker else stop


def _first_token(text: str, start: int, rules: AmountRules) -> _Read:
    """The token after the recipients when it looks like money but is no amount.

    ``€abc``, ``~€2``, ``US`` followed by a symbol, a bare ``EUR``: called when
    _read_amount found nothing at ``start``.
    """
    token = _TOKEN_RE.match(text, start)
    if token is None:
        return start, None, False
    word = token.group()
    if _MONEYISH_RE.search(word) is None:
        if _BARE_CODE_RE.match(text, start) is None:
            return start, None, False
        # A bare currency code or word ("EUR two", "€ two"): the amount it names follows.
        token = _TOKEN_RE.match(text, _skip(text, token.end())) or token
    elif _NOT_MONEY_RE.search(word):
        return start, None, False
    elif _MARKER_RE.fullmatch(_fold(word.rstrip(_TRAILING_PUNCTUATION))):
        token = _TOKEN_RE.match(text, _skip(text, token.end())) or token
    end = _runs_on(text, token.end())
    rejection, marked = _misread(text[start:end], rules)
    return end, rejection, marked


def _read_amount(text: str, start: int, rules: AmountRules) -> _Read:
    """The amount at ``start``; None when nothing there starts like one (see _first_token)."""
    if text[start : start + 1] not in _AMOUNT_STARTS:
        return start, None, False
    # A window, not the rest of a possibly 10,000-character text: amounts are short.
    folded = text[start : start + _AMOUNT_WINDOW]
    if not folded.isascii() and _FOLDABLE_RE.search(folded) is not None:
        folded = folded.translate(_FOLD)
    match = _AMOUNT_RE.match(folded)
    if match is not None and match.end() == len(folded) < len(text) - start:
        token = _TOKEN_RE.match(text, start)
        end = token.end() if token else start + len(folded)
        return end, Rejection(Outcome.bad_amount, text[start:end]), True
    if match is not None:
        end = start + match.end()
        groups = match.group(*_GROUPS)
        marked = bool(groups[3] or groups[4] or groups[5] or groups[6])
        if _MAY_RUN_ON_RE.match(text, end) is not None:
            stop = _runs_on(text, end)
            if stop != end:
                return stop, Rejection(Outcome.bad_amount, text[start:stop]), marked
        return end, _evaluate(groups, text[start:end], rules), marked
    if _ATTEMPT_RE.match(folded) is None:
        return start, None, False
    token = _TOKEN_RE.match(text, start)
    end = _runs_on(text, token.end() if token else start + 1)
    rejection, marked = _misread(text[start:end], rules)
    return end, rejection, marked


def _stray_amount(
    text: str, start: int, rules: AmountRules, *, any_number: bool
) -> Rejection | None:
    """Money written in the note after the recipients (or after the amount).

    ``any_number``: the tweet has no amount, so it is a flattr only when nothing in the
    note looks like money (``❤️ €2``, ``thanks! 2``); after an amount, only a second
    amount with its currency counts (``€2, and €3 for carol``).
    """
    if _MONEYISH_RE.search(text, start) is None:
        return None
    if not any_number:
        found = _MARKED_AMOUNT_RE.search(_fold(text[start:]))
        if found is None:
            return None
        # Quote the second amount's own tokens, not the words around it.
        begin = start + found.start()
        while begin > start and not text[begin - 1].isspace():
            begin -= 1
        return _misread(text[begin : start + found.end()], rules)[0]
    for token in _WORD_TOKEN_RE.finditer(text, start):
        word = token.group()
        if _MONEYISH_RE.search(word) and not _NOT_MONEY_RE.search(word):
            return _misread(word[:32], rules)[0]
    return None


def _nothing_said(text: str, start: int) -> bool:
    """A little punctuation, symbols or emoji from ``start`` on: no words, no question."""
    return len(text) - start <= _NOTE_MAX_CHARS and _SAID_RE.search(text, start) is None


def _short_note(text: str, start: int, *, questions: bool = False) -> bool:
    """A few words of thanks may follow a tip; a long text, a link or a question is talk.

    ``questions``: a question mark is fine (``@flattr help?``).
    """
    if len(text) - start > _NOTE_MAX_CHARS:
        return False
    rest = text[start:]
    if _LINK_RE.search(rest) or (not questions and _QUESTION_RE.search(rest) is not None):
        return False
    return len(_WORD_RE.findall(rest)) <= _NOTE_MAX_WORDS


def _judge(
    text: str, start: int, rules: AmountRules, strict: bool
) -> Money | Rejection | _Chatter | None:
    """Read the optional amount at ``start`` and decide whether what follows is a command.

    Returns the amount (None for a flattr), a rejection of the amount, or _CHATTER.
    ``strict`` (reply rule): without a currency marker nothing but punctuation may follow.
    """
    word = _TIP_WORD_RE.match(text, start)
    if word is not None:
        start = _skip(text, word.end())
    end, value, marked = _read_amount(text, start, rules)
    if value is None:
        moneyish = _MONEYISH_RE.search(text, start) is not None
        if strict:
            if not moneyish and _nothing_said(text, start):
                return None
        elif not _short_note(text, start):
            return _CHATTER
        elif not moneyish and _BARE_CODE_RE.match(text, start) is None:
            return None  # a flattr: nothing after the recipients looks like money
        end, value, marked = _first_token(text, start, rules)
        if value is None:
            return _CHATTER if strict else _stray_amount(text, start, rules, any_number=True)
    if marked:
        if not _short_note(text, end):
            return _CHATTER
        if isinstance(value, Money) and _MONEYISH_RE.search(text, end) is not None:
            return _stray_amount(text, end, rules, any_number=False) or value
        return value
    if _nothing_said(text, end):
        return value
    if not strict and _short_note(text, end):
        return Rejection(Outcome.bad_amount, text[start:end])
    return _CHATTER


def _recipients(
    names: list[str], bot: str, author: str | None
) -> tuple[tuple[str, ...], str | None, str | None]:
    """Deduplicated recipients, and the first spelling of the author/bot that was dropped."""
    kept: dict[str, str] = {}
    dropped_author: str | None = None
    dropped_bot: str | None = None
    for name in names:
        key = name.lower()
        if key == bot:
            dropped_bot = dropped_bot or name
        elif author is not None and key == author:
            dropped_author = dropped_author or name
        else:
            kept.setdefault(key, name)
    return tuple(kept.values()), dropped_author, dropped_bot


def _tip(
    recipients: tuple[str, ...],
    dropped_author: str | None,
    dropped_bot: str | None,
    judged: Money | Rejection | None,
    is_reply: bool,
) -> Command:
    if not recipients:
        if dropped_author is not None:
            return Rejection(Outcome.self_tip, "@" + dropped_author)
        return Rejection(Outcome.bot_tip, "@" + (dropped_bot or ""))
    if isinstance(judged, Rejection):
        return judged
    return TipCommand(recipients, judged, is_reply)


def _leading_run(text: str, mentions: list[tuple[str, int, int]], start: int = 0) -> int:
    """How many of ``mentions`` open the text at ``start``, separated only by gaps."""
    pos = _skip(text, start)
    count = 0
    for _name, begin, end in mentions:
        if begin != pos:
            break
        count += 1
        pos = _skip(text, end)
    return count


def _explicit_run(text: str, mentions: list[tuple[str, int, int]], bot_at: int) -> list[int]:
    """Indices of the mentions that directly follow the bot's mention number ``bot_at``."""
    run: list[int] = []
    prev_end = mentions[bot_at][2]
    gap = _GAP_RE
    for j in range(bot_at + 1, len(mentions)):
        _name, start, end = mentions[j]
        if not gap.fullmatch(text, prev_end, start) or text[end : end + 1] in _POSSESSIVE:
            break
        run.append(j)
        prev_end = end
        gap = _LIST_GAP_RE
    return run


def _control(
    text: str, mentions: list[tuple[str, int, int]], bot_at: list[int], lead: int
) -> ControlCommand | None:
    ends = [mentions[k][2] for k in bot_at]
    if lead and bot_at[0] < lead:
        ends.append(mentions[lead - 1][2])
    for end in ends:
        word = _CONTROL_RE.match(text, end)
        if word is not None and _short_note(text, word.end(), questions=True):
            return ControlCommand("help" if word.group(1).lower() == "help" else "stop")
    return None


def _shown(text: str, display_range: object) -> tuple[int, int] | None:
    """The displayed part of ``text`` as (start, end), or None when the range is unusable."""
    if not isinstance(display_range, tuple | list) or len(display_range) != 2:
        return None
    start, end = display_range
    if type(start) is not int or type(end) is not int or not 0 <= start <= end:
        return None
    return min(start, len(text)), min(end, len(text))


def _without_attachments(text: str, end: int, attachment_urls: Collection[str]) -> int:
    """``end`` moved before the trailing links that are the tweet's own media or quote."""
    while True:
        stop = len(text[:end].rstrip())
        url = next(
            (u for u in attachment_urls if isinstance(u, str) and u and text.endswith(u, 0, stop)),
            None,
        )
        if url is None or (stop > len(url) and not text[stop - len(url) - 1].isspace()):
            return end
        end = stop - len(url)


def _asks_for_money(text: str, lowered: str, start: int) -> bool:
    """Mastodon rule for replies: an amount or the word tip/flattr after ``start``."""
    if _MONEYISH_RE.search(text, start) is not None:
        return True
    if len(lowered) != len(text):  # lower() changed the indices: read it the slow way
        return _ASKS_RE.search(text, start) is not None
    for word in ("tip", "flattr"):
        at = lowered.find(word, start)
        while at != -1:
            before = lowered[at - 1] if at else " "
            after = lowered[at + len(word) : at + len(word) + 1] or " "
            if not (before.isalnum() or before in "_@\uff20") and not (
                after.isalnum() or after == "_"
            ):
                return True
            at = lowered.find(word, at + 1)
    return False


def _tip_rules(
    text: str,
    mentions: list[tuple[str, int, int]],
    bot_at: list[int],
    lead: int,
    names: tuple[str, str | None, str | None],
    rules: AmountRules,
    *,
    strict_lead: bool,
) -> Command:
    """The explicit rule, then the reply-tip rule, over ``mentions`` (the author's words).

    ``bot_at``: the indices of the bot's own mentions among ``mentions``.
    ``names``: the bot, the author (both lower case) and the handle replied to.
    ``strict_lead``: the leading run may be the platform's prefix of the thread (no
    display range), so the stricter reply rule applies to what follows it.
    """
    bot, author, replied_to = names
    examined = -1  # a bot mention inside a run already judged would be judged the same
    for k in bot_at:
        if k <= examined:
            continue
        run = _explicit_run(text, mentions, k)
        if not run:
            continue
        examined = run[-1]
        strict = strict_lead and replied_to is not None and k < lead
        after = _skip(text, mentions[run[-1]][2])
        judged = _judge(text, after, rules, strict)
        if isinstance(judged, _Chatter):
            continue
        recipients = [mentions[j][0] for j in run]
        return _tip(*_recipients(recipients, bot, author), judged, is_reply=False)

    if replied_to is not None and lead and mentions[lead - 1][0].lower() == bot:
        judged = _judge(text, _skip(text, mentions[lead - 1][2]), rules, strict=True)
        if isinstance(judged, _Chatter):
            return _NOT_A_COMMAND
        return _tip(*_recipients([replied_to], bot, author), judged, is_reply=True)
    return _NOT_A_COMMAND


def parse(
    text: str,
    *,
    bot_username: str,
    in_reply_to_username: str | None = None,
    author_username: str | None = None,
    rules: AmountRules = _DEFAULT_RULES,
    display_range: tuple[int, int] | None = None,
    attachment_urls: Collection[str] = (),
) -> Command:
    """Read one tweet. Never raises; see the module docstring for the grammar.

    ``display_range``: the part of ``text`` the author typed, as X's ``display_text_range``
    (code point start and end); the mentions before its start are the thread's context.
    ``attachment_urls``: the links that stand for the tweet's own media or quoted tweet.
    """
    if not isinstance(text, str):
        return _NOT_A_COMMAND
    bot_handle = _normalise_handle(bot_username)
    lowered = text.lower()
    # Every command names the bot, so most tweets are settled by one case-folded search.
    if bot_handle is None or bot_handle.lower() not in lowered:
        return _NOT_A_COMMAND
    bot = bot_handle.lower()
    author_handle = _normalise_handle(author_username)
    author = author_handle.lower() if author_handle else None
    replied_to = _normalise_handle(in_reply_to_username)
    if author == bot or _RETWEET_RE.match(text):
        return _NOT_A_COMMAND

    shown = None if display_range is None else _shown(text, display_range)
    if shown is not None or attachment_urls:
        end = shown[1] if shown is not None else len(text)
        if isinstance(attachment_urls, Collection):
            end = _without_attachments(text, end, attachment_urls)
        text, lowered = text[:end], lowered[:end]

    mentions = extract_mentions_with_indices(text)
    bot_at = [i for i, (name, _s, _e) in enumerate(mentions) if name.lower() == bot]
    if not bot_at:
        return _NOT_A_COMMAND
    may_command = "help" in lowered or "stop" in lowered
    # The leading run matters only to commands and replies; most tweets need neither.
    lead = _leading_run(text, mentions) if may_command or replied_to is not None else 0

    if may_command:
        control = _control(text, mentions, bot_at, lead)
        if control is not None:
            return control
    if replied_to is not None and replied_to.lower() == bot:
        return _NOT_A_COMMAND

    names = (bot, author, replied_to)
    if shown is not None:
        # Only what the author typed: the thread's prefix before the range is context.
        typed = [m for m in mentions if m[1] >= shown[0]]
        typed_lead = _leading_run(text, typed, shown[0]) if replied_to is not None else 0
        typed_bot = [i for i, (name, _s, _e) in enumerate(typed) if name.lower() == bot]
        return _tip_rules(text, typed, typed_bot, typed_lead, names, rules, strict_lead=False)
    after_lead = mentions[lead - 1][2] if lead else 0
    if replied_to is not None and not _asks_for_money(text, lowered, after_lead):
        return _NOT_A_COMMAND
    return _tip_rules(text, mentions, bot_at, lead, names, rules, strict_lead=True)


def parse_amount(text: str, rules: AmountRules = _DEFAULT_RULES) -> Money | Rejection:
    """Read a whole string as a tip amount (``€2``, ``2 EUR``, ``0,50``...) under ``rules``.

    A bare number is in the deployment's currency. Anything that is not exactly one amount
    is a ``bad_amount`` rejection; bounds and currency give their own outcomes.
    """
    if not isinstance(text, str):
        return Rejection(Outcome.bad_amount, "")
    stripped = text.strip()
    end, value, _marked = _read_amount(stripped, 0, rules)
    if value is None or end != len(stripped):
        return Rejection(Outcome.bad_amount, stripped[:32])
    return value
