"""The Mastodon stand-in serves Mastodon's own shapes, and the real Mastodon.py reads it."""

from __future__ import annotations

import pytest
import requests
from mastodon import Mastodon, MastodonNotFoundError, MastodonRatelimitError

from bot.platforms.mastodon.sandbox import Fault, MastodonSandbox
from tests.support import mastodon_cassettes as cassettes


@pytest.fixture(scope="module")
def fedi():
    with MastodonSandbox() as sandbox:
        yield sandbox


def client(fedi, token=None):
    return Mastodon(
        access_token=token or fedi.bot_token,
        api_base_url=fedi.home.base_url,
        ratelimit_method="throw",
    )


def _keys_of(body):
    return set(body) if isinstance(body, dict) else set()


needs_cassettes = pytest.mark.skipif(
    not cassettes.available(), reason="../shared/fixtures/mastodon is not beside the repository"
)


@needs_cassettes
def test_every_entity_has_exactly_the_fields_mastodon_records(fedi):
    world = fedi.world
    alice = world.add_account(fedi.home.domain, "alice_shape")
    world.post(alice.address, "@flattr hello")
    api = client(fedi)
    note = requests.get(
        fedi.home.base_url + "/api/v1/notifications",
        headers={"Authorization": f"Bearer {fedi.bot_token}"},
        timeout=5,
    ).json()[0]
    ours = {
        "notification": note,
        "status": note["status"],
        "account": note["account"],
        "mention": note["status"]["mentions"][0],
        "credential account": requests.get(
            fedi.home.base_url + "/api/v1/accounts/verify_credentials",
            headers={"Authorization": f"Bearer {fedi.bot_token}"},
            timeout=5,
        ).json(),
        "oauth server": requests.get(
            fedi.home.base_url + "/.well-known/oauth-authorization-server", timeout=5
        ).json(),
        "instance": requests.get(fedi.home.base_url + "/api/v2/instance", timeout=5).json(),
        "app": requests.post(
            fedi.home.base_url + "/api/v1/apps",
            data={"client_name": "shape", "redirect_uris": "https://tipjar.example/cb"},
            timeout=5,
        ).json(),
    }
    real_note = cassettes.first("test_notifications", "GET", "/api/v1/notifications").body[0]
    real = {
        "notification": real_note,
        "status": real_note["status"],
        "account": real_note["account"],
        "mention": real_note["status"]["mentions"][0],
        "credential account": cassettes.first("test_account", "GET", "verify_credentials").body,
        "oauth server": cassettes.first(
            "test_auth_request_url", "GET", "oauth-authorization-server"
        ).body,
        "instance": cassettes.first("test_instance", "GET", "/api/v2/instance").body,
        "app": cassettes.first("test_app_account_create", "POST", "/api/v1/apps").body,
    }
    for kind, body in ours.items():
        assert _keys_of(body) == _keys_of(real[kind]), kind
    assert api.ratelimit_method == "throw"


@needs_cassettes
def test_rate_limit_headers_read_like_mastodons(fedi):
    recorded = cassettes.first("test_account", "GET", "verify_credentials").headers
    ours = requests.get(
        fedi.home.base_url + "/api/v1/accounts/verify_credentials",
        headers={"Authorization": f"Bearer {fedi.bot_token}"},
        timeout=5,
    ).headers
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert name in recorded and name in ours
    assert recorded["x-ratelimit-reset"].endswith("Z") and ours["X-RateLimit-Reset"].endswith("Z")


def test_a_mention_across_instances_reaches_the_bot_with_mastodons_html(fedi):
    world = fedi.world
    carol = world.add_account(fedi.other.domain, "carol")
    dave = world.add_account(fedi.home.domain, "dave")
    status = world.post(carol.address, f"@flattr@{fedi.home.domain} @dave@{fedi.home.domain} €2")
    page = client(fedi).notifications(types=["mention"], limit=5)
    mine = next(n for n in page if n.status.id == status.id)
    assert mine.type == "mention"
    assert mine.account.acct == f"carol@{fedi.other.domain}"  # remote: with its domain
    accts = [m.acct for m in mine.status.mentions]
    assert accts == ["flattr", "dave"]  # local to the bot's instance: bare
    assert 'class="u-url mention"' in mine.status.content
    assert dave.address.endswith(fedi.home.domain)


