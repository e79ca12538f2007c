"""The untrusted-instance guard: tipjar talks to Mastodon instances that visitors name.

"Sign in with Mastodon" starts from an address a visitor types, so the instance at the
other end is untrusted input. Before any request tipjar checks that it is https to a
public hostname none of whose addresses is private, loopback, link-local, multicast or
otherwise reserved (so a visitor cannot make tipjar call into its own network), and every
answer is read with short timeouts, a whole-answer deadline and a size cap, without
following redirects. `GuardedSession` is the `requests.Session` that does all of it; it
is handed to Mastodon.py so that the client library's calls go through the same checks.

`ALLOW_LOOPBACK_INSTANCES=1` (the sandbox, tests, a local demo) also allows instances on
loopback, over http or https, named like `127.0.0.1:PORT`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from bot.hosts import is_loopback

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_ANSWER_BYTES",
    "READ_TIMEOUT",
    "TOTAL_DEADLINE",
    "GuardedSession",
    "Instance",
    "InstanceRefused",
    "check_url",
    "instance_of",
]

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
TOTAL_DEADLINE = 8.0  # the whole answer, however slowly it drips in
MAX_ANSWER_BYTES = 256 * 1024  # an app, a token, an account: a few kilobytes each

_HOSTNAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}")
_LOOPBACK_NAME = re.compile(r"(127\.0\.0\.1|localhost):([0-9]{1,5})")

Resolver = Callable[[str, int], Sequence[str]]


class InstanceRefused(Exception):
    """tipjar will not talk to this instance. `reason` is for the person, `detail` for logs."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail or reason


@dataclass(frozen=True)
class Instance:
    """A Mastodon instance: its domain (the one account addresses use) and its base URL."""

    domain: str  # other.social, or 127.0.0.1:PORT for a loopback instance
    base_url: str  # https://other.social, or http(s)://127.0.0.1:PORT

    @property
    def is_loopback(self) -> bool:
        return bool(_LOOPBACK_NAME.fullmatch(self.domain))


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise InstanceRefused(f"{host} cannot be found", f"{host}: {e}") from None
    return sorted({str(info[4][0]) for info in infos})


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def instance_of(text: str, *, allow_loopback: bool = False) -> Instance:
    """The instance a visitor named: ``@bob@other.social``, ``other.social`` or its URL.

    Only the form is checked here; `check_url` checks where it resolves to.
    """
    text = text.strip()
    scheme = ""  # not typed: https, or http for a loopback instance (the sandbox)
    if "://" in text:
        parts = urlsplit(text)
        scheme, host = parts.scheme.lower(), (parts.netloc or "").lower()
        if parts.username or parts.password or "@" in host:
            raise InstanceRefused("Type your address as @name@instance, without a password.")
    else:
        host = text.removeprefix("@").rpartition("@")[2].strip("/").lower()
    loop = _LOOPBACK_NAME.fullmatch(host)
    if loop:
        if not allow_loopback:
            raise InstanceRefused("That instance is on a private address.", f"loopback {host}")
        port, scheme = int(loop.group(2)), scheme or "http"
        if not 0 < port < 65536 or scheme not in ("http", "https"):
            raise InstanceRefused("That does not look like a Mastodon instance.", host)
        domain = f"127.0.0.1:{port}"
        return Instance(domain, f"{scheme}://{domain}")
    if scheme not in ("", "https"):
        raise InstanceRefused("tipjar signs in only over https.", f"scheme {scheme}")
    if not _HOSTNAME.fullmatch(host) or len(host) > 253:
        raise InstanceRefused("That does not look like a Mastodon instance.", f"host {host!r}")
    return Instance(host, f"https://{host}")


def check_url(url: str, *, allow_loopback: bool, resolve: Resolver = system_resolver) -> None:
    """Refuse `url` unless it is https to a public host (or loopback, when allowed)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise InstanceRefused("That does not look like a Mastodon instance.", url) from None
    if parts.username or parts.password:
        raise InstanceRefused("That does not look like a Mastodon instance.", "credentials in URL")
    if allow_loopback and is_loopback(host) and scheme in ("http", "https"):
        return
    if scheme != "https":
        raise InstanceRefused("tipjar signs in only over https.", f"{scheme}://{host}")
    if not _HOSTNAME.fullmatch(host):
        # an IP literal, or a name no public DNS would hold
        raise InstanceRefused("That instance is on a private address.", f"host {host!r}")
    addresses = resolve(host, port)
    if not addresses:
        raise InstanceRefused(f"{host} cannot be found", f"{host}: no addresses")
    private = [a for a in addresses if not _public(a)]
    if private:
        raise InstanceRefused(
            "That instance is on a private address.", f"{host} resolves to {', '.join(private)}"
        )


class GuardedSession(requests.Session):
    """A `requests.Session` for untrusted instances: checked hosts, no redirects, short
    timeouts, a deadline for the whole answer and a size cap.

    Every refusal and every network failure is raised as `InstanceRefused`, so callers (and
    Mastodon.py, which wraps what its session raises) never see a half-read answer.
    """

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        resolve: Resolver = system_resolver,
        max_bytes: int = MAX_ANSWER_BYTES,
        deadline: float = TOTAL_DEADLINE,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    ) -> None:
        super().__init__()
        self.allow_loopback = allow_loopback
        self.resolve = resolve
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.guard_timeout = timeout
        self.trust_env = False  # no proxies or .netrc from the environment for strangers

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        text_url = url.decode() if isinstance(url, bytes) else url
        check_url(text_url, allow_loopback=self.allow_loopback, resolve=self.resolve)
        kwargs["timeout"] = self.guard_timeout
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        started = time.monotonic()
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException as e:
            host = urlsplit(text_url).hostname
            raise InstanceRefused(
                "That instance did not answer in time.", f"{host}: {type(e).__name__}"
            ) from None
        try:
            response._content = self._read(response, started)
        finally:
            response.close()
        return response

    def _read(self, response: requests.Response, started: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise InstanceRefused("That instance answered too much.", f"{declared} bytes declared")
        body = bytearray()
        try:
            while True:
                chunk = response.raw.read1(8192, decode_content=True)
                if not chunk:
                    break
                body += chunk
                if len(body) > self.max_bytes:
                    raise InstanceRefused("That instance answered too much.", "answer too large")
                if time.monotonic() - started > self.deadline:
                    raise InstanceRefused("That instance did not answer in time.", "too slow")
        except InstanceRefused:
            raise
        except Exception as e:  # requests', urllib3's and the socket's read failures alike
            raise InstanceRefused(
                "That instance did not answer in time.", f"reading: {type(e).__name__}"
            ) from None
        return bytes(body)
