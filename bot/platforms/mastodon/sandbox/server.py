"""The loopback Mastodon stand-in: one Flask app per instance over a shared `Fediverse`.

Each instance answers the endpoints tipjar and Mastodon.py use, in the shapes Mastodon
itself serves (checked against recorded responses in the tests): notifications with
`types[]`, `since_id`/`max_id`/`min_id` and `Link` pagination, statuses (post, show),
accounts (verify_credentials, show, lookup), apps, the OAuth authorize page and token
endpoint (with PKCE S256), WebFinger, the OAuth server metadata and the instance document.
Every API answer carries `X-RateLimit-Limit/-Remaining/-Reset` (ISO time).
`MastodonSandbox` runs two instances on loopback: the bot's and a creator's.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bot.platforms.mastodon.sandbox.world import (
    RATE_LIMIT,
    Account,
    Fediverse,
    Grant,
    InstanceData,
    Notification,
    Status,
)

__all__ = ["MastodonSandbox", "SandboxInstance", "create_app"]

_log = logging.getLogger(__name__)
JSON_TYPE = "application/json; charset=utf-8"
CODE_LIFETIME_SECONDS = 600
DEFAULT_LIMIT = 40
MAX_LIMIT = 80
SCOPES_SUPPORTED = [
    "read",
    "profile",
    "write",
    "write:statuses",
    "read:accounts",
    "read:notifications",
    "read:statuses",
    "follow",
    "push",
]


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def account_json(world: Fediverse, account: Account, on: str) -> dict[str, Any]:
    """An Account entity as the instance `on` serves it."""
    base = world.instances[account.domain].base_url
    return {
        "id": account.id,
        "username": account.username,
        "acct": account.acct_on(on),
        "display_name": account.display_name,
        "locked": False,
        "bot": account.bot,
        "discoverable": None,
        "indexable": False,
        "group": False,
        "created_at": _iso(account.created_at.replace(hour=0, minute=0, second=0, microsecond=0)),
        "note": "",
        "url": world.profile_url(account),
        "uri": f"{base}/ap/users/{account.id}",
        "avatar": f"{base}/avatars/original/missing.png",
        "avatar_static": f"{base}/avatars/original/missing.png",
        "avatar_description": "",
        "header": f"{base}/headers/original/missing.png",
        "header_static": f"{base}/headers/original/missing.png",
        "header_description": "",
        "followers_count": 0,
        "following_count": 0,
        "statuses_count": sum(1 for s in world.statuses.values() if s.author == account.address),
        "last_status_at": None,
        "hide_collections": None,
        "show_media": True,
        "show_media_replies": True,
        "show_featured": True,
        "noindex": False,
        "feature_approval": {"automatic": [], "manual": [], "current_user": "denied"},
        "emojis": [],
        "roles": [],
        "fields": [],
    }


def credential_account_json(world: Fediverse, account: Account, on: str) -> dict[str, Any]:
    body = account_json(world, account, on)
    body["source"] = {
        "privacy": "public",
        "sensitive": False,
        "language": None,
        "note": "",
        "fields": [],
        "follow_requests_count": 0,
        "hide_collections": None,
        "discoverable": None,
        "indexable": False,
        "attribution_domains": [],
        "quote_policy": "public",
    }
    body["role"] = {
        "id": "-99",
        "name": "",
        "permissions": "65536",
        "color": "",
        "highlighted": False,
    }
    return body


def status_json(
    world: Fediverse, status: Status, on: str, viewer: str | None = None
) -> dict[str, Any]:
    """A Status entity as the instance `on` serves it (to `viewer`, an address)."""
    author = world.account(status.author)
    base = world.instances[author.domain].base_url
    reblog = world.statuses.get(status.reblog_of) if status.reblog_of else None
    replied = world.accounts.get(status.in_reply_to_account or "")
    return {
        "id": status.id,
        "created_at": _iso(status.created_at),
        "in_reply_to_id": status.in_reply_to_id,
        "in_reply_to_account_id": replied.id if replied else None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": status.visibility,
        "language": "en",
        "uri": f"{base}/ap/users/{author.id}/statuses/{status.id}",
        "url": f"{world.profile_url(author)}/{status.id}",
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "quotes_count": 0,
        "edited_at": _iso(status.edited_at) if status.edited_at else None,
        "favourited": False,
        "reblogged": False,
        "muted": False,
        "bookmarked": False,
        "content": status.content,
        "filtered": [],
        "reblog": status_json(world, reblog, on) if reblog else None,
        "application": {"name": "Web", "website": None},
        "account": account_json(world, author, on),
        "media_attachments": [],
        "mentions": [_mention_json(world, address, on) for address in status.mentions],
        "tags": [],
        "emojis": [],
        "tagged_collections": [],
        "quote": None,
        "card": None,
        "poll": None,
        "quote_approval": {"automatic": ["public"], "manual": [], "current_user": "automatic"},
    } | ({"pinned": False} if viewer == status.author else {})


def _mention_json(world: Fediverse, address: str, on: str) -> dict[str, str]:
    account = world.account(address)
    return {
        "id": account.id,
        "username": account.username,
        "url": world.profile_url(account),
        "acct": account.acct_on(on),
    }


def notification_json(world: Fediverse, note: Notification, on: str) -> dict[str, Any]:
    status = world.statuses.get(note.status_id or "")
    return {
        "id": str(note.id),
        "type": note.type,
        "created_at": _iso(note.created_at),
        "group_key": f"ungrouped-{note.id}",
        "account": account_json(world, world.account(note.account), on),
        "status": status_json(world, status, on) if status else None,
    }


def server_info_json(data: InstanceData) -> dict[str, Any]:
    base = data.base_url
    info: dict[str, Any] = {
        "issuer": f"{base}/",
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "service_documentation": "https://docs.joinmastodon.org/",
        "app_registration_endpoint": f"{base}/api/v1/apps",
    }
    if data.pkce:
        info["code_challenge_methods_supported"] = ["S256"]
    return info


def instance_json(world: Fediverse, data: InstanceData) -> dict[str, Any]:
    return {
        "domain": data.domain,
        "title": data.title,
        "version": "4.3.0",
        "source_url": "https://github.com/mastodon/mastodon",
        "description": "tipjar's loopback stand-in for Mastodon",
        "usage": {"users": {"active_month": 0}},
        "thumbnail": {"url": f"{data.base_url}/packs/media/images/preview.png"},
        "icon": [],
        "languages": ["en"],
        "configuration": {
            "urls": {"streaming": None, "status": None},
            "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
            "statuses": {"max_characters": 500, "max_media_attachments": 4},
        },
        "registrations": {"enabled": False, "approval_required": False, "message": None},
        "contact": {"email": "", "account": None},
        "rules": [],
        "api_versions": {"mastodon": 2},
        "wrapstodon": None,
    }


def _json(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, content_type=JSON_TYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _params() -> dict[str, Any]:
    """Form, JSON or query parameters, as Mastodon reads them."""
    if request.is_json:
        body = request.get_json(silent=True)
        return dict(body) if isinstance(body, dict) else {}
    values: dict[str, Any] = dict(request.args.items())
    values.update(request.form.items())
    return values


def _page_link(data: InstanceData, path: str, extra: dict[str, str]) -> str:
    query = [("types[]", t) for t in request.args.getlist("types[]")]
    query += list(extra.items())
    return f"<{data.base_url}{path}?{urlencode(query)}>"


def _select_notes(notes: list[Notification]) -> list[Notification] | Response:
    args = request.args
    types = set(args.getlist("types[]"))
    try:
        since = int(args.get("since_id") or 0)
        min_id = int(args.get("min_id") or 0)
        max_id = int(args.get("max_id") or 0)
        limit = min(int(args.get("limit") or DEFAULT_LIMIT), MAX_LIMIT)
    except ValueError:
        return _error(422, "Validation failed: ids and limit must be numbers")
    picked = [
        n
        for n in notes
        if (not types or n.type in types)
        and n.id > max(since, min_id)
        and (not max_id or n.id < max_id)
    ]
    picked.sort(key=lambda n: n.id, reverse=True)
    # min_id reads the oldest first (the page right after min_id); since_id the newest.
    return picked[-limit:] if min_id and not since else picked[:limit]


class _Routes:
    """The handlers of one instance (methods, so each stays small)."""

    def __init__(self, world: Fediverse, domain: str) -> None:
        self.world = world
        self.domain = domain

    @property
    def data(self) -> InstanceData:
        return self.world.instances[self.domain]

    def caller(self) -> Account | Response:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        found = self.data.tokens.get(token)
        if not token or found is None:
            return _error(401, "The access token is invalid")
        return self.world.account(found[0])

    def notifications(self) -> Response:
        me = self.caller()
        if isinstance(me, Response):
            return me
        notes = _select_notes(list(self.data.notifications.get(me.address, [])))
        if isinstance(notes, Response):
            return notes
        body = [notification_json(self.world, n, self.domain) for n in notes]
        headers = {}
        if notes:
            path = "/api/v1/notifications"
            headers["Link"] = (
                _page_link(self.data, path, {"max_id": str(notes[-1].id)})
                + '; rel="next", '
                + _page_link(self.data, path, {"min_id": str(notes[0].id)})
                + '; rel="prev"'
            )
        return _json(body, headers=headers)

    def post_status(self) -> Response:
        me = self.caller()
        if isinstance(me, Response):
            return me
        params = _params()
        text = str(params.get("status") or "").strip()
        if not text:
            return _error(422, "Validation failed: Text can't be blank")
        visibility = str(params.get("visibility") or "public")
        if visibility not in ("public", "unlisted", "private", "direct"):
            return _error(422, "Validation failed: Visibility is not included in the list")
        parent = params.get("in_reply_to_id")
        if parent and str(parent) not in self.world.statuses:
            return _error(404, "Record not found")
        status = self.world.post(
            me.address,
            text,
            in_reply_to_id=str(parent) if parent else None,
            visibility=visibility,
        )
        return _json(status_json(self.world, status, self.domain, me.address))

    def show_status(self, status_id: str) -> Response:
        status = self.world.statuses.get(status_id)
        if status is None:
            return _error(404, "Record not found")
        return _json(status_json(self.world, status, self.domain))

    def verify_credentials(self) -> Response:
        me = self.caller()
        if isinstance(me, Response):
            return me
        return _json(credential_account_json(self.world, me, self.domain))

    def show_account(self, account_id: str) -> Response:
        account = self.world.account_by_id(account_id)
        if account is None:
            return _error(404, "Record not found")
        return _json(account_json(self.world, account, self.domain))

    def lookup(self) -> Response:
        acct = request.args.get("acct", "").lower().removeprefix("@")
        address = acct if "@" in acct else f"{acct}@{self.domain}"
        account = self.world.accounts.get(address)
        if account is None:
            return _error(404, "Record not found")
        return _json(account_json(self.world, account, self.domain))

    def register_app(self) -> Response:
        params = _params()
        name = str(params.get("client_name") or "").strip()
        uris = str(params.get("redirect_uris") or "").split()
        if not name or not uris:
            return _error(422, "Validation failed: Name can't be blank, Redirect URI is blank")
        scopes = str(params.get("scopes") or "read").split()
        website = params.get("website")
        app = self.world.register_app(
            self.domain, name, uris, scopes, str(website) if website else None
        )
        return _json(
            {
                "id": str(len(self.data.apps)),
                "name": app.name,
                "website": app.website,
                "scopes": app.scopes,
                "redirect_uris": app.redirect_uris,
                "vapid_key": "BAhxXyHfAoMqrZECjRI56F5QrE4ynVlkZFMdKSpTIsWRNoWUVgut-Bnz2xsMSwiN4AF0"
                "b4I7ixF24OwiicOJivw=",
                "redirect_uri": "\n".join(app.redirect_uris),
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "client_secret_expires_at": 0,
            }
        )

    def authorize_page(self) -> Response:
        """The consent page: pick an account of this instance and approve (no passwords)."""
        args = request.args
        app = self.data.apps.get(args.get("client_id", ""))
        if app is None or args.get("redirect_uri") not in app.redirect_uris:
            return Response("Client authentication failed", 401)
        people = [a for a in self.world.accounts.values() if a.domain == self.domain and not a.bot]
        options = "".join(
            f'<button name="account" value="{html.escape(a.username)}">'
            f"Authorize as @{html.escape(a.username)}</button>"
            for a in people
        )
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in args.items()
        )
        page = (
            f"<!doctype html><title>Authorize {html.escape(app.name)}</title>"
            f"<h1>{html.escape(self.data.title)}: authorize {html.escape(app.name)}?</h1>"
            f'<form method="post">{hidden}{options}</form>'
        )
        return Response(page, content_type="text/html; charset=utf-8")

    def authorize_submit(self) -> Response:
        form = request.form
        try:
            target = approve(self.world, self.domain, dict(form.items()), form.get("account", ""))
        except ValueError as e:
            return Response(str(e), 400)
        return Response("", 302, headers={"Location": target})

    def token(self) -> Response:
        params = _params()
        app = self.data.apps.get(str(params.get("client_id") or ""))
        if app is None or params.get("client_secret") != app.client_secret:
            return _json({"error": "invalid_client"}, 401)
        if params.get("grant_type") != "authorization_code":
            return _json({"error": "unsupported_grant_type"}, 400)
        grant = self.data.grants.get(str(params.get("code") or ""))
        problem = _grant_problem(self.world, grant, app.client_id, params)
        if problem or grant is None:
            return _json({"error": "invalid_grant", "error_description": problem}, 400)
        grant.used = True
        token = self.world.issue_token(grant.address, grant.scopes)
        return _json(
            {
                "access_token": token,
                "token_type": "Bearer",
                "scope": " ".join(grant.scopes),
                "created_at": int(self.world.clock().timestamp()),
            }
        )

    def webfinger(self) -> Response:
        resource = request.args.get("resource", "").lower().removeprefix("acct:")
        user, _, domain = resource.partition("@")
        if domain != self.domain:
            return _error(404, "Record not found")
        account = self.world.accounts.get(f"{user}@{self.domain}")
        if account is None:
            return _error(404, "Record not found")
        named = self.data.answers_for or self.domain
        actor = f"{self.data.base_url}/ap/users/{account.id}"
        body = {
            "subject": f"acct:{account.username}@{named}",
            "aliases": [self.world.profile_url(account), actor],
            "links": [
                {
                    "rel": "http://webfinger.net/rel/profile-page",
                    "type": "text/html",
                    "href": self.world.profile_url(account),
                },
                {"rel": "self", "type": "application/activity+json", "href": actor},
            ],
        }
        return Response(json.dumps(body), content_type="application/jrd+json; charset=utf-8")


def _grant_problem(
    world: Fediverse, grant: Grant | None, client_id: str, params: Mapping[str, Any]
) -> str | None:
    if grant is None or grant.client_id != client_id:
        return "The provided authorization grant is invalid"
    if grant.used:
        return "The authorization grant was already used"
    if (world.clock() - grant.created_at).total_seconds() > CODE_LIFETIME_SECONDS:
        return "The authorization grant has expired"
    if params.get("redirect_uri") != grant.redirect_uri:
        return "The redirect uri does not match"
    if grant.challenge:
        verifier = str(params.get("code_verifier") or "")
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            return "The code verifier does not match"
    return None


def approve(world: Fediverse, domain: str, params: Mapping[str, str], username: str) -> str:
    """What the consent page does when `username` approves: the redirect with a code.

    Raises ValueError for a request the instance would refuse.
    """
    data = world.instances[domain]
    app = data.apps.get(params.get("client_id", ""))
    redirect_uri = params.get("redirect_uri", "")
    if app is None or redirect_uri not in app.redirect_uris:
        raise ValueError("unknown client or redirect uri")
    account = world.accounts.get(f"{username.lower()}@{domain}")
    if account is None:
        raise ValueError(f"no account {username} on {domain}")
    method = params.get("code_challenge_method")
    challenge = params.get("code_challenge")
    if challenge and method != "S256":
        raise ValueError("only S256 code challenges are supported")
    scopes = params.get("scope", "read").split()
    if not set(scopes) <= set(app.scopes):
        raise ValueError("the scopes were not registered with the app")
    code = base64.urlsafe_b64encode(hashlib.sha256(world.new_id().encode()).digest()).decode()
    code = code.rstrip("=")
    with world.lock:
        data.grants[code] = Grant(
            code,
            app.client_id,
            redirect_uri,
            account.address,
            scopes,
            challenge,
            method,
            world.clock(),
        )
    query = {"code": code}
    if params.get("state"):
        query["state"] = params["state"]
    sep = "&" if "?" in redirect_uri else "?"
    return f"{redirect_uri}{sep}{urlencode(query)}"


def _metered(world: Fediverse, domain: str, response: Response) -> Response:
    if "X-RateLimit-Remaining" in response.headers:  # an injected 429 says its own
        return response
    remaining, reset = world.count_call(domain)
    response.headers["X-RateLimit-Limit"] = str(RATE_LIMIT)
    response.headers["X-RateLimit-Remaining"] = str(remaining)
    response.headers["X-RateLimit-Reset"] = _iso(reset)
    return response


def _fault_response(world: Fediverse, domain: str) -> Response | None:
    fault = world.take_fault(domain, request.path)
    if fault is None:
        return None
    if fault.delay:
        time.sleep(fault.delay)
    if fault.status == 429:
        reset = world.clock() + fault.reset_in
        response = _error(429, "Too many requests")
        response.headers["X-RateLimit-Limit"] = str(RATE_LIMIT)
        response.headers["X-RateLimit-Remaining"] = "0"
        response.headers["X-RateLimit-Reset"] = _iso(reset)
        return response
    body = fault.body if fault.body is not None else json.dumps({"error": "sandbox fault"})
    if fault.size:
        body = json.dumps({"error": "x" * fault.size})
    return Response(body, status=fault.status, content_type=JSON_TYPE)


def create_app(world: Fediverse, domain: str) -> Flask:
    """The Flask app of the instance `domain` of `world`."""
    app = Flask(f"bot.platforms.mastodon.sandbox.{domain}")
    routes = _Routes(world, domain)

    @app.before_request
    def injected_fault() -> Response | None:
        return _fault_response(world, domain)

    @app.after_request
    def rate_headers(response: Response) -> Response:
        if request.path.startswith("/api/"):
            return _metered(world, domain, response)
        return response

    app.add_url_rule("/api/v1/notifications", view_func=routes.notifications)
    app.add_url_rule("/api/v1/statuses", view_func=routes.post_status, methods=["POST"])
    app.add_url_rule("/api/v1/statuses/<status_id>", view_func=routes.show_status)
    app.add_url_rule("/api/v1/accounts/verify_credentials", view_func=routes.verify_credentials)
    app.add_url_rule("/api/v1/accounts/lookup", view_func=routes.lookup)
    app.add_url_rule("/api/v1/accounts/<account_id>", view_func=routes.show_account)
    app.add_url_rule("/api/v1/apps", view_func=routes.register_app, methods=["POST"])
    app.add_url_rule("/oauth/authorize", view_func=routes.authorize_page)
    app.add_url_rule(
        "/oauth/authorize", "authorize_submit", routes.authorize_submit, methods=["POST"]
    )
    app.add_url_rule("/oauth/token", view_func=routes.token, methods=["POST"])
    app.add_url_rule("/.well-known/webfinger", view_func=routes.webfinger)

    @app.get("/.well-known/oauth-authorization-server")
    def server_info() -> Response:
        return _json(server_info_json(world.instances[domain]))

    @app.get("/api/v1/instance")
    @app.get("/api/v2/instance")
    @app.get("/api/v2/instance/")
    def instance() -> Response:
        return _json(instance_json(world, world.instances[domain]))

    @app.errorhandler(HTTPStatus.NOT_FOUND)
    def not_found(_problem: Exception) -> Response:
        return _error(404, "Not Found")

    return app


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        _log.debug("%s %s", type, message % args)


class SandboxInstance:
    """One instance served on 127.0.0.1 from a daemon thread."""

    def __init__(self, world: Fediverse, title: str) -> None:
        self.world = world
        self.title = title
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.domain = ""

    @property
    def base_url(self) -> str:
        return f"http://{self.domain}"

    @property
    def data(self) -> InstanceData:
        return self.world.instances[self.domain]

    def start(self) -> None:
        # Bind first: the instance's domain is its address, port included.
        server = make_server("127.0.0.1", 0, None, threaded=True, request_handler=_QuietHandler)  # type: ignore[arg-type]
        self.domain = f"127.0.0.1:{server.server_port}"
        self.world.add_instance(self.domain, self.base_url, self.title)
        server.app = create_app(self.world, self.domain)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"mastodon-sandbox-{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)


class MastodonSandbox:
    """Two loopback instances: `home` (the bot's, with its account) and `other` (a creator's).

    `with MastodonSandbox() as fedi: fedi.env(), fedi.world.post(...), fedi.approve(...)`.
    """

    def __init__(self, bot_username: str = "flattr", world: Fediverse | None = None) -> None:
        self.world = world or Fediverse()
        self.home = SandboxInstance(self.world, "Home social")
        self.other = SandboxInstance(self.world, "Other social")
        self.bot_username = bot_username
        self.bot: Account | None = None
        self.bot_token = ""

    def start(self) -> MastodonSandbox:
        self.home.start()
        self.other.start()
        self.bot = self.world.add_account(self.home.domain, self.bot_username, bot=True)
        self.bot_token = self.world.issue_token(
            self.bot.address, ["read:notifications", "read:statuses", "read:accounts", "write"]
        )
        return self

    def stop(self) -> None:
        self.home.stop()
        self.other.stop()

    def __enter__(self) -> MastodonSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def bot_address(self) -> str:
        assert self.bot is not None, "the sandbox is not started"
        return self.bot.address

    def env(self) -> dict[str, str]:
        """Environment that points tipjar's Mastodon side at the bot's instance."""
        return {
            "MASTODON_BASE_URL": self.home.base_url,
            "MASTODON_ACCESS_TOKEN": self.bot_token,
            "MASTODON_BOT_ACCT": self.bot_address,
            "ALLOW_LOOPBACK_INSTANCES": "1",
        }

    def approve(self, authorize_url: str, username: str) -> str:
        """Do what the consent page does when `username` approves; returns the callback URL."""
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(authorize_url)
        domain = parts.netloc
        return approve(self.world, domain, dict(parse_qsl(parts.query)), username)
