"""Log lines: JSON one object a line with the context, text as before, secrets never."""

from __future__ import annotations

import io
import json
import logging

from bot.config import Settings
from bot.logs import configure_logging, log_context

BEARER = "AAAAbearer-token-that-must-never-show"
SECRET_KEY = "session-secret-that-must-never-show-0123456789"


def _settings(**kw: str) -> Settings:
    return Settings(x_bearer_token=BEARER, secret_key=SECRET_KEY, **kw)  # type: ignore[arg-type]


def test_json_lines_carry_the_job_platform_and_tweet_in_context():
    out = io.StringIO()
    configure_logging(_settings(log_format="json"), stream=out)
    log = logging.getLogger("bot.test")

    with log_context(job="poll", platform="x"):
        log.info("applied %d tips", 2, extra={"tweet_id": "1234"})
    log.warning("outside")

    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "applied 2 tips" and first["level"] == "INFO"
    assert (first["job"], first["platform"], first["tweet_id"]) == ("poll", "x", "1234")
    assert first["logger"] == "bot.test" and first["time"].endswith("+00:00")
    assert "job" not in second


def test_text_lines_stay_readable_with_the_context_appended():
    out = io.StringIO()
    configure_logging(_settings(), stream=out)

    with log_context(job="expiry"):
        logging.getLogger("bot.test").info("3 holds returned")

    line = out.getvalue().strip()
    assert "INFO bot.test: 3 holds returned [job=expiry]" in line


def test_secrets_oauth_codes_and_bearer_tokens_are_redacted_in_both_formats():
    for fmt in ("text", "json"):
        out = io.StringIO()
        configure_logging(_settings(log_format=fmt, log_level="DEBUG"), stream=out)
        log = logging.getLogger("tweepy.client")
        log.debug("headers {'Authorization': 'Bearer %s'}", "some-other-token")
        log.error("callback /oauth/callback?state=abc&code=one-time-code-42 failed")
        log.error("the key is %s and the token %s", SECRET_KEY, BEARER)
        try:
            raise RuntimeError(f"boom with {BEARER}")
        except RuntimeError:
            log.exception("failed")

        text = out.getvalue()
        for leaked in (BEARER, SECRET_KEY, "some-other-token", "one-time-code-42"):
            assert leaked not in text, (fmt, leaked)
        assert text.count("[redacted]") >= 5
