"""The untrusted-instance guard: where tipjar will and will not go for a visitor."""

from __future__ import annotations

import pytest

from bot.platforms.mastodon.guard import GuardedSession, InstanceRefused, check_url, instance_of
from bot.platforms.mastodon.sandbox import Fault, MastodonSandbox


def resolver(*addresses):
    return lambda host, port: list(addresses)


def test_an_address_a_name_or_a_url_names_the_instance():
    assert instance_of("@bob@Other.Social").base_url == "https://other.social"
    assert instance_of("other.social").domain == "other.social"
    assert instance_of("https://other.social/").domain == "other.social"


@pytest.mark.parametrize(
    "typed",
    ["http://other.social", "https://user:pw@other.social", "other", "@bob@-bad-.social", ""],
)
def test_plain_http_credentials_and_nonsense_are_refused(typed):
    with pytest.raises(InstanceRefused):
        instance_of(typed)


def test_loopback_instances_need_the_switch():
    with pytest.raises(InstanceRefused):
        instance_of("bob@127.0.0.1:3000")
    loop = instance_of("bob@127.0.0.1:3000", allow_loopback=True)
    assert (loop.domain, loop.base_url) == ("127.0.0.1:3000", "http://127.0.0.1:3000")
    secure = instance_of("https://127.0.0.1:3000", allow_loopback=True)
    assert secure.base_url == "https://127.0.0.1:3000"


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.5",
        "192.168.1.2",
        "172.16.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",  # noqa: S104 (an address a name may resolve to)
        "100.64.0.1",
    ],
)
def test_a_name_resolving_to_a_private_loopback_or_link_local_address_is_refused(address):
    with pytest.raises(InstanceRefused, match="private"):
        check_url(
            "https://other.social/api/v1/apps",
            allow_loopback=False,
            resolve=resolver("93.184.216.34", address),
        )


def test_a_public_name_over_https_is_allowed():
    check_url("https://other.social/x", allow_loopback=False, resolve=resolver("93.184.216.34"))
    with pytest.raises(InstanceRefused):
        check_url("http://other.social/x", allow_loopback=False, resolve=resolver("93.184.216.34"))
    with pytest.raises(InstanceRefused, match="private"):
        check_url("https://93.184.216.34/x", allow_loopback=False, resolve=resolver())


@pytest.fixture(scope="module")
def fedi():
    with MastodonSandbox() as sandbox:
        yield sandbox


def test_the_session_refuses_loopback_unless_allowed(fedi):
    url = fedi.other.base_url + "/api/v2/instance"
    with pytest.raises(InstanceRefused):
        GuardedSession().get(url)
    assert GuardedSession(allow_loopback=True).get(url).json()["domain"] == fedi.other.domain


def test_an_oversized_answer_is_refused(fedi):
    fedi.world.fail_next(fedi.other.domain, Fault("/api/v2/instance", status=200, size=300_000))
    with pytest.raises(InstanceRefused, match="too much"):
        GuardedSession(allow_loopback=True).get(fedi.other.base_url + "/api/v2/instance")


def test_a_slow_answer_is_refused(fedi):
    fedi.world.fail_next(fedi.other.domain, Fault("/api/v2/instance", status=200, delay=0.6))
    session = GuardedSession(allow_loopback=True, timeout=(0.5, 0.2))
    with pytest.raises(InstanceRefused, match="in time"):
        session.get(fedi.other.base_url + "/api/v2/instance")


def test_redirects_are_not_followed(fedi):
    fedi.world.fail_next(fedi.other.domain, Fault("/api/v2/instance", status=302, body=""))
    answer = GuardedSession(allow_loopback=True).get(fedi.other.base_url + "/api/v2/instance")
    assert answer.status_code == 302
