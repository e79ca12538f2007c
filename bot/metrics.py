"""Prometheus metrics: what the bot did (counters here) and what it holds (gauges at scrape
time, `bot.metrics_state`).

Two kinds of numbers, both under the `tipjar_` prefix:

- Events, counted where they happen, in the process that saw them: mentions read and
  their outcomes per platform, platform API calls by endpoint and status and the rate
  limit each answer left, job runs, failures and durations, webhook events by type and
  result, web requests by route and status. The worker counts its own; under gunicorn
  every web worker writes its counts to PROMETHEUS_MULTIPROC_DIR and `/metrics` adds them
  up (prometheus-client's multiprocess mode, set up in `bot.gunicorn_conf`).
- State, read from the database when Prometheus scrapes (`LedgerCollector`): seconds
  since each platform's last successful poll, outbox rows by state and kind, money held
  in escrow and expiring soon, the last ledger check, and the sections of features that
  are installed (top-ups, debts, payouts). It is the same `bot.status.collect` that
  `tipjar status` prints, cached for a few seconds so that several scrapers cost one read.

Both endpoints, the web app's `GET /metrics` and the worker's METRICS_PORT, expose the
state gauges; alert rules aggregate them with `max`. Money is integer minor units with a
`currency` label. Nothing here names a person: labels are platforms, states, kinds, jobs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

MENTIONS_READ = Counter("tipjar_mentions_read", "Mentions read from a platform.", ["platform"])
MISSED_WINDOW = Counter(
    "tipjar_mentions_missed_window",
    "Polls that found mentions older than the platform lets the bot read (lost to its window).",
    ["platform"],
)
TIPS = Counter(
    "tipjar_tips",
    "Mentions processed, by the outcome of what they asked (tipped, held, flattred, refusals).",
    ["platform", "outcome"],
)
API_CALLS = Counter(
    "tipjar_platform_api_calls",
    "Calls to a platform's API, by endpoint and HTTP status ('error': no answer).",
    ["platform", "endpoint", "status"],
)
RATE_LIMIT_REMAINING = Gauge(
    "tipjar_platform_rate_limit_remaining",
    "Requests left in the endpoint's rate-limit window, as its last answer said.",
    ["platform", "endpoint"],
    multiprocess_mode="mostrecent",
)
JOB_RUNS = Counter("tipjar_job_runs", "Runs of a scheduled job.", ["job"])
JOB_FAILURES = Counter("tipjar_job_failures", "Runs of a scheduled job that failed.", ["job"])
JOB_SECONDS = Histogram(
    "tipjar_job_duration_seconds",
    "How long a scheduled job ran.",
    ["job"],
    buckets=(0.05, 0.25, 1, 5, 30, 120, 600, 3600),
)
JOB_LAST_SUCCESS = Gauge(
    "tipjar_job_last_success_timestamp_seconds",
    "When the job last finished without an error (Unix time).",
    ["job"],
    multiprocess_mode="max",
)
HTTP_REQUESTS = Counter(
    "tipjar_http_requests",
    "Requests the web app answered, by route and HTTP status.",
    ["route", "status"],
)
WEBHOOK_EVENTS = Counter(
    "tipjar_webhook_events",
    "Payment provider webhook events received, by type and result.",
    ["type", "result"],
)


def observe_poll(
    platform: str,
    mentions_seen: int,
    outcomes: Iterable[tuple[str, int]],
    missed_window: int = 0,
) -> None:
    """Count one poll's mentions, the outcome of each one processed, and a missed window."""
    MENTIONS_READ.labels(platform).inc(mentions_seen)
    MISSED_WINDOW.labels(platform).inc(missed_window)
    for outcome, n in outcomes:
        TIPS.labels(platform, outcome).inc(n)


def observe_api_call(
    platform: str, endpoint: str, status: int | None, remaining: int | None = None
) -> None:
    """Count one API call; `status` None means no HTTP answer (timeout, connection)."""
    API_CALLS.labels(platform, endpoint, "error" if status is None else str(status)).inc()
    if remaining is not None:
        RATE_LIMIT_REMAINING.labels(platform, endpoint).set(remaining)


def observe_request(route: str, status: int) -> None:
    HTTP_REQUESTS.labels(route, str(status)).inc()


def observe_webhook(event_type: str, result: str) -> None:
    WEBHOOK_EVENTS.labels(event_type, result).inc()


@contextmanager
def job_run(job: str) -> Iterator[None]:
    """Count a job's run, its failure (the exception still propagates) and its duration."""
    JOB_RUNS.labels(job).inc()
    started = time.monotonic()
    try:
        yield
    except BaseException:
        JOB_FAILURES.labels(job).inc()
        raise
    finally:
        JOB_SECONDS.labels(job).observe(time.monotonic() - started)
    JOB_LAST_SUCCESS.labels(job).set(time.time())
