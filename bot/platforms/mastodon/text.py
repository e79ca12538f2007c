"""Mastodon statuses as the tip language reads them: HTML to text, mentions, addresses.

A status's `content` is HTML. `status_text` turns it into plain text with the standard
library's HTML parser: paragraphs and `<br>` become line breaks, links become their text.
Who a status mentions is read from its `mentions[]` only, never guessed from the text:
each mention link becomes a short handle in the text (`@bob`, or `@m2` when two mentioned
accounts share a username or a username is not a handle the tip language can read), and
`handles` maps that handle to the account's full address. An `@` that is not a mention
link is written with a zero-width space after it, so the parser cannot take it for one.

A Mastodon account is known by its full address `username@domain`, lowercased, with the
domain always present: `acct` is `user` for accounts local to the instance the bot reads
from (they get that instance's domain, the one its WebFinger names) and `user@domain` for
the others (Mastodon writes the domain WebFinger named when it discovered the account).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MAX_ADDRESS_LENGTH",
    "StatusMention",
    "StatusText",
    "display_handle",
    "full_address",
    "is_full_address",
    "mentions_of",
    "parse_address",
    "status_text",
]

# The ledger keeps platform user ids in 64 characters; longer addresses are not accounts.
MAX_ADDRESS_LENGTH = 64
# The tip language reads handles of 1..20 word characters (twitter-text's rule).
_TEXT_HANDLE = re.compile(r"[A-Za-z0-9_]{1,20}")
_USERNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_DOMAIN = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}"  # example.social
    r"|127\.0\.0\.1:[0-9]{1,5}|localhost:[0-9]{1,5}"  # loopback instances (tests, sandbox)
)
_AT_SIGNS = ("@", "\uff20")
_NEUTRAL = "\u200b"  # after a stray "@": no handle can start there
_BREAKS = {"br"}
_BLOCKS = {"p", "div", "blockquote", "li", "ul", "ol", "pre", "h1", "h2", "h3", "h4", "h5"}


def is_full_address(text: str) -> bool:
    """True for ``bob@other.social`` (already lowercased, domain present)."""
    user, sep, domain = text.partition("@")
    return bool(sep) and bool(_USERNAME.fullmatch(user)) and bool(_DOMAIN.fullmatch(domain))


def parse_address(text: str) -> tuple[str, str] | None:
    """``@Bob@Other.Social`` or ``bob@other.social`` -> ("bob", "other.social"); else None."""
    text = text.strip().removeprefix("@").lower()
    user, sep, domain = text.partition("@")
    if not sep or not _USERNAME.fullmatch(user) or not _DOMAIN.fullmatch(domain):
        return None
    return user, domain


def full_address(acct: str, local_domain: str) -> str:
    """An `acct` as the instance wrote it -> ``user@domain``, lowercased, domain present.

    Raises ValueError for anything that is not a username with an optional domain.
    """
    acct = acct.strip().removeprefix("@").lower()
    user, sep, domain = acct.partition("@")
    address = f"{user}@{domain if sep else local_domain.lower()}"
    if not is_full_address(address) or len(address) > MAX_ADDRESS_LENGTH:
        raise ValueError(f"{acct!r} is not a Mastodon account address")
    return address


def display_handle(address: str) -> str:
    """``bob@other.social`` -> ``@bob@other.social``."""
    return "@" + address


@dataclass(frozen=True)
class StatusMention:
    """One entry of a status's `mentions[]`: the account's full address, as text reads it."""

    address: str  # bob@other.social
    username: str  # as the instance spells it
    url: str  # the profile link the content's mention link points to
    account_id: str  # the instance's own id of the account (in_reply_to_account_id)


def mentions_of(status: Mapping[str, Any], local_domain: str) -> list[StatusMention]:
    """A status's `mentions[]` as `StatusMention`s; entries that are not accounts are dropped."""
    found: list[StatusMention] = []
    raw = status.get("mentions")
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, Mapping):
            continue
        acct, username = entry.get("acct"), entry.get("username")
        if not isinstance(acct, str) or not isinstance(username, str):
            continue
        try:
            address = full_address(acct, local_domain)
        except ValueError:
            continue
        url = entry.get("url")
        found.append(
            StatusMention(
                address=address,
                username=username,
                url=url if isinstance(url, str) else "",
                account_id=str(entry.get("id") or ""),
            )
        )
    return found


