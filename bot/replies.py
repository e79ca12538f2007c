"""Reply texts: what the bot says for each outcome, and the notice it posts to a creator.

One function per ``Outcome`` turns a ``ReplyContext`` (the facts the reply may need) into
the text of a reply, or ``None`` for a deliberate silence. ``REPLIES`` maps every outcome
to its function and ``reply_for`` looks one up. Silences, by design (DESIGN sections 4-5):

- ``not_a_command``: conversation gets no answer;
- ``tipped``, ``held``, ``flattred``: a successful tip gets no reply of its own; the
  creator notice in the supporter's thread is the confirmation both of them see.

Every text this module produces

- addresses the author and @-mentions nobody else: other handles are written without the
  at sign (an at sign in a reply would notify, and could be abused to spam third parties);
- quotes user input only when it is a harmless amount-like token (never a link, never a
  handle), so a reply cannot be made to carry someone else's text;
- contains a link only where signing up or claiming is the point (``unknown_supporter``
  and the creator notice), placed last and never cut;
- fits in a post: at most 280 weighted characters as the platform counts them (a URL
  counts 23; characters outside the Latin/punctuation ranges count 2), cut at a word
  boundary with an ellipsis if the facts make it longer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Final

from bot.commands import Outcome
from escrow.money import Currency, Money, MoneyError, currency

MAX_TWEET_LENGTH: Final = 280
URL_LENGTH: Final = 23  # every link is shortened to a t.co URL of this weight

# twitter-text v3 configuration: code points in these ranges weigh 1, all others 2.
_LIGHT_RANGES: Final = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_URL_RE = re.compile(r"https?://\S+", re.IGNORECASE)
_HANDLE_RE = re.compile("[A-Za-z0-9_]{1,20}")
_ADDRESS_RE = re.compile(r"[A-Za-z0-9_]{1,30}@[a-z0-9.-]{1,200}(?::[0-9]{1,5})?")
_AT_SIGNS = ("@", "\uff20")
# A token from the tweet we may quote back: digits, separators, signs, currency marks and
# a few letters (for "EUR"), and nothing that could read as a domain (".com").
_QUOTABLE_RE = re.compile("[0-9A-Za-z.,'+\\-\u2212\u2013€$£¥₹₩₽₺₴₦₱₫฿₪₿ \u00a0]{1,24}")
_DOMAIN_LIKE_RE = re.compile(r"[.,][A-Za-z]")
_MONTHS: Final = ("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec").split()
_ELLIPSIS: Final = "\u2026"


@dataclass(frozen=True)
class ReplyContext:
    """The facts a reply may state. Handles may be given with or without the at sign."""

    author_handle: str
    recipients: tuple[str, ...] = ()
    amount: Money | None = None
    available: Money | None = None
    needed: Money | None = None  # what the whole tweet needed (every recipient's amount)
    min_tip: Money | None = None
    max_tip: Money | None = None
    currency: str = "EUR"
    signup_url: str | None = None
    claim_url: str | None = None
    detail: str = ""
    owed: Money | None = None  # a debt from a card refund or dispute that pauses tips


def _weight(ch: str) -> int:
    cp = ord(ch)
    for low, high in _LIGHT_RANGES:
        if low <= cp <= high:
            return 1
    return 2


def tweet_length(text: str) -> int:
    """The weighted length the platform counts: URLs 23, wide characters 2.

    Counts every code point of an emoji sequence, so it may overstate, never understate.
    """
    length = 0
    pos = 0
    for url in _URL_RE.finditer(text):
        length += sum(_weight(ch) for ch in text[pos : url.start()]) + URL_LENGTH
        pos = url.end()
    return length + sum(_weight(ch) for ch in text[pos:])


def _handle(handle: str | None) -> str | None:
    """An X handle, or a Mastodon address (``bob@other.social``), without its at sign."""
    if not isinstance(handle, str):
        return None
    handle = handle.strip().lstrip("".join(_AT_SIGNS))
    if _HANDLE_RE.fullmatch(handle) or _ADDRESS_RE.fullmatch(handle):
        return handle
    return None


def _names(handles: tuple[str, ...]) -> str | None:
    """``bob``, ``bob and carol``, ``bob, carol, dave and 4 more``, without at signs."""
    names = [name for name in map(_handle, handles) if name]
    if not names:
        return None
    if len(names) == 1:
        return names[0]
    if len(names) <= 3:
        return ", ".join(names[:-1]) + " and " + names[-1]
    return ", ".join(names[:3]) + f" and {len(names) - 3} more"


def _quote(detail: str) -> str | None:
    detail = detail.strip() if isinstance(detail, str) else ""
    if not _QUOTABLE_RE.fullmatch(detail) or _DOMAIN_LIKE_RE.search(detail):
        return None
    return f"\u201c{detail}\u201d"


def _currency(code: str) -> Currency:
    try:
        return currency(code)
    except MoneyError:
        return currency("EUR")


def _examples(code: str) -> tuple[str, str]:
    """Two ways to write an amount in the deployment's currency: ``€2`` and ``2.50 EUR``."""
    cur = _currency(code)
    if cur.exponent == 0:
        return str(Money(200, cur.code)), f"250 {cur.code}"
    return str(Money(2 * cur.factor, cur.code)).split(".")[0], f"2.50 {cur.code}"


