"""Configuration: one `Settings` object read from the environment (and `.env`).

Every key is read and validated in one pass, so a broken deployment learns about all of
its problems at once instead of one per restart. Values are parsed into their real types
here (durations to `timedelta`, amounts to integer minor units) and nowhere else.
Secrets are kept out of `repr()` so they cannot leak into logs or tracebacks.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.hosts import is_loopback
from escrow.money import MAX_MINOR, Money, MoneyError, currency


class ConfigError(Exception):
    """The configuration has one or more problems; `problems` lists every one of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# No duration tipjar reads needs more than ten years; anything longer is a typo, and a
# far longer one would overflow the date arithmetic of every poll.
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30s``, ``15m``, ``2w`` -> timedelta; anything else raises ValueError."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (use forms like 90d, 12h, 15m, 30s)")
    digits, unit = m.group(1), m.group(2)
    value = int(digits) if len(digits) <= 12 else 10**12
    if value <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    if value * _UNIT_SECONDS[unit] > MAX_DURATION.total_seconds():
        raise ValueError(f"{text.strip()!r} is longer than the most allowed, 3650d (ten years)")
    return timedelta(**{_UNITS[unit]: value})


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for suffix, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"


@dataclass(frozen=True)
class NoticeSchedule:
    """When a creator is told money is waiting: at the first hold, and/or before expiry."""

    at_first_hold: bool = True
    reminders_before_expiry: tuple[timedelta, ...] = (timedelta(days=14),)


def parse_notice_schedule(text: str) -> NoticeSchedule:
    """``first,before-expiry:14d`` (the default); ``none`` turns creator notices off."""
    text = text.strip().lower()
    if text in ("", "none", "off"):
        return NoticeSchedule(at_first_hold=False, reminders_before_expiry=())
    first = False
    reminders: list[timedelta] = []
    for part in (p.strip() for p in text.split(",")):
        if part == "first":
            first = True
        elif part.startswith("before-expiry:"):
            reminders.append(parse_duration(part.removeprefix("before-expiry:")))
        else:
            raise ValueError(
                f"{part!r} is not a notice rule (use 'first', 'before-expiry:14d' or 'none')"
            )
    return NoticeSchedule(first, tuple(sorted(reminders, reverse=True)))


