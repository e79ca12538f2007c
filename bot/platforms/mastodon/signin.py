"""Sign in with Mastodon: the calls to a visitor's instance, made through the guard.

The instance is whatever a visitor typed, so every call goes through `GuardedSession`
(https to a public address only, short timeouts, bounded answers, no redirects) and
its answers are checked before they are believed:

- `register_app`: `POST /api/v1/apps` (Mastodon.py's `create_app`), once per instance;
- `server_info`: `/.well-known/oauth-authorization-server`; its authorize and token
  endpoints must be on the instance itself; PKCE S256 is used where it is listed;
- `authorize_url`: the instance's authorize page with our `state` (and code challenge);
- `exchange_code`: the code for a token at the token endpoint (with the PKCE verifier,
  which Mastodon.py's `log_in` cannot send, hence a plain POST);
- `verified_address`: who the token belongs to (`verify_credentials`, a local account of
  that instance), then WebFinger: an instance vouches only for its own domain, so the
  address bound is the verified username at the domain signed in to, and an instance
  whose WebFinger names another domain is refused unless that domain's own WebFinger
  points back at the same actor on this instance.

The access token lives only between `exchange_code` and `verified_address`; no error here
carries a code, a verifier, a token or a response body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from mastodon import Mastodon, MastodonError

from bot.platforms.mastodon.guard import GuardedSession, Instance, InstanceRefused
from bot.platforms.mastodon.text import MAX_ADDRESS_LENGTH, parse_address
from bot.platforms.port import PlatformUser, SignInError

__all__ = [
    "SCOPES",
    "AppCredentials",
    "MastodonSignIn",
    "ServerInfo",
    "SignInRefused",
    "authorize_url",
    "exchange_code",
    "register_app",
    "server_info",
    "verified_address",
]

SCOPES = ("read:accounts",)  # enough for verify_credentials; tipjar never posts for anyone
APP_NAME = "tipjar"
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{8,512}")
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,30}")


class SignInRefused(SignInError):
    """The sign-in cannot go on. `reason` is for the person, `detail` for the log."""


@dataclass(frozen=True)
class AppCredentials:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class ServerInfo:
    authorize_endpoint: str
    token_endpoint: str
    pkce: bool


def _refused(e: BaseException, host: str) -> SignInRefused:
    """A guard refusal (possibly wrapped by Mastodon.py) or another failure, as one error."""
    cause = e if isinstance(e, InstanceRefused) else e.__context__
    if isinstance(cause, InstanceRefused):
        return SignInRefused(cause.reason, f"{host}: {cause.detail}")
    return SignInRefused(
        "That instance did not answer as Mastodon does.", f"{host}: {type(e).__name__}"
    )


def _same_origin(url: str, instance: Instance) -> bool:
    parts, base = urlsplit(url), urlsplit(instance.base_url)
    return (parts.scheme, parts.netloc.lower()) == (base.scheme, base.netloc.lower())


def register_app(
    instance: Instance, redirect_uri: str, website: str, session: GuardedSession
) -> AppCredentials:
    """Register tipjar on `instance` (`POST /api/v1/apps`)."""
    try:
        client_id, client_secret = Mastodon.create_app(
            APP_NAME,
            scopes=list(SCOPES),
            redirect_uris=redirect_uri,
            website=website,
            api_base_url=instance.base_url,
            session=session,
        )
    except (MastodonError, InstanceRefused, KeyError, TypeError, ValueError) as e:
        raise _refused(e, instance.domain) from None
    if not all(isinstance(v, str) and _TOKEN.fullmatch(v) for v in (client_id, client_secret)):
        raise SignInRefused(
            "That instance did not answer as Mastodon does.", f"{instance.domain}: app"
        )
    return AppCredentials(client_id, client_secret)


def server_info(instance: Instance, session: GuardedSession) -> ServerInfo:
    """The instance's OAuth endpoints (its own), and whether it takes PKCE S256."""
    api = Mastodon(api_base_url=instance.base_url, session=session, ratelimit_method="throw")
    try:
        info: Mapping[str, Any] = api.oauth_authorization_server_info()
    except (MastodonError, InstanceRefused, ValueError) as e:
        raise _refused(e, instance.domain) from None
    authorize = info.get("authorization_endpoint") or f"{instance.base_url}/oauth/authorize"
    token = info.get("token_endpoint") or f"{instance.base_url}/oauth/token"
    if not all(isinstance(u, str) and _same_origin(u, instance) for u in (authorize, token)):
        raise SignInRefused(
            "That instance sends sign-ins elsewhere; tipjar does not follow.",
            f"{instance.domain}: endpoints on another origin",
        )
    methods = info.get("code_challenge_methods_supported") or []
    return ServerInfo(str(authorize), str(token), isinstance(methods, list) and "S256" in methods)


def authorize_url(
    info: ServerInfo,
    app: AppCredentials,
    redirect_uri: str,
    state: str,
    code_challenge: str | None,
) -> str:
    """Where the visitor's browser goes to approve tipjar on their instance."""
    params = {
        "client_id": app.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": " ".join(SCOPES),
        "state": state,
    }
    if code_challenge:
        params |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
    return f"{info.authorize_endpoint}?{urlencode(params)}"


