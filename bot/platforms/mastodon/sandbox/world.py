"""The state behind the Mastodon sandbox: a small fediverse of loopback instances.

Accounts, statuses, notifications, registered apps, authorization codes and tokens live
here, shared by every instance of one `Fediverse`, so that a status posted on one
instance mentioning an account on another notifies that account on its own instance, as
federation does. Statuses are written as people type them and stored with the HTML and
`mentions[]` that Mastodon would render for them. Faults (5xx, 429, slow or oversized
answers, an instance that answers for another domain) are injected here for tests.
"""

from __future__ import annotations

import html
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = [
    "RATE_LIMIT",
    "RATE_WINDOW",
    "Account",
    "App",
    "Fault",
    "Fediverse",
    "Grant",
    "InstanceData",
    "Notification",
    "Status",
]

RATE_LIMIT = 300  # Mastodon's default: 300 calls per account per 5 minutes
RATE_WINDOW = timedelta(minutes=5)
_MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{1,30})(?:@([a-z0-9.-]+(?::[0-9]{1,5})?))?")

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Account:
    id: str
    username: str
    domain: str
    display_name: str = ""
    bot: bool = False
    created_at: datetime = field(default_factory=_now)

    @property
    def address(self) -> str:
        return f"{self.username.lower()}@{self.domain}"

    def acct_on(self, domain: str) -> str:
        """`acct` as the instance `domain` writes it: bare for its own accounts."""
        return self.username if self.domain == domain else f"{self.username}@{self.domain}"


@dataclass
class Status:
    id: str
    author: str  # address
    text: str  # as typed
    content: str  # as Mastodon renders it
    mentions: list[str]  # addresses, in order of appearance
    visibility: str
    created_at: datetime
    in_reply_to_id: str | None = None
    in_reply_to_account: str | None = None  # address
    reblog_of: str | None = None
    edited_at: datetime | None = None


@dataclass(frozen=True)
class Notification:
    id: int
    type: str
    account: str  # address of the account that caused it
    status_id: str | None
    created_at: datetime


@dataclass
class App:
    client_id: str
    client_secret: str
    name: str
    redirect_uris: list[str]
    scopes: list[str]
    website: str | None


@dataclass
class Grant:
    code: str
    client_id: str
    redirect_uri: str
    address: str
    scopes: list[str]
    challenge: str | None
    method: str | None
    created_at: datetime
    used: bool = False


@dataclass
class Fault:
    """The next `times` requests whose path starts with `path` get this answer instead."""

    path: str
    status: int = 503
    times: int = 1
    delay: float = 0.0  # seconds before answering (a slow instance)
    size: int = 0  # bytes of padding in the body (an oversized answer)
    body: str | None = None
    reset_in: timedelta = timedelta(minutes=5)  # for 429: when the window resets


@dataclass
class InstanceData:
    domain: str
    base_url: str
    title: str
    apps: dict[str, App] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # -> address, scopes
    notifications: dict[str, list[Notification]] = field(default_factory=dict)  # by address
    next_notification: int = 1
    faults: list[Fault] = field(default_factory=list)
    calls: int = 0
    window_start: datetime | None = None
    # WebFinger answers name this domain instead of the instance's own (a lying instance)
    answers_for: str | None = None
    pkce: bool = True  # whether its oauth-authorization-server document lists S256


