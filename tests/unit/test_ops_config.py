"""The operations keys (METRICS_PORT, PROMETHEUS_MULTIPROC_DIR, LOG_FORMAT, SENTRY_DSN,
ADMIN_IDS) and the chart the maintainers' page draws."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, listen_address, load_settings
from bot.web.chart import Series, line_chart

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR", "LOG_FORMAT", "SENTRY_DSN", "ADMIN_IDS")


def test_the_defaults_are_off_text_and_nobody():
    settings = load_settings({}, env_file=None)

    assert settings.metrics_port == "" and settings.sentry_dsn == ""
    assert settings.log_format == "text" and settings.admin_ids == frozenset()


def test_good_values_are_read():
    settings = load_settings(
        {
            "METRICS_PORT": "9100",
            "PROMETHEUS_MULTIPROC_DIR": "/run/tipjar-metrics",
            "LOG_FORMAT": "JSON",
            "SENTRY_DSN": "https://key@o1.ingest.sentry.io/42",
            "ADMIN_IDS": "x:1212161512043446274, mastodon:Ada@Example.Social",
        },
        env_file=None,
    )

    assert listen_address(settings.metrics_port) == ("127.0.0.1", 9100)
    assert settings.log_format == "json"
    assert settings.admin_ids == {"x:1212161512043446274", "mastodon:ada@example.social"}
    assert settings.redacted()["SENTRY_DSN"] == "(set)"
    assert "key@" not in repr(settings)
    assert listen_address("0.0.0.0:9100") == ("0.0.0.0", 9100)  # noqa: S104 (parsed only)


def test_bad_values_are_all_named_at_once():
    with pytest.raises(ConfigError) as e:
        load_settings(
            {
                "METRICS_PORT": "ninety",
                "LOG_FORMAT": "xml",
                "SENTRY_DSN": "not a dsn",
                "ADMIN_IDS": "@alice, x:12",
            },
            env_file=None,
        )
    text = "\n".join(e.value.problems)
    for key in ("METRICS_PORT", "LOG_FORMAT", "SENTRY_DSN", "ADMIN_IDS"):
        assert key in text
    assert "@alice" in text and "x:NUMERIC_ID" in text and "not a dsn" not in text


def test_every_key_is_in_the_example_configuration():
    example = (ROOT / "config.example.env").read_text()
    for key in KEYS:
        assert f"{key}=" in example, key


def test_the_chart_scales_to_a_round_top_and_escapes_its_labels():
    svg = line_chart(
        [],
        [Series("<held>", "#0b5d3b", [0, 1234, 980])],
        title="Money & more",
        money=lambda minor: f"€{minor / 100:.2f}",
    )

    assert "€20.00" in svg  # 12.34 rounds up to 20
    assert "&lt;held&gt;" in svg and "Money &amp; more" in svg and "<held>" not in svg
    assert "<script" not in svg and "style=" not in svg