def exchange_code(
    instance: Instance,
    info: ServerInfo,
    app: AppCredentials,
    *,
    code: str,
    redirect_uri: str,
    verifier: str | None,
    session: GuardedSession,
) -> str:
    """The visitor's access token for `code` (never stored, never logged)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "scope": " ".join(SCOPES),
    }
    if verifier:
        form["code_verifier"] = verifier
    try:
        answer = session.post(info.token_endpoint, data=form)
    except InstanceRefused as e:
        raise _refused(e, instance.domain) from None
    if answer.status_code != 200:
        raise SignInRefused(
            "Your instance did not accept this sign-in. Please start again.",
            f"{instance.domain}: token endpoint answered {answer.status_code}",
        )
    try:
        token = answer.json().get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise SignInRefused(
            "That instance did not answer as Mastodon does.", f"{instance.domain}: no token"
        )
    return token


def _webfinger(host_base: str, resource: str, session: GuardedSession) -> Mapping[str, Any]:
    answer = session.get(f"{host_base}/.well-known/webfinger", params={"resource": resource})
    if answer.status_code != 200:
        raise SignInRefused(
            "That instance does not vouch for this account.",
            f"webfinger {urlsplit(host_base).netloc}: {answer.status_code}",
        )
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SignInRefused("That instance did not answer as Mastodon does.", "webfinger body")
    return body


def _actor(jrd: Mapping[str, Any]) -> str | None:
    links = jrd.get("links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "self":
            href = link.get("href")
            return href if isinstance(href, str) else None
    return None


def _subject(jrd: Mapping[str, Any]) -> tuple[str, str] | None:
    subject = jrd.get("subject")
    if not isinstance(subject, str) or not subject.lower().startswith("acct:"):
        return None
    return parse_address(subject[5:])


def _home_address(
    instance: Instance, username: str, session: GuardedSession, allow_loopback: bool
) -> str:
    """`username`'s address as WebFinger names it, if `instance` may vouch for it."""
    jrd = _webfinger(instance.base_url, f"acct:{username}@{instance.domain}", session)
    named = _subject(jrd)
    if named is None or named[0] != username.lower():
        raise SignInRefused(
            "That instance does not vouch for this account.",
            f"{instance.domain}: webfinger subject {jrd.get('subject')!r}",
        )
    user, domain = named
    if domain == instance.domain:
        return f"{user}@{domain}"
    # The instance answers for another domain. Believe it only if that domain's own
    # WebFinger names the same actor, living on this instance (WEB_DOMAIN != LOCAL_DOMAIN).
    actor = _actor(jrd)
    if (
        actor is None
        or not _same_origin(actor, instance)
        or (domain.startswith("127.0.0.1:") and not allow_loopback)
    ):
        raise SignInRefused(
            "That instance answers for another domain; sign in on that domain's instance.",
            f"{instance.domain}: webfinger names {domain}",
        )
    scheme = "http" if domain.startswith("127.0.0.1:") else "https"
    try:
        theirs = _webfinger(f"{scheme}://{domain}", f"acct:{user}@{domain}", session)
    except (SignInRefused, InstanceRefused):
        theirs = {}
    if _subject(theirs) != (user, domain) or _actor(theirs) != actor:
        raise SignInRefused(
            "That instance answers for another domain; sign in on that domain's instance.",
            f"{instance.domain}: {domain} does not point back",
        )
    return f"{user}@{domain}"


def verified_address(
    instance: Instance, access_token: str, session: GuardedSession, *, allow_loopback: bool
) -> str:
    """The full address of the account `access_token` belongs to, as `instance` vouches."""
    api = Mastodon(
        access_token=access_token,
        api_base_url=instance.base_url,
        session=session,
        ratelimit_method="throw",
    )
    try:
        me: Mapping[str, Any] = api.account_verify_credentials()
    except (MastodonError, InstanceRefused, ValueError) as e:
        raise _refused(e, instance.domain) from None
    username, acct = me.get("username"), me.get("acct")
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise SignInRefused("That instance did not answer as Mastodon does.", "no username")
    if not isinstance(acct, str) or acct.lower() != username.lower():
        # verify_credentials is always about a local account: a domain here is a lie.
        raise SignInRefused(
            "That instance answers for another domain; sign in on that domain's instance.",
            f"{instance.domain}: verify_credentials acct {acct!r}",
        )
    try:
        address = _home_address(instance, username, session, allow_loopback)
    except InstanceRefused as e:
        raise _refused(e, instance.domain) from None
    if len(address) > MAX_ADDRESS_LENGTH:
        raise SignInRefused("This address is too long for tipjar.", "address too long")
    return address


class MastodonSignIn:
    """The port's `SignIn` on one instance, once tipjar's app there and its OAuth endpoints
    are known. `code_challenge`/`verifier` are "" where the instance takes no PKCE."""

    platform = "mastodon"
    label = "Mastodon"
    configured = True

    def __init__(
        self,
        instance: Instance,
        app: AppCredentials,
        info: ServerInfo,
        redirect_uri: str,
        session: GuardedSession,
        *,
        allow_loopback: bool,
    ) -> None:
        self.instance, self.app, self.info = instance, app, info
        self.redirect_uri, self.session, self.allow_loopback = redirect_uri, session, allow_loopback

    def authorize_url(self, state: str, code_challenge: str) -> str:
        return authorize_url(self.info, self.app, self.redirect_uri, state, code_challenge or None)

    def exchange_code(self, code: str, verifier: str) -> str:
        return exchange_code(
            self.instance,
            self.info,
            self.app,
            code=code,
            redirect_uri=self.redirect_uri,
            verifier=verifier or None,
            session=self.session,
        )

    def current_user(self, access_token: str) -> PlatformUser:
        address = verified_address(
            self.instance, access_token, self.session, allow_loopback=self.allow_loopback
        )
        return PlatformUser(self.platform, address, address)