def test_notifications_page_with_since_id_and_link_headers(fedi):
    world = fedi.world
    erin = world.add_account(fedi.home.domain, "erin")
    api = client(fedi)
    before = api.notifications(types=["mention"], limit=1)
    since = before[0].id if before else None
    posted = [world.post(erin.address, f"@flattr €{i}") for i in range(1, 6)]
    first_page = api.notifications(types=["mention"], since_id=since, limit=2)
    assert [n.status.id for n in first_page] == [posted[4].id, posted[3].id]
    older = api.notifications(
        types=["mention"], since_id=since, max_id=first_page._pagination_next["max_id"], limit=2
    )
    assert [n.status.id for n in older] == [posted[2].id, posted[1].id]
    assert api.notifications(types=["mention"], since_id=first_page[0].id) == []


def test_a_reply_is_posted_with_in_reply_to_and_visibility(fedi):
    world = fedi.world
    frank = world.add_account(fedi.home.domain, "frank")
    tip = world.post(frank.address, "@flattr help", visibility="private")
    reply = client(fedi).status_post("@frank here", in_reply_to_id=tip.id, visibility="private")
    assert reply.in_reply_to_id == tip.id and reply.visibility == "private"
    with pytest.raises(MastodonNotFoundError):
        client(fedi).status_post("x", in_reply_to_id="1")


def test_injected_429_and_5xx_reach_the_client(fedi):
    api = client(fedi)
    fedi.world.fail_next(fedi.home.domain, Fault("/api/v1/notifications", status=429))
    with pytest.raises(MastodonRatelimitError):
        api.notifications(types=["mention"])
    assert api.ratelimit_remaining == 0
    fedi.world.fail_next(fedi.home.domain, Fault("/api/v1/notifications", status=502))
    with pytest.raises(Exception, match="Mastodon API returned error"):
        api.notifications(types=["mention"])


def test_sign_in_dance_with_pkce_on_the_creators_instance(fedi):
    import base64
    import hashlib

    world = fedi.world
    world.add_account(fedi.other.domain, "gina")
    redirect = "http://127.0.0.1:9/oauth/mastodon/callback"
    client_id, secret = Mastodon.create_app(
        "tipjar",
        scopes=["read:accounts"],
        redirect_uris=redirect,
        api_base_url=fedi.other.base_url,
    )
    api = Mastodon(client_id, secret, api_base_url=fedi.other.base_url)
    url = api.auth_request_url(
        redirect_uris=redirect, scopes=["read:accounts"], state="s1", allow_http=True
    )
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    url += "&code_challenge=" + challenge.rstrip(b"=").decode() + "&code_challenge_method=S256"
    back = fedi.approve(url, "gina")
    assert "state=s1" in back
    code = back.split("code=")[1].split("&")[0]
    wrong = requests.post(
        fedi.other.base_url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": redirect,
            "code_verifier": "w" * 50,
        },
        timeout=5,
    )
    assert wrong.status_code == 400
    ok = requests.post(
        fedi.other.base_url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": redirect,
            "code_verifier": verifier,
        },
        timeout=5,
    )
    assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer"
    me = Mastodon(access_token=ok.json()["access_token"], api_base_url=fedi.other.base_url)
    assert me.account_verify_credentials().acct == "gina"
    replay = requests.post(
        ok.request.url,
        data=ok.request.body,
        timeout=5,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert replay.status_code == 400 and "invalid_grant" in replay.text  # single use


def test_webfinger_names_the_account_at_its_domain(fedi):
    world = fedi.world
    world.add_account(fedi.other.domain, "hank")
    jrd = requests.get(
        fedi.other.base_url + "/.well-known/webfinger",
        params={"resource": f"acct:hank@{fedi.other.domain}"},
        timeout=5,
    ).json()
    assert jrd["subject"] == f"acct:hank@{fedi.other.domain}"
    assert any(link["rel"] == "self" for link in jrd["links"])