def _url(url: str | None) -> str | None:
    if not isinstance(url, str):
        return None
    url = url.strip()
    return url if _URL_RE.fullmatch(url) else None


def _truncate(body: str, budget: int, keep: int) -> str:
    """Cut ``body`` to ``budget`` weight at a word boundary after ``keep`` characters."""
    if tweet_length(body) <= budget:
        return body
    limit = budget - _weight(_ELLIPSIS)
    weight = 0
    cut = 0
    for i, ch in enumerate(body):
        weight += _weight(ch)
        if weight > limit:
            break
        cut = i + 1
    space = body.rfind(" ", keep, cut + 1)
    if space > keep:
        cut = space
    return body[:cut].rstrip(" ,;:-\u2013") + _ELLIPSIS


def _finish(author: str | None, body: str, url: str | None = None) -> str:
    """Address ``body`` to the author, strip other at signs, fit it, append ``url`` last."""
    prefix = f"@{author} " if author else ""
    for at in _AT_SIGNS:
        body = body.replace(at, "")
    if not author:
        body = body[:1].upper() + body[1:]
    tail = f" {url}" if url else ""
    text = _truncate(prefix + body, MAX_TWEET_LENGTH - tweet_length(tail), len(prefix))
    return text + tail


def _they(ctx: ReplyContext, fallback: str) -> str:
    return _names(ctx.recipients) or fallback


# One function per outcome. ----------------------------------------------------------------


def tipped(ctx: ReplyContext) -> str | None:
    """Silence: the creator notice in the supporter's thread confirms a tip."""
    return None


def held(ctx: ReplyContext) -> str | None:
    """Silence: the creator notice in the supporter's thread confirms a held tip."""
    return None


def flattred(ctx: ReplyContext) -> str | None:
    """Silence: a flattr becomes a tip at settlement, confirmed by the creator notice."""
    return None


def not_a_command(ctx: ReplyContext) -> str | None:
    """Silence: conversation that mentions the bot gets no answer."""
    return None


def already_flattred(ctx: ReplyContext) -> str | None:
    who = _they(ctx, "them")
    return _finish(
        _handle(ctx.author_handle),
        f"you already flattred {who} this month, and a flattr counts once a month. "
        "Add an amount if you'd like to tip more.",
    )


def insufficient_funds(ctx: ReplyContext) -> str | None:
    """What the whole tweet needed (``needed``) against what is ``available``.

    A tweet to several recipients applies to all of them or to none, so the need stated
    is the tweet's: ``amount`` each times the recipients.
    """
    if ctx.owed is not None and ctx.owed.minor > 0:
        body = (
            f"your tips are paused: a card payment was refunded or disputed and you owe"
            f" {ctx.owed}. The next money you add pays it first."
        )
        return _finish(_handle(ctx.author_handle), body + " Nothing was sent.")
    names = [name for name in map(_handle, ctx.recipients) if name]
    if ctx.amount is not None and len(names) > 1:
        what = f"tipping {_names(ctx.recipients)} {ctx.amount} each"
    else:
        what = "that tip"
    if ctx.available is not None and ctx.needed is not None:
        body = f"you have {ctx.available} available; {what} needs {ctx.needed}."
    elif ctx.needed is not None:
        body = f"you don't have enough available; {what} needs {ctx.needed}."
    else:
        body = "you don't have enough available for that tip."
    return _finish(_handle(ctx.author_handle), body + " Nothing was sent.")


def unknown_supporter(ctx: ReplyContext) -> str | None:
    url = _url(ctx.signup_url)
    body = "you have no funds on tipjar yet, so nothing was sent."
    if url:
        return _finish(_handle(ctx.author_handle), body + " Sign up to tip creators:", url)
    return _finish(_handle(ctx.author_handle), body + " Sign up on tipjar to tip creators.")


def unknown_recipient(ctx: ReplyContext) -> str | None:
    who = _they(ctx, "that account")
    return _finish(
        _handle(ctx.author_handle),
        f"I couldn't find {who} on X, so nothing was sent. Check the spelling and try again.",
    )


def self_tip(ctx: ReplyContext) -> str | None:
    return _finish(_handle(ctx.author_handle), "you can't tip yourself, so nothing was sent.")


def bot_tip(ctx: ReplyContext) -> str | None:
    return _finish(
        _handle(ctx.author_handle),
        "thanks, but I don't take tips! To tip a creator, mention me and then them.",
    )