def _secret() -> Any:
    return field(default="", repr=False)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///tipjar.db"
    currency: str = "EUR"
    fee_percent: int = 10
    hold_period: timedelta = timedelta(days=90)
    min_tip_minor: int = 10
    max_tip_minor: int = 10_000
    min_monthly_budget_minor: int = 200
    poll_interval: timedelta = timedelta(seconds=60)
    notice_schedule: NoticeSchedule = NoticeSchedule()
    notices_per_day: int = 50
    notice_min_held_minor: int = 100
    notices_per_supporter_per_day: int = 3
    replies_per_day: int = 200
    # The platform bills in USD: the spend cap and the prices are integer micro-dollars.
    x_daily_budget_usd_micros: int = 5_000_000
    x_price_post_usd_micros: int = 15_000
    x_price_post_with_link_usd_micros: int = 200_000
    x_price_mention_read_usd_micros: int = 1_000
    x_bot_username: str = "flattr"
    x_bot_user_id: str = ""
    x_bearer_token: str = _secret()
    x_api_key: str = _secret()
    x_api_secret: str = _secret()
    x_access_token: str = _secret()
    x_access_token_secret: str = _secret()
    x_client_id: str = ""
    x_client_secret: str = _secret()
    x_api_base_url: str = "https://api.twitter.com"
    x_oauth_authorize_url: str = "https://x.com/i/oauth2/authorize"
    x_oauth_token_url: str = "https://api.x.com/2/oauth2/token"  # noqa: S105 (a URL)
    public_base_url: str = "http://localhost:8000"
    secret_key: str = _secret()
    log_level: str = "INFO"
    platforms: tuple[str, ...] = ("x",)
    mastodon_base_url: str = ""
    mastodon_access_token: str = _secret()
    mastodon_bot_acct: str = ""
    allow_loopback_instances: bool = False
    stripe_secret_key: str = _secret()
    stripe_webhook_secret: str = _secret()
    stripe_api_base: str = "https://api.stripe.com"
    topup_choices_minor: tuple[int, ...] = (500, 1000, 2500)
    topup_min_minor: int = 200
    topup_max_minor: int = 50_000
    payout_provider: str = ""  # empty: `stripe` with a Stripe key, else `off`
    payout_min_minor: int = 1000
    payout_schedule: str = "manual"
    stripe_connect_webhook_secret: str = _secret()
    payout_details_key: str = _secret()
    # operations (issue 19)
    log_format: str = "text"
    metrics_port: str = ""  # off; "9100" listens on loopback, "0.0.0.0:9100" on all
    prometheus_multiproc_dir: str = ""
    sentry_dsn: str = _secret()
    admin_ids: frozenset[str] = frozenset()

    @property
    def mastodon_domain(self) -> str:
        """The bot's instance's domain, as account addresses name it (example.social)."""
        return self.mastodon_bot_acct.partition("@")[2]

    @property
    def mastodon_bot_username(self) -> str:
        return self.mastodon_bot_acct.partition("@")[0]

    def serves(self, platform: str) -> bool:
        """Whether `platform` ("x", "mastodon") is enabled in PLATFORMS."""
        return platform in self.platforms

    def money(self, minor: int) -> Money:
        return Money(minor, self.currency)

    @property
    def min_tip(self) -> Money:
        return self.money(self.min_tip_minor)

    @property
    def max_tip(self) -> Money:
        return self.money(self.max_tip_minor)

    @property
    def min_monthly_budget(self) -> Money:
        return self.money(self.min_monthly_budget_minor)

    @property
    def notice_min_held(self) -> Money:
        return self.money(self.notice_min_held_minor)

    @property
    def topups_enabled(self) -> bool:
        """Card top-ups need the provider's secret key; without it they are off."""
        return bool(self.stripe_secret_key)

    @property
    def topup_choices(self) -> tuple[Money, ...]:
        return tuple(self.money(m) for m in self.topup_choices_minor)

    @property
    def topup_min(self) -> Money:
        return self.money(self.topup_min_minor)

    @property
    def topup_max(self) -> Money:
        return self.money(self.topup_max_minor)

    @property
    def payout_method(self) -> str:
        """How creators are paid: `stripe`, `manual` or `off` (PAYOUT_PROVIDER, else `stripe`
        when a Stripe key is set)."""
        if self.payout_provider:
            return self.payout_provider
        return "stripe" if self.stripe_secret_key else "off"

    @property
    def payout_min(self) -> Money:
        return self.money(self.payout_min_minor)

    def payouts_status(self) -> str:
        """One line for check-config: how creators withdraw."""
        method = self.payout_method
        if method == "off":
            return "payouts are off (PAYOUT_PROVIDER=off, or no STRIPE_SECRET_KEY)"
        line = (
            f"payouts are on ({method}, at least {self.payout_min},"
            f" schedule {self.payout_schedule})"
        )
        if method == "stripe" and not self.stripe_connect_webhook_secret:
            line += (
                "; STRIPE_CONNECT_WEBHOOK_SECRET is not set, so tipjar never learns that a"
                " connected account may be paid"
            )
        return line

    def payments_status(self) -> str:
        """One line for check-config: whether supporters can add money by card."""
        if not self.topups_enabled:
            return (
                "card top-ups are off (STRIPE_SECRET_KEY is not set): supporters are funded"
                " by `tipjar funds deposit`"
            )
        mode = "live" if self.stripe_secret_key.startswith(("sk_live_", "rk_live_")) else "test"
        return f"card top-ups are on (Stripe, {mode} mode)"

    @property
    def callback_url(self) -> str:
        return self.public_base_url.rstrip("/") + "/oauth/callback"

    def live_problems(self) -> list[str]:
        """What is missing to run live (worker, poll, web sign-in) on the enabled platforms."""
        needed = [*LIVE_KEYS]
        if self.serves("x"):
            needed += X_LIVE_KEYS
        if self.serves("mastodon"):
            needed += MASTODON_LIVE_KEYS
        problems = [
            f"{key} is missing: {KEYS[key].help}"
            for key in needed
            if not getattr(self, key.lower())
        ]
        if self.secret_key and len(self.secret_key) < 32:
            problems.append("SECRET_KEY is too short: use at least 32 random characters")
        if self.allow_loopback_instances and self.public_base_url.startswith("https://"):
            problems.append(
                "ALLOW_LOOPBACK_INSTANCES is for the sandbox and local tests only:"
                " turn it off when PUBLIC_BASE_URL is https"
            )
        return problems

    def redacted(self) -> dict[str, str]:
        """Every key with its value as text, secrets shown only as set or not set."""
        out = {}
        for key, spec in KEYS.items():
            attr = f"{key.lower()}_usd_micros" if key in _USD_KEYS else key.lower()
            value = getattr(self, attr)
            if spec.secret:
                out[key] = "(set)" if value else "(not set)"
            elif key == "DATABASE_URL":
                out[key] = mask_database_url(value)
            elif key == "PAYOUT_PROVIDER":
                out[key] = self.payout_method
            else:
                out[key] = spec.show(value)
        return out