@dataclass(frozen=True)
class StatusText:
    """A status's words as the tip language reads them."""

    text: str
    # casefolded handle as written in `text` (no "@") -> the account's full address
    handles: Mapping[str, str] = field(default_factory=dict)

    def handle_of(self, address: str) -> str | None:
        """The handle `address` is written as in `text` (None: not mentioned)."""
        for handle, addr in self.handles.items():
            if addr == address:
                return handle
        return None


def _assign_handles(mentions: Sequence[StatusMention], bot_address: str | None) -> dict[str, str]:
    """address -> the handle it is written as. The bot keeps its username; a username that
    is taken twice, or that the tip language cannot read, gets a neutral `m<n>` instead."""
    taken: dict[str, str] = {}  # casefolded handle -> address
    chosen: dict[str, str] = {}
    if bot_address:  # the bot's username means the bot, even when it is not mentioned
        taken[bot_address.partition("@")[0].casefold()] = bot_address
    for n, mention in enumerate(mentions, start=1):
        if mention.address in chosen:
            continue
        handle = mention.username
        if mention.address == bot_address:
            chosen[mention.address] = handle
            continue
        if not _TEXT_HANDLE.fullmatch(handle) or handle.casefold() in taken:
            handle = f"m{n}"
            while handle.casefold() in taken:
                handle += "_"
        taken[handle.casefold()] = mention.address
        chosen[mention.address] = handle
    return chosen


class _ContentParser(HTMLParser):
    """Collects the text of a status's HTML, replacing mention links by their handles."""

    def __init__(self, by_url: Mapping[str, str], by_text: Mapping[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self._by_url = by_url  # normalised href -> handle
        self._by_text = by_text  # casefolded "@user" / "@user@domain" -> handle
        self.parts: list[str] = []
        self._link: list[str] | None = None  # text of the open mention link
        self._link_handle: str | None = None
        self._link_depth = 0
        self._blocks_seen = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._link is not None:
            self._link_depth += tag == "a"
            return
        if tag in _BREAKS:
            self.parts.append("\n")
        elif tag in _BLOCKS:
            if self._blocks_seen:
                self.parts.append("\n\n")
            self._blocks_seen += 1
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self._link = []
            self._link_depth = 0
            self._link_handle = self._by_url.get(_normal_url(href))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BREAKS and self._link is None:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._link is None or tag != "a":
            return
        if self._link_depth:
            self._link_depth -= 1
            return
        shown = "".join(self._link)
        handle = self._link_handle or self._by_text.get(shown.strip().casefold())
        self.parts.append(f"@{handle}" if handle else _neutralise(shown))
        self._link = None

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link.append(data)
        else:
            self.parts.append(_neutralise(data))

    def text(self) -> str:
        if self._link is not None:  # an unclosed link: its text is still text
            self.parts.append(_neutralise("".join(self._link)))
            self._link = None
        return "".join(self.parts).strip()


def _neutralise(text: str) -> str:
    for at in _AT_SIGNS:
        text = text.replace(at, at + _NEUTRAL)
    return text


def _normal_url(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.netloc.lower()}{parts.path.rstrip('/')}"


def status_text(
    content: str, mentions: Sequence[StatusMention], *, bot_address: str | None = None
) -> StatusText:
    """The text of a status's HTML `content`, its mention links written as handles.

    A mention link is recognised by its `href` (the mention's `url`), or else by its text
    naming exactly one of `mentions` (`@bob` or `@bob@other.social`).
    """
    handles = _assign_handles(mentions, bot_address)
    by_url = {_normal_url(m.url): handles[m.address] for m in mentions if m.url}
    names: dict[str, set[str]] = {}
    for m in mentions:
        for shown in (f"@{m.username}", f"@{m.address}"):
            names.setdefault(shown.casefold(), set()).add(handles[m.address])
    by_text = {shown: next(iter(hs)) for shown, hs in names.items() if len(hs) == 1}
    parser = _ContentParser(by_url, by_text)
    parser.feed(content or "")
    parser.close()
    return StatusText(
        text=parser.text(),
        handles={handle.casefold(): address for address, handle in handles.items()},
    )