def refusing_recipient(ctx: ReplyContext) -> str | None:
    who = _they(ctx, "that creator")
    verb = "doesn't" if len([r for r in ctx.recipients if _handle(r)]) <= 1 else "don't"
    return _finish(
        _handle(ctx.author_handle),
        f"{who} {verb} accept tips, so nothing was sent to them.",
    )


def bad_amount(ctx: ReplyContext) -> str | None:
    one, two = _examples(ctx.currency)
    what = _quote(ctx.detail) or "that"
    return _finish(
        _handle(ctx.author_handle),
        f"I couldn't read {what} as an amount, so nothing was sent. Write it right after "
        f"the names, like {one} or {two}, or write no number for a flattr.",
    )


def wrong_currency(ctx: ReplyContext) -> str | None:
    one, _two = _examples(ctx.currency)
    what = _quote(ctx.detail) or "that tip"
    return _finish(
        _handle(ctx.author_handle),
        f"tips here are in {_currency(ctx.currency).code}, so {what} wasn't sent. "
        f"Write it like {one}.",
    )


def too_small(ctx: ReplyContext) -> str | None:
    what = _quote(ctx.detail) or "that tip"
    floor = f"the smallest tip is {ctx.min_tip}" if ctx.min_tip else "that's below the minimum"
    return _finish(_handle(ctx.author_handle), f"{floor}, so {what} wasn't sent.")


def too_large(ctx: ReplyContext) -> str | None:
    what = _quote(ctx.detail) or "that tip"
    cap = f"the largest tip is {ctx.max_tip}" if ctx.max_tip else "that's above the maximum"
    return _finish(_handle(ctx.author_handle), f"{cap}, so {what} wasn't sent.")


def help_text(ctx: ReplyContext) -> str:
    one, _two = _examples(ctx.currency)
    bounds = ""
    if ctx.min_tip is not None and ctx.max_tip is not None:
        bounds = f" Tips go from {ctx.min_tip} to {ctx.max_tip}."
    return _finish(
        _handle(ctx.author_handle),
        f"to tip a creator, mention me, then them, then an amount like {one}. "
        "Without an amount it's a flattr: a share of your monthly budget. "
        f"Creators claim with Sign in with X; unclaimed money goes back to you.{bounds}",
    )


def stop_confirmation(ctx: ReplyContext) -> str:
    return _finish(
        _handle(ctx.author_handle),
        "done: no more notices from me. Anything already waiting for you can still be "
        "claimed until it expires.",
    )


REPLIES: Final[dict[Outcome, Callable[[ReplyContext], str | None]]] = {
    Outcome.tipped: tipped,
    Outcome.held: held,
    Outcome.flattred: flattred,
    Outcome.already_flattred: already_flattred,
    Outcome.insufficient_funds: insufficient_funds,
    Outcome.unknown_supporter: unknown_supporter,
    Outcome.unknown_recipient: unknown_recipient,
    Outcome.self_tip: self_tip,
    Outcome.bot_tip: bot_tip,
    Outcome.refusing_recipient: refusing_recipient,
    Outcome.bad_amount: bad_amount,
    Outcome.wrong_currency: wrong_currency,
    Outcome.too_small: too_small,
    Outcome.too_large: too_large,
    Outcome.not_a_command: not_a_command,
    Outcome.help: help_text,
    Outcome.stop: stop_confirmation,
}


def reply_for(outcome: Outcome, ctx: ReplyContext) -> str | None:
    """The reply text for ``outcome``, or None when the bot stays silent."""
    return REPLIES[outcome](ctx)


def _day(d: date) -> str:
    return f"{d.day} {_MONTHS[d.month - 1]}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


_SIGN_IN = {"x": "X", "mastodon": "Mastodon"}


def creator_notice(
    creator_handle: str,
    total: Money,
    supporters: int,
    tips: int,
    claim_url: str,
    expires_on: date,
    reminder: bool,
    platform: str = "x",
) -> str:
    """The notice posted in the thread of a tip: what waits for the creator, and until when.

    ``expires_on`` is the day the oldest hold expires. Raises ValueError for a handle or
    claim URL that cannot be used (configuration errors, not user input).
    """
    handle = _handle(creator_handle)
    url = _url(claim_url)
    if handle is None or url is None:
        raise ValueError("creator_notice needs a valid handle and an http(s) claim URL")
    site = _SIGN_IN.get(platform, "X")
    from_whom = _count(supporters, "supporter")
    if tips > supporters:
        from_whom += f" ({_count(tips, 'tip')})"
    by = _day(expires_on)
    if reminder:
        body = (
            f"a reminder: {total} from {from_whom} is still waiting for you on tipjar. "
            f"Claim it by {by} or it goes back to them. "
            f"Reply 'stop' for no more notices. Sign in with {site} to claim:"
        )
    else:
        body = (
            f"you have {total} waiting from {from_whom} on tipjar. "
            f"Claim it by {by}; after that it goes back to them. "
            f"Reply 'stop' for no more notices. Sign in with {site} to claim:"
        )
    return _finish(handle, body, url)