@dataclass(frozen=True)
class KeySpec:
    help: str
    parse: Callable[[str], Any] = str
    show: Callable[[Any], str] = str
    secret: bool = False


def _currency_code(text: str) -> str:
    try:
        return currency(text.strip()).code
    except MoneyError as e:
        raise ValueError(str(e)) from None


def _percent(text: str) -> int:
    if not re.fullmatch(r"\d{1,3}", text.strip()) or int(text) > 100:
        raise ValueError(f"{text!r} is not a whole percentage from 0 to 100")
    return int(text)


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def _url(text: str) -> str:
    text = text.strip()
    if not re.match(r"https?://[^\s/]+", text):
        raise ValueError(f"{text!r} is not an http(s) URL")
    return text.rstrip("/")


def _endpoint(text: str) -> str:
    """An http(s) URL that carries tokens: plain http only to this machine (the sandbox)."""
    url = _url(text)
    parts = urlsplit(url)
    if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
        raise ValueError(f"{url!r} must use https:// (plain http:// only to this machine)")
    return url


def mask_database_url(url: str) -> str:
    """The URL with its password replaced by ***, for anything shown to a person."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"://[^@/]*@", "://***@", url)


def _database_url(text: str) -> str:
    text = text.strip()
    if not re.match(r"(sqlite|postgres|postgresql)(\+\w+)?://", text):
        raise ValueError(f"{mask_database_url(text)!r} is not a sqlite:/// or postgresql:// URL")
    return text


def usd_micros(text: str) -> int:
    """A USD price or budget such as ``0.015`` or ``5.00`` -> integer micro-dollars."""
    m = re.fullmatch(r"\s*(\d{1,9})(?:\.(\d{1,6}))?\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not an amount of US dollars (e.g. 0.015 or 5.00)")
    return int(m.group(1)) * 1_000_000 + int((m.group(2) or "").ljust(6, "0"))


def _username(text: str) -> str:
    text = text.strip().lstrip("@")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,15}", text):
        raise ValueError(f"{text!r} is not an X username (1-15 letters, digits or _)")
    return text


def _user_id(text: str) -> str:
    text = text.strip()
    if text and not re.fullmatch(r"\d{1,20}", text):
        raise ValueError(f"{text!r} is not a numeric X user id")
    return text


def _platforms(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in PLATFORM_NAMES]
    if unknown or not names:
        raise ValueError(f"{text!r} is not x, mastodon or x,mastodon")
    return names


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ValueError(f"{text!r} is not 1 or 0")
    return value in ("1", "true", "yes", "on")


_MASTODON_ACCT = re.compile(
    r"[a-z0-9_]{1,30}@(?:[a-z0-9-]+\.)+[a-z]{2,63}"
    r"|[a-z0-9_]{1,30}@127\.0\.0\.1:[0-9]{1,5}"  # a loopback instance (sandbox, tests)
)


def _mastodon_acct(text: str) -> str:
    text = text.strip().removeprefix("@").lower()
    if not _MASTODON_ACCT.fullmatch(text):
        raise ValueError(f"{text!r} is not a Mastodon address like flattr@example.social")
    return text


def _stripe_key(text: str) -> str:
    text = text.strip()
    if not re.fullmatch(r"(sk|rk)_(test|live)_[A-Za-z0-9_]+", text):
        # Never echo the value: it may be a real key pasted into the wrong place.
        raise ValueError("is not a Stripe secret key (sk_test_… or sk_live_…)")
    return text


def _api_base(text: str) -> str:
    url = _url(text)
    host = (urlsplit(url).hostname or "").lower()
    if url.startswith("http://") and not is_loopback(host):
        raise ValueError(f"{url!r}: a remote Stripe API must be https (http is for loopback)")
    return url


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"{text.strip()!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _fernet_key(text: str) -> str:
    """A Fernet key: 32 bytes in URL-safe base64 (never echoed: it is a secret)."""
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(
            "is not a Fernet key (make one with: python -c 'from cryptography.fernet import"
            " Fernet; print(Fernet.generate_key().decode())')"
        )
    return text


def _log_level(text: str) -> str:
    text = text.strip().upper()
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"{text!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return text


def _schedule_show(s: NoticeSchedule) -> str:
    parts = ["first"] if s.at_first_hold else []
    parts += [f"before-expiry:{format_duration(d)}" for d in s.reminders_before_expiry]
    return ",".join(parts) or "none"


def _log_format(text: str) -> str:
    text = text.strip().lower()
    if text not in ("text", "json"):
        raise ValueError(f"{text!r} is not 'text' or 'json'")
    return text


def listen_address(text: str) -> tuple[str, int]:
    """METRICS_PORT as (address, port): `9100` listens on loopback, `0.0.0.0:9100` on all."""
    host, _, port = text.strip().rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not a port (9100) or an address and port (0.0.0.0:9100)")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _listen(text: str) -> str:
    listen_address(text)
    return text.strip()


_ADMIN_ID = re.compile(r"x:\d{1,20}|mastodon:[A-Za-z0-9_.]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _admin_ids(text: str) -> frozenset[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    bad = [i for i in ids if not _ADMIN_ID.fullmatch(i)]
    if bad:
        raise ValueError(
            f"{', '.join(bad)}: give each maintainer as x:NUMERIC_ID or mastodon:user@domain"
        )
    return frozenset(i if i.startswith("x:") else i.lower() for i in ids)


def _sentry_dsn(text: str) -> str:
    text = text.strip()
    if not re.match(r"https?://[^@\s]+@[^\s/]+/\S+", text):
        raise ValueError("is not a Sentry DSN (https://KEY@HOST/PROJECT)")
    return text


_MONEY_KEYS = {
    "MIN_TIP",
    "MAX_TIP",
    "MIN_MONTHLY_BUDGET",
    "NOTICE_MIN_HELD",
    "TOPUP_MIN",
    "TOPUP_MAX",
    "PAYOUT_MIN",
}
_USD_KEYS = {
    "X_DAILY_BUDGET",
    "X_PRICE_POST",
    "X_PRICE_POST_WITH_LINK",
    "X_PRICE_MENTION_READ",
}


def _show_usd(micros: int) -> str:
    dollars, rest = divmod(micros, 1_000_000)
    return f"{dollars}.{str(rest).rjust(6, '0').rstrip('0').ljust(2, '0')} USD"


KEYS: dict[str, KeySpec] = {
    "DATABASE_URL": KeySpec("database URL: sqlite:///tipjar.db or postgresql://...", _database_url),
    "CURRENCY": KeySpec("the one ISO currency of this deployment, e.g. EUR", _currency_code),
    "FEE_PERCENT": KeySpec("the operator's fee on every tip, whole percent, floored", _percent),
    "HOLD_PERIOD": KeySpec(
        "how long a tip waits for its creator before it returns", parse_duration, format_duration
    ),
    "MIN_TIP": KeySpec("smallest tip, e.g. 0.10"),
    "MAX_TIP": KeySpec("largest tip, e.g. 100.00"),
    "MIN_MONTHLY_BUDGET": KeySpec("smallest monthly flattr budget, e.g. 2.00"),
    "POLL_INTERVAL": KeySpec(
        "how often the worker polls mentions", parse_duration, format_duration
    ),
    "NOTICE_SCHEDULE": KeySpec(
        "when creators hear of waiting money", parse_notice_schedule, _schedule_show
    ),
    "NOTICES_PER_DAY": KeySpec("cap on notice tweets per day", _positive_int),
    "NOTICE_MIN_HELD": KeySpec("a creator's first notice waits until this much is held"),
    "NOTICES_PER_SUPPORTER_PER_DAY": KeySpec(
        "notices one supporter's tips may trigger per day", _positive_int
    ),
    "REPLIES_PER_DAY": KeySpec("cap on replies to supporters per day", _positive_int),
    "X_DAILY_BUDGET": KeySpec("estimated X spend cap per day, USD", usd_micros, _show_usd),
    "X_PRICE_POST": KeySpec("what X bills per post, USD", usd_micros, _show_usd),
    "X_PRICE_POST_WITH_LINK": KeySpec(
        "what X bills per post with a link, USD", usd_micros, _show_usd
    ),
    "X_PRICE_MENTION_READ": KeySpec("what X bills per mention read, USD", usd_micros, _show_usd),
    "X_BOT_USERNAME": KeySpec("the bot's handle without @", _username),
    "X_BOT_USER_ID": KeySpec("the bot's numeric X user id", _user_id),
    "X_BEARER_TOKEN": KeySpec("app bearer token (reads mentions and users)", secret=True),
    "X_API_KEY": KeySpec("OAuth 1.0a consumer key (posts replies)", secret=True),
    "X_API_SECRET": KeySpec("OAuth 1.0a consumer secret", secret=True),
    "X_ACCESS_TOKEN": KeySpec("the bot account's OAuth 1.0a access token", secret=True),
    "X_ACCESS_TOKEN_SECRET": KeySpec("the bot account's access token secret", secret=True),
    "X_CLIENT_ID": KeySpec("OAuth 2.0 client id (Sign in with X)"),
    "X_CLIENT_SECRET": KeySpec("OAuth 2.0 client secret", secret=True),
    "X_API_BASE_URL": KeySpec("X API host", _endpoint),
    "X_OAUTH_AUTHORIZE_URL": KeySpec("OAuth 2.0 authorize page", _endpoint),
    "X_OAUTH_TOKEN_URL": KeySpec("OAuth 2.0 token endpoint", _endpoint),
    "PUBLIC_BASE_URL": KeySpec("where the web app is reachable", _url),
    "SECRET_KEY": KeySpec("signs session cookies; 32+ random characters", secret=True),
    "LOG_LEVEL": KeySpec("DEBUG, INFO, WARNING or ERROR", _log_level),
    "PLATFORMS": KeySpec("where the bot lives: x, mastodon or x,mastodon", _platforms, ",".join),
    "MASTODON_BASE_URL": KeySpec("the bot's Mastodon instance, e.g. https://example.social", _url),
    "MASTODON_ACCESS_TOKEN": KeySpec(
        "the bot account's token (read notifications and statuses, write statuses)", secret=True
    ),
    "MASTODON_BOT_ACCT": KeySpec(
        "the bot's full address, e.g. flattr@example.social", _mastodon_acct
    ),
    "ALLOW_LOOPBACK_INSTANCES": KeySpec(
        "1 lets sign-in reach instances on 127.0.0.1 (sandbox and local tests only)",
        _flag,
        lambda v: "1" if v else "0",
    ),
    "LOG_FORMAT": KeySpec("text (default) or json: one JSON object a line", _log_format),
    "METRICS_PORT": KeySpec(
        "the worker's /metrics: 9100 (loopback) or 0.0.0.0:9100; empty: off", _listen
    ),
    "PROMETHEUS_MULTIPROC_DIR": KeySpec(
        "a directory where gunicorn's web workers share their metrics"
    ),
    "SENTRY_DSN": KeySpec("report errors to Sentry; empty: off", _sentry_dsn, secret=True),
    "ADMIN_IDS": KeySpec(
        "who may open /admin: x:ID or mastodon:user@domain, comma-separated",
        _admin_ids,
        lambda ids: ",".join(sorted(ids)),
    ),
    "STRIPE_SECRET_KEY": KeySpec(
        "Stripe secret key (sk_test_… or sk_live_…); empty: card top-ups are off",
        _stripe_key,
        secret=True,
    ),
    "STRIPE_WEBHOOK_SECRET": KeySpec(
        "signing secret (whsec_…) of the Stripe webhook endpoint /stripe/webhook", secret=True
    ),
    "STRIPE_API_BASE": KeySpec(
        "Stripe API host; the sandbox and tests point it elsewhere", _api_base
    ),
    "TOPUP_CHOICES": KeySpec(
        "amounts offered on /me, e.g. 5,10,25", show=lambda t: ",".join(m.plain() for m in t)
    ),
    "TOPUP_MIN": KeySpec("smallest card top-up, e.g. 2.00"),
    "TOPUP_MAX": KeySpec("largest card top-up, e.g. 500.00"),
    "PAYOUT_PROVIDER": KeySpec(
        "how creators withdraw: stripe (Connect), manual (the maintainer pays) or off;"
        " default stripe with a Stripe key, else off",
        _one_of("stripe", "manual", "off"),
    ),
    "PAYOUT_MIN": KeySpec("smallest withdrawal, e.g. 10.00"),
    "PAYOUT_SCHEDULE": KeySpec(
        "manual (creators ask), weekly or monthly (the worker pays every balance)",
        _one_of("manual", "weekly", "monthly"),
    ),
    "STRIPE_CONNECT_WEBHOOK_SECRET": KeySpec(
        "signing secret (whsec_…) of the Connect webhook endpoint /stripe/webhook/connect",
        secret=True,
    ),
    "PAYOUT_DETAILS_KEY": KeySpec(
        "Fernet key that encrypts creators' payout details (manual provider)",
        _fernet_key,
        secret=True,
    ),
}

PLATFORM_NAMES = ("x", "mastodon")

LIVE_KEYS = ("SECRET_KEY",)
X_LIVE_KEYS = (
    "X_BOT_USER_ID",
    "X_BEARER_TOKEN",
    "X_API_KEY",
    "X_API_SECRET",
    "X_ACCESS_TOKEN",
    "X_ACCESS_TOKEN_SECRET",
    "X_CLIENT_ID",
    "X_CLIENT_SECRET",
)
MASTODON_LIVE_KEYS = ("MASTODON_BASE_URL", "MASTODON_ACCESS_TOKEN", "MASTODON_BOT_ACCT")

_FIELD_NAMES = {f.name for f in fields(Settings)}


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
) -> Settings:
    """Read every key from `environ` (default: the process environment) over `env_file`.

    Raises ConfigError listing every malformed key. Keys left empty take their defaults.
    """
    values: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update(dotenv_values(env_file))
    values.update(os.environ if environ is None else environ)

    problems: list[str] = []
    parsed: dict[str, Any] = {}
    for key, spec in KEYS.items():
        raw = values.get(key)
        if raw is None or raw.strip() == "":
            continue
        try:
            if key in _MONEY_KEYS or key == "TOPUP_CHOICES":
                parsed[key] = raw
            elif key in _USD_KEYS:
                parsed[f"{key.lower()}_usd_micros"] = spec.parse(raw)
            else:
                parsed[key.lower()] = spec.parse(raw)
        except ValueError as e:
            problems.append(f"{key}: {e}")

    code = parsed.get("currency", Settings.currency)
    for key in _MONEY_KEYS:
        if key in parsed:
            try:
                parsed[f"{key.lower()}_minor"] = Money.parse(parsed.pop(key), code).minor
            except MoneyError as e:
                problems.append(f"{key}: {e}")
    if "TOPUP_CHOICES" in parsed:
        try:
            parsed["topup_choices_minor"] = tuple(
                Money.parse(part.strip(), code).minor
                for part in parsed.pop("TOPUP_CHOICES").split(",")
                if part.strip()
            )
        except MoneyError as e:
            problems.append(f"TOPUP_CHOICES: {e}")
    settings = Settings(**{k: v for k, v in parsed.items() if k in _FIELD_NAMES})
    problems.extend(_payment_problems(settings))

    problems += _bound_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _bound_problems(settings: Settings) -> list[str]:
    """Cross-key and range checks that need every value parsed first."""
    problems = []
    for key in sorted(_MONEY_KEYS):
        minor = getattr(settings, f"{key.lower()}_minor")
        if minor <= 0:
            problems.append(f"{key}: must be more than zero")
        elif minor > MAX_MINOR:
            problems.append(f"{key}: {settings.money(minor)} is above the largest amount allowed")
    if settings.max_tip_minor < settings.min_tip_minor:
        problems.append("MAX_TIP: must not be below MIN_TIP")
    return problems


def _payment_problems(settings: Settings) -> list[str]:
    """Card top-up keys that cannot work together."""
    problems = []
    if settings.topup_max_minor < settings.topup_min_minor:
        problems.append("TOPUP_MAX: must not be below TOPUP_MIN")
    for choice in settings.topup_choices:
        if not settings.topup_min_minor <= choice.minor <= settings.topup_max_minor:
            problems.append(f"TOPUP_CHOICES: {choice} is outside TOPUP_MIN..TOPUP_MAX")
    if settings.stripe_secret_key.startswith(("sk_live_", "rk_live_")):
        if settings.public_base_url.startswith("http://"):
            problems.append(
                "STRIPE_SECRET_KEY is a live key but PUBLIC_BASE_URL is http://: real card"
                " payments need an https site"
            )
    if settings.payout_method == "manual" and not settings.payout_details_key:
        problems.append(
            "PAYOUT_DETAILS_KEY is missing: the manual provider keeps creators' payout details"
            " encrypted with it"
        )
    if settings.payout_method == "stripe" and not settings.stripe_secret_key:
        problems.append("PAYOUT_PROVIDER=stripe needs STRIPE_SECRET_KEY")
    if settings.stripe_secret_key and not settings.stripe_webhook_secret:
        problems.append(
            "STRIPE_WEBHOOK_SECRET is missing: without it no payment can be credited"
            " (set the signing secret of the /stripe/webhook endpoint)"
        )
    return problems
