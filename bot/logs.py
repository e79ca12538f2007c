"""Log lines: plain text for people, or one JSON object a line (LOG_FORMAT=json) for machines.

`configure_logging(settings)` is called once by each process (the worker, a CLI command,
the web app). Code says what it is working on with `log_context(job=..., platform=...,
tweet_id=...)` (a context variable, so it follows the work through every function it
calls) or with `extra={...}` on one call; the JSON formatter writes those fields beside
the message, and the text formatter appends them as `key=value`.

Secrets never reach the output: the handler redacts every configured secret value (the
keys `bot.config` marks secret), bearer tokens and OAuth `code=` values from each line,
whatever logger wrote it and whatever the level.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from bot.config import KEYS, Settings

CONTEXT_FIELDS = ("job", "platform", "tweet_id", "post_id", "event_id", "period")
REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context: ContextVar[dict[str, str]] = ContextVar("tipjar_log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add `fields` to every log line written inside the block (None values are left out)."""
    merged = {**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_context.get())


class Redactor(logging.Filter):
    """Removes secret values, bearer tokens and OAuth codes from each record's text."""

    _PATTERNS = (
        re.compile(r"(Bearer\s+)[^\s'\",}]+", re.IGNORECASE),
        re.compile(r"((?:^|[?&\s])(?:code|code_verifier|access_token|refresh_token)=)[^&\s'\"]+"),
    )

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for pattern in self._PATTERNS:
            text = pattern.sub(r"\1" + REDACTED, text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business
            return True
        record.msg = self.redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def _fields(record: logging.LogRecord) -> dict[str, str]:
    fields = current_context()
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = str(value)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, context fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the context fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        first, nl, rest = text.partition("\n")
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{first} [{tail}]{nl}{rest}"


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret value of `settings` (the keys marked secret)."""
    return [
        str(getattr(settings, key.lower(), "") or "") for key, spec in KEYS.items() if spec.secret
    ]


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log line to `stream` (stderr) in LOG_FORMAT, secrets redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(Redactor(secret_values(settings)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_tipjar", False)]:
        root.removeHandler(old)
    handler._tipjar = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        # APScheduler logs every run of every job at INFO; our jobs log what they did.
        for noisy in ("apscheduler", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
