"""Configuration is read once, validated all at once, and never shows a secret."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import KEYS, ConfigError, load_settings, parse_duration, parse_notice_schedule

REPO = Path(__file__).resolve().parents[2]


def test_defaults_need_no_environment_at_all():
    s = load_settings({}, env_file=None)
    assert s.database_url == "sqlite:///tipjar.db"
    assert s.currency == "EUR"
    assert s.hold_period == timedelta(days=90)
    assert s.min_tip_minor == 10 and s.max_tip_minor == 10_000
    assert s.fee_percent == 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations_read_as_people_write_them(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d90", "1.5d", "-3d", "0d", "90 days"])
def test_durations_that_are_not_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_amounts_become_minor_units_of_the_deployment_currency():
    s = load_settings({"CURRENCY": "USD", "MIN_TIP": "0.25", "MAX_TIP": "50"}, env_file=None)
    assert (s.min_tip_minor, s.max_tip_minor) == (25, 5000)
    assert str(s.max_tip) == "$50.00"


def test_every_broken_key_is_reported_at_once(tmp_path):
    env = tmp_path / ".env"
    env.write_text("HOLD_PERIOD=ninety days\nFEE_PERCENT=150\nMIN_TIP=0.001\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, env_file=env)
    text = " ".join(err.value.problems)
    assert len(err.value.problems) == 3
    for key in ("HOLD_PERIOD", "FEE_PERCENT", "MIN_TIP"):
        assert key in text


def test_the_environment_overrides_the_env_file(tmp_path):
    env = tmp_path / ".env"
    env.write_text("CURRENCY=GBP\n")
    assert load_settings({}, env_file=env).currency == "GBP"
    assert load_settings({"CURRENCY": "EUR"}, env_file=env).currency == "EUR"


def test_a_max_tip_below_the_min_tip_is_a_problem():
    with pytest.raises(ConfigError, match="MAX_TIP"):
        load_settings({"MIN_TIP": "5", "MAX_TIP": "1"}, env_file=None)


def test_secrets_never_appear_in_repr_or_the_redacted_view():
    s = load_settings(
        {"X_BEARER_TOKEN": "AAAA-very-secret", "SECRET_KEY": "k" * 40, "X_CLIENT_SECRET": "cs-42"},
        env_file=None,
    )
    shown = repr(s) + str(s.redacted())
    for secret in ("AAAA-very-secret", "k" * 40, "cs-42"):
        assert secret not in shown
    assert s.redacted()["X_BEARER_TOKEN"] == "(set)"


def test_running_live_needs_the_x_keys_and_a_secret_key():
    problems = load_settings({}, env_file=None).live_problems()
    assert any("X_BEARER_TOKEN" in p for p in problems)
    assert any("SECRET_KEY" in p for p in problems)


def test_notice_schedule_reads_first_and_reminders():
    s = parse_notice_schedule("first,before-expiry:14d,before-expiry:2d")
    assert s.at_first_hold
    assert s.reminders_before_expiry == (timedelta(days=14), timedelta(days=2))
    assert parse_notice_schedule("none").reminders_before_expiry == ()
    with pytest.raises(ValueError):
        parse_notice_schedule("daily")


def test_config_example_lists_every_key_with_a_comment():
    lines = (REPO / "config.example.env").read_text().splitlines()
    for key in KEYS:
        idx = next((i for i, line in enumerate(lines) if line.startswith(f"{key}=")), None)
        assert idx is not None, f"{key} missing from config.example.env"
        assert lines[idx - 1].startswith("#") or lines[idx - 2].startswith("#"), key
    # and the example itself is a valid configuration
    assert load_settings({}, env_file=REPO / "config.example.env").currency == "EUR"


def test_card_top_ups_are_off_without_a_stripe_key_and_say_so():
    s = load_settings({}, env_file=None)
    assert not s.topups_enabled
    assert "card top-ups are off" in s.payments_status()
    assert [m.minor for m in s.topup_choices] == [500, 1000, 2500]
    assert (s.topup_min_minor, s.topup_max_minor) == (200, 50_000)
    assert s.stripe_api_base == "https://api.stripe.com"


def test_a_live_stripe_key_needs_an_https_site_and_a_webhook_secret():
    with pytest.raises(ConfigError) as err:
        load_settings(
            {"STRIPE_SECRET_KEY": "sk_live_abc123", "PUBLIC_BASE_URL": "http://tipjar.example"},
            env_file=None,
        )
    text = " ".join(err.value.problems)
    assert "live key" in text and "https" in text
    assert "STRIPE_WEBHOOK_SECRET is missing" in text
    assert "sk_live_abc123" not in text  # the key itself is never repeated


def test_the_stripe_api_may_be_http_only_on_loopback():
    ok = load_settings(
        {
            "STRIPE_SECRET_KEY": "sk_test_x",
            "STRIPE_WEBHOOK_SECRET": "whsec_x",
            "STRIPE_API_BASE": "http://127.0.0.1:8766",
        },
        env_file=None,
    )
    assert ok.topups_enabled and "test mode" in ok.payments_status()
    with pytest.raises(ConfigError) as err:
        load_settings({"STRIPE_API_BASE": "http://stripe.example.com"}, env_file=None)
    assert "must be https" in err.value.problems[0]


def test_stripe_secrets_are_shown_only_as_set_and_choices_as_amounts():
    s = load_settings(
        {
            "STRIPE_SECRET_KEY": "sk_test_secret123",
            "STRIPE_WEBHOOK_SECRET": "whsec_secret456",
            "TOPUP_CHOICES": "3, 7.50",
        },
        env_file=None,
    )
    shown = s.redacted()
    assert shown["STRIPE_SECRET_KEY"] == "(set)" and shown["STRIPE_WEBHOOK_SECRET"] == "(set)"
    assert shown["TOPUP_CHOICES"] == "3.00,7.50"
    assert "secret123" not in repr(s) and "secret456" not in repr(s)


def test_top_up_choices_outside_the_limits_are_refused():
    with pytest.raises(ConfigError) as err:
        load_settings({"TOPUP_CHOICES": "1,600", "TOPUP_MIN": "2"}, env_file=None)
    assert len([p for p in err.value.problems if p.startswith("TOPUP_CHOICES")]) == 2


FERNET_KEY = "8Hs7nJ0cZ1o2gkq5m2o0bR0uYwH3bM3m2lWc4bH0dEo="  # 32 bytes, urlsafe base64


def test_payouts_follow_the_stripe_key_unless_told_otherwise():
    assert load_settings({}, env_file=None).payout_method == "off"
    stripe = {"STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_WEBHOOK_SECRET": "whsec_x"}
    settings = load_settings(stripe, env_file=None)
    assert settings.payout_method == "stripe"
    assert (settings.payout_min_minor, settings.payout_schedule) == (1000, "manual")
    assert "STRIPE_CONNECT_WEBHOOK_SECRET is not set" in settings.payouts_status()
    off = load_settings({**stripe, "PAYOUT_PROVIDER": "off"}, env_file=None)
    assert off.payout_method == "off" and off.redacted()["PAYOUT_PROVIDER"] == "off"


def test_the_manual_provider_needs_a_fernet_key_that_is_never_echoed():
    with pytest.raises(ConfigError) as missing:
        load_settings({"PAYOUT_PROVIDER": "manual"}, env_file=None)
    assert any("PAYOUT_DETAILS_KEY is missing" in p for p in missing.value.problems)
    with pytest.raises(ConfigError) as wrong:
        load_settings(
            {"PAYOUT_PROVIDER": "manual", "PAYOUT_DETAILS_KEY": "not-a-key-s3cr3t"},
            env_file=None,
        )
    assert any("is not a Fernet key" in p for p in wrong.value.problems)
    assert "s3cr3t" not in str(wrong.value)
    good = load_settings(
        {"PAYOUT_PROVIDER": "manual", "PAYOUT_DETAILS_KEY": FERNET_KEY, "PAYOUT_MIN": "5"},
        env_file=None,
    )
    assert good.payout_min_minor == 500
    assert good.redacted()["PAYOUT_DETAILS_KEY"] == "(set)"
    assert FERNET_KEY not in repr(good)


def test_bad_payout_keys_are_all_reported_at_once():
    with pytest.raises(ConfigError) as e:
        load_settings(
            {
                "PAYOUT_PROVIDER": "paypal",
                "PAYOUT_SCHEDULE": "daily",
                "PAYOUT_MIN": "0",
            },
            env_file=None,
        )
    text = " | ".join(e.value.problems)
    assert "PAYOUT_PROVIDER" in text and "PAYOUT_SCHEDULE" in text and "PAYOUT_MIN" in text
    with pytest.raises(ConfigError, match="PAYOUT_PROVIDER=stripe needs STRIPE_SECRET_KEY"):
        load_settings({"PAYOUT_PROVIDER": "stripe"}, env_file=None)
