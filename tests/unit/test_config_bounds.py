"""Every bad configuration value gets a clear answer, and no secret is ever shown (issue 15)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.config import ConfigError, load_settings, parse_duration

DB_URL = "postgresql://tipjar:hunter2-secret@db.example.com:5432/tipjar"


def test_the_database_password_is_masked_in_the_settings_shown():
    shown = load_settings({"DATABASE_URL": DB_URL}, env_file=None).redacted()

    assert "hunter2-secret" not in str(shown)
    assert shown["DATABASE_URL"] == "postgresql://tipjar:***@db.example.com:5432/tipjar"


def test_a_malformed_database_url_is_named_without_its_password():
    with pytest.raises(ConfigError) as err:
        load_settings({"DATABASE_URL": "mysql://u:hunter2-secret@h/db"}, env_file=None)

    assert "DATABASE_URL" in str(err.value)
    assert "hunter2-secret" not in str(err.value)


@pytest.mark.parametrize("text", ["999999999999d", "3000000d", "99999999999999999999999s", "522w"])
def test_a_hold_period_beyond_ten_years_is_a_clear_problem_not_a_crash(text):
    with pytest.raises(ConfigError) as err:
        load_settings({"HOLD_PERIOD": text}, env_file=None)

    assert err.value.problems == [
        f"HOLD_PERIOD: {text!r} is longer than the most allowed, 3650d (ten years)"
    ]


def test_ten_years_is_the_longest_duration_accepted():
    assert parse_duration("3650d") == timedelta(days=3650)
    with pytest.raises(ValueError):
        parse_duration("3651d")


@pytest.mark.parametrize("value", ["0", "0.00"])
def test_a_monthly_budget_minimum_of_zero_is_refused(value):
    with pytest.raises(ConfigError, match="MIN_MONTHLY_BUDGET: must be more than zero"):
        load_settings({"MIN_MONTHLY_BUDGET": value}, env_file=None)


def test_amounts_above_the_largest_the_ledger_holds_are_refused():
    with pytest.raises(ConfigError, match=r"MAX_TIP: .* above the largest amount allowed"):
        load_settings({"MAX_TIP": "999999999999999.99"}, env_file=None)


@pytest.mark.parametrize("key", ["X_API_BASE_URL", "X_OAUTH_TOKEN_URL", "X_OAUTH_AUTHORIZE_URL"])
def test_a_remote_plain_http_endpoint_is_refused(key):
    with pytest.raises(ConfigError, match=rf"{key}: .*must use https://"):
        load_settings({key: "http://api.example.com"}, env_file=None)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765", "http://localhost:9000", "http://[::1]:80"]
)
def test_plain_http_to_this_machine_stays_allowed_for_the_sandbox(url):
    assert load_settings({"X_API_BASE_URL": url}, env_file=None).x_api_base_url == url


def test_the_cost_keys_read_as_usd_micro_dollars():
    s = load_settings(
        {"X_DAILY_BUDGET": "2.50", "X_PRICE_POST": "0.015", "X_PRICE_MENTION_READ": "0.001"},
        env_file=None,
    )
    assert s.x_daily_budget_usd_micros == 2_500_000
    assert s.x_price_post_usd_micros == 15_000
    assert s.x_price_mention_read_usd_micros == 1_000
    assert s.redacted()["X_DAILY_BUDGET"] == "2.50 USD"
    with pytest.raises(ConfigError, match="X_PRICE_POST"):
        load_settings({"X_PRICE_POST": "-1"}, env_file=None)
