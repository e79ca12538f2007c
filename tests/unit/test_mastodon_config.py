"""PLATFORMS and the Mastodon keys: read once, checked only for the enabled platforms."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings

MASTODON = {
    "PLATFORMS": "mastodon",
    "MASTODON_BASE_URL": "https://example.social",
    "MASTODON_ACCESS_TOKEN": "token-that-must-never-show",
    "MASTODON_BOT_ACCT": "@Flattr@Example.Social",
    "SECRET_KEY": "k" * 40,
}


def test_x_is_the_default_platform():
    assert load_settings({}, env_file=None).platforms == ("x",)


def test_platforms_read_x_mastodon_or_both():
    assert load_settings({"PLATFORMS": "x, mastodon"}, env_file=None).platforms == (
        "x",
        "mastodon",
    )
    with pytest.raises(ConfigError, match="PLATFORMS"):
        load_settings({"PLATFORMS": "x,myspace"}, env_file=None)


def test_mastodon_alone_needs_no_x_keys():
    settings = load_settings(MASTODON, env_file=None)
    assert settings.live_problems() == []
    assert settings.mastodon_bot_acct == "flattr@example.social"
    assert (settings.mastodon_domain, settings.mastodon_bot_username) == (
        "example.social",
        "flattr",
    )
    assert "token-that-must-never-show" not in repr(settings) + str(settings.redacted())


def test_an_enabled_mastodon_names_its_missing_keys_and_x_keeps_its_own():
    problems = load_settings({"PLATFORMS": "x,mastodon"}, env_file=None).live_problems()
    for key in (
        "MASTODON_BASE_URL",
        "MASTODON_ACCESS_TOKEN",
        "MASTODON_BOT_ACCT",
        "X_BEARER_TOKEN",
    ):
        assert any(key in p for p in problems), key


def test_the_bot_address_needs_its_domain():
    with pytest.raises(ConfigError, match="MASTODON_BOT_ACCT"):
        load_settings({**MASTODON, "MASTODON_BOT_ACCT": "flattr"}, env_file=None)


def test_loopback_instances_are_refused_on_an_https_site():
    local = load_settings(
        {**MASTODON, "ALLOW_LOOPBACK_INSTANCES": "1", "PUBLIC_BASE_URL": "http://127.0.0.1:8000"},
        env_file=None,
    )
    assert local.allow_loopback_instances and local.live_problems() == []
    public = load_settings(
        {**MASTODON, "ALLOW_LOOPBACK_INSTANCES": "1", "PUBLIC_BASE_URL": "https://tipjar.example"},
        env_file=None,
    )
    assert any("ALLOW_LOOPBACK_INSTANCES" in p for p in public.live_problems())