class Fediverse:
    """Every instance, account and status of the sandbox. Thread-safe; ids grow over time."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or _now
        self.lock = threading.RLock()
        self.instances: dict[str, InstanceData] = {}
        self.accounts: dict[str, Account] = {}  # by address
        self.statuses: dict[str, Status] = {}
        self._next_id = 110_000_000_000_000_000

    # -- building the world ----------------------------------------------------------

    def new_id(self) -> str:
        with self.lock:
            self._next_id += 1 + secrets.randbelow(1000)
            return str(self._next_id)

    def add_instance(self, domain: str, base_url: str, title: str = "Mastodon") -> InstanceData:
        with self.lock:
            data = InstanceData(domain, base_url, title)
            self.instances[domain] = data
            return data

    def add_account(
        self, domain: str, username: str, *, display_name: str = "", bot: bool = False
    ) -> Account:
        with self.lock:
            if domain not in self.instances:
                raise KeyError(f"no instance {domain}")
            account = Account(self.new_id(), username, domain, display_name, bot, self.clock())
            self.accounts[account.address] = account
            return account

    def account(self, address: str) -> Account:
        return self.accounts[address.lower().removeprefix("@")]

    def account_by_id(self, account_id: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.id == account_id), None)

    def profile_url(self, account: Account) -> str:
        return f"{self.instances[account.domain].base_url}/@{account.username}"

    # -- statuses ----------------------------------------------------------------------

    def _resolve_mention(self, username: str, domain: str | None, home: str) -> Account | None:
        return self.accounts.get(f"{username.lower()}@{(domain or home).lower()}")

    def render(self, text: str, home: str) -> tuple[str, list[str]]:
        """Text as typed -> (Mastodon's HTML, mentioned addresses), as the home instance
        `home` renders it: known accounts become h-card links, line breaks `<br />`."""
        mentioned: list[str] = []
        out: list[str] = []
        pos = 0
        for m in _MENTION_RE.finditer(text):
            account = self._resolve_mention(m.group(1), m.group(2), home)
            if account is None:
                continue
            out.append(html.escape(text[pos : m.start()], quote=False))
            out.append(
                f'<span class="h-card" translate="no"><a href="{self.profile_url(account)}"'
                f' class="u-url mention">@<span>{account.username}</span></a></span>'
            )
            if account.address not in mentioned:
                mentioned.append(account.address)
            pos = m.end()
        out.append(html.escape(text[pos:], quote=False))
        paragraphs = "".join(out).split("\n\n")
        body = "".join(f"<p>{p.replace(chr(10), '<br />')}</p>" for p in paragraphs)
        return body, mentioned

    def post(
        self,
        author: str,
        text: str,
        *,
        in_reply_to_id: str | None = None,
        visibility: str = "public",
    ) -> Status:
        """`author` posts `text`; every account it mentions is notified on its instance."""
        with self.lock:
            account = self.account(author)
            content, mentioned = self.render(text, account.domain)
            parent = self.statuses.get(in_reply_to_id) if in_reply_to_id else None
            status = Status(
                id=self.new_id(),
                author=account.address,
                text=text,
                content=content,
                mentions=mentioned,
                visibility=visibility,
                created_at=self.clock(),
                in_reply_to_id=parent.id if parent else None,
                in_reply_to_account=parent.author if parent else None,
            )
            self.statuses[status.id] = status
            for address in mentioned:
                if address != account.address:
                    self.notify(address, "mention", account.address, status.id)
            return status

    def reply(
        self, author: str, parent_id: str, text: str, *, visibility: str | None = None
    ) -> Status:
        """A reply as Mastodon's clients write it: every mention of the thread prefilled."""
        with self.lock:
            parent = self.statuses[parent_id]
            me = self.account(author)
            prefill = [parent.author, *parent.mentions]
            names = []
            for address in dict.fromkeys(prefill):
                if address != me.address:
                    names.append("@" + self.account(address).acct_on(me.domain))
            typed = " ".join([*names, text]) if names else text
            return self.post(
                author, typed, in_reply_to_id=parent_id, visibility=visibility or parent.visibility
            )

    def edit(self, status_id: str, text: str) -> Status:
        """Edit a status in place (same id); mentioned accounts get an `update` notice."""
        with self.lock:
            status = self.statuses[status_id]
            author = self.account(status.author)
            status.text = text
            status.content, status.mentions = self.render(text, author.domain)
            status.edited_at = self.clock()
            for address in status.mentions:
                if address != status.author:
                    self.notify(address, "update", status.author, status.id)
            return status

    def boost(self, booster: str, status_id: str) -> Status:
        """`booster` reblogs a status; its author gets a `reblog` notice."""
        with self.lock:
            original = self.statuses[status_id]
            account = self.account(booster)
            status = Status(
                id=self.new_id(),
                author=account.address,
                text="",
                content="",
                mentions=[],
                visibility="public",
                created_at=self.clock(),
                reblog_of=original.id,
            )
            self.statuses[status.id] = status
            self.notify(original.author, "reblog", account.address, original.id)
            return status

    def notify(self, address: str, kind: str, by: str, status_id: str | None) -> Notification:
        with self.lock:
            home = self.instances[self.account(address).domain]
            note = Notification(home.next_notification, kind, by, status_id, self.clock())
            home.next_notification += 1
            home.notifications.setdefault(address, []).append(note)
            return note

    # -- OAuth ---------------------------------------------------------------------------

    def register_app(
        self,
        domain: str,
        name: str,
        redirect_uris: list[str],
        scopes: list[str],
        website: str | None,
    ) -> App:
        with self.lock:
            app = App(
                client_id=secrets.token_urlsafe(32),
                client_secret=secrets.token_urlsafe(32),
                name=name,
                redirect_uris=redirect_uris,
                scopes=scopes,
                website=website,
            )
            self.instances[domain].apps[app.client_id] = app
            return app

    def issue_token(self, address: str, scopes: list[str]) -> str:
        """A user token on the account's own instance, without the consent dance."""
        with self.lock:
            token = secrets.token_urlsafe(32)
            self.instances[self.account(address).domain].tokens[token] = (address, scopes)
            return token

    def fail_next(self, domain: str, fault: Fault) -> None:
        with self.lock:
            self.instances[domain].faults.append(fault)

    def take_fault(self, domain: str, path: str) -> Fault | None:
        with self.lock:
            faults = self.instances[domain].faults
            for fault in faults:
                if path.startswith(fault.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        faults.remove(fault)
                    return fault
            return None

    def count_call(self, domain: str) -> tuple[int, datetime]:
        """One more metered call on `domain`: (remaining, reset)."""
        with self.lock:
            data = self.instances[domain]
            now = self.clock()
            if data.window_start is None or now - data.window_start >= RATE_WINDOW:
                data.window_start, data.calls = now, 0
            data.calls += 1
            return max(RATE_LIMIT - data.calls, 0), data.window_start + RATE_WINDOW
