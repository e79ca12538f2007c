"""The state gauges of `/metrics`, read from the database at scrape time, and the exposition.

`LedgerCollector` turns `bot.status.collect` (the same sections `tipjar status` prints)
into gauges: seconds since each platform's last successful poll, outbox rows by state and
kind, money held in escrow and expiring soon, holds about to expire unnoticed, the last
ledger check, and the sections of features that are installed (top-ups, debts, payouts).
The read is cached for a few seconds, so several scrapers cost one. `exposition` renders
the event counters of `bot.metrics` (added up over gunicorn's workers in multiprocess
mode) with these gauges; `serve_worker_metrics` serves the same on the worker's
METRICS_PORT, on loopback unless an address is given.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from bot.config import Settings, listen_address
from bot.status import Status, collect
from escrow.ledger import Clock, utcnow

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST", "LedgerCollector", "exposition", "serve_worker_metrics"]

CACHE_SECONDS = 5.0


# --------------------------------------------------------------------------- state gauges


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _platform_metrics(status: Status) -> list[Metric]:
    age = _gauge(
        "tipjar_last_poll_age_seconds",
        "Seconds since the platform's last successful poll (+Inf: none yet).",
        ["platform"],
    )
    limited = _gauge(
        "tipjar_platform_rate_limited",
        "1 while polling the platform waits for its rate limit to reset.",
        ["platform"],
    )
    for p in status.sections.get("platforms", []):
        seconds = p["last_poll_age_seconds"]
        age.add_metric([p["platform"]], math.inf if seconds is None else float(seconds))
        limited.add_metric([p["platform"]], 1.0 if p["rate_limited_until"] else 0.0)
    return [age, limited]


def _outbox_metrics(status: Status) -> list[Metric]:
    rows = _gauge("tipjar_outbox_rows", "Outbox rows by state and kind.", ["state", "kind"])
    for r in status.sections.get("outbox", {}).get("by_kind", []):
        rows.add_metric([r["state"], r["kind"]], r["rows"])
    return [rows]


def _escrow_metrics(status: Status) -> list[Metric]:
    e = status.sections.get("escrow")
    if e is None:
        return []
    cur = [status.currency]
    held = _gauge("tipjar_escrow_held_minor", "Money held in escrow (minor units).", ["currency"])
    held.add_metric(cur, e["total_held_minor"])
    holds = _gauge("tipjar_escrow_holds", "Open holds in escrow.")
    holds.add_metric([], e["holds"])
    soon = _gauge(
        "tipjar_escrow_expiring_minor",
        "Money in holds that expire within the window (minor units).",
        ["currency", "within"],
    )
    soon.add_metric([*cur, "7d"], e["expiring_7d_minor"])
    soon.add_metric([*cur, "24h"], e["expiring_24h_minor"])
    soon_holds = _gauge(
        "tipjar_escrow_expiring_holds", "Holds that expire within the window.", ["within"]
    )
    soon_holds.add_metric(["7d"], e["expiring_7d_holds"])
    soon_holds.add_metric(["24h"], e["expiring_24h_holds"])
    unnoticed = _gauge(
        "tipjar_escrow_expiring_unnoticed_holds",
        "Holds that expire within the window whose creator was sent no notice since.",
        ["within"],
    )
    unnoticed.add_metric(["24h"], e["expiring_24h_unnoticed"])
    return [held, holds, soon, soon_holds, unnoticed]


def _audit_metrics(status: Status) -> list[Metric]:
    a = status.sections.get("audit", {})
    last = a.get("last")
    problems = _gauge("tipjar_audit_problems", "Problems the last ledger check found.")
    problems.add_metric([], last["problems"] if last else 0)
    stopped = _gauge(
        "tipjar_settlement_stopped",
        "1 while a failed ledger check stops settlement and payouts.",
    )
    stopped.add_metric([], 1.0 if a.get("settlement_stopped") else 0.0)
    when = _gauge(
        "tipjar_audit_last_run_timestamp_seconds",
        "When the last ledger check ran (Unix time; 0: never).",
    )
    when.add_metric([], last["finished_at"].timestamp() if last else 0.0)
    out: list[Metric] = [problems, stopped, when]
    return out


def _by_state(name: str, doc: str, rows: dict[str, Any], currency: str) -> list[Metric]:
    count = _gauge(name, doc, ["state"])
    minor = _gauge(f"{name}_minor", doc + " (minor units)", ["state", "currency"])
    for state, v in sorted(rows.items()):
        count.add_metric([state], v["count"])
        minor.add_metric([state, currency], v["amount_minor"])
    return [count, minor]


def _caps_metrics(status: Status) -> list[Metric]:
    caps = status.sections.get("caps")
    if caps is None:
        return []
    posts = _gauge(
        "tipjar_platform_posts_today",
        "Posts today (UTC) by what became of them: posted, with a link, deferred or dropped"
        " by the caps.",
        ["platform", "result"],
    )
    spend = _gauge(
        "tipjar_platform_spend_today_micros",
        "Estimated platform bill today (UTC), in millionths of the currency.",
        ["platform", "currency"],
    )
    cap = _gauge(
        "tipjar_platform_spend_cap_micros",
        "The daily spend cap (X_DAILY_BUDGET), in millionths of the currency.",
        ["platform", "currency"],
    )
    for c in caps:
        p = c["platform"]
        for result in ("posts", "posts_with_link", "deferred", "dropped"):
            posts.add_metric(
                [p, result.removeprefix("posts_") if result != "posts" else "posted"], c[result]
            )
        spend.add_metric([p, "USD"], c["spend_usd_micros"])
        if c["spend_cap_usd_micros"] is not None:
            cap.add_metric([p, "USD"], c["spend_cap_usd_micros"])
    return [posts, spend, cap]


def _feature_metrics(status: Status) -> list[Metric]:
    out: list[Metric] = _caps_metrics(status)
    funding = status.sections.get("funding")
    if funding is not None:
        out += _by_state(
            "tipjar_topups", "Card top-ups by state.", funding["topups"], status.currency
        )
        if "open_debts_minor" in funding:
            debts = _gauge(
                "tipjar_debts_open_minor",
                "Money supporters owe after refunds and lost disputes (minor units).",
                ["currency"],
            )
            debts.add_metric([status.currency], funding["open_debts_minor"])
            out.append(debts)
    payouts = status.sections.get("payouts")
    if payouts is not None:
        out += _by_state(
            "tipjar_payouts", "Payouts by state.", payouts["by_state"], status.currency
        )
        failing = _gauge(
            "tipjar_payouts_failing",
            "Payouts refused by the provider in the last 7 days, or failing and retried.",
            ["reason"],
        )
        failing.add_metric(["refused"], payouts["refused_7d"])
        failing.add_metric(["retrying"], payouts["retrying"])
        out.append(failing)
    return out


def state_metrics(status: Status) -> list[Metric]:
    return [
        *_platform_metrics(status),
        *_outbox_metrics(status),
        *_escrow_metrics(status),
        *_audit_metrics(status),
        *_feature_metrics(status),
    ]


class LedgerCollector(Collector):
    """The database's state as gauges, read at scrape time and cached `cache_seconds`."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock = utcnow,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def _read(self) -> list[Metric]:
        up = _gauge("tipjar_database_up", "1 when the state gauges could be read.")
        try:
            with self._engine.connect() as conn:
                status = collect(conn, self._settings, self._clock())
        except Exception:
            log.warning("metrics: the database could not be read", exc_info=True)
            up.add_metric([], 0.0)
            return [up]
        up.add_metric([], 1.0)
        return [up, *state_metrics(status)]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._cache_seconds:
                self._cached = (now, self._read())
            metrics = self._cached[1]
        yield from metrics


class _ProcessCounters(Collector):
    """This process's counters (the default registry) inside a registry of our own."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def registry_for(state: Collector | None, *, multiprocess_dir: str | None = None) -> Any:
    """A registry with the event counters (of every web worker, in multiprocess mode) and
    the state gauges."""
    registry = CollectorRegistry()
    if multiprocess_dir:
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    else:
        registry.register(_ProcessCounters())
    if state is not None:
        registry.register(state)
    return registry


def exposition(state: Collector | None) -> bytes:
    """The text format of every metric, as `/metrics` serves it."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    return bytes(generate_latest(registry_for(state, multiprocess_dir=directory)))


@dataclass
class WorkerMetrics:
    """The worker's metrics server: where it listens, and how to stop it."""

    address: tuple[str, int]
    stop: Callable[[], None]


def serve_worker_metrics(
    settings: Settings, engine: Engine, clock: Clock = utcnow
) -> WorkerMetrics | None:
    """Serve the worker's metrics on METRICS_PORT (None when it is unset: off)."""
    if not settings.metrics_port:
        return None
    addr, port = listen_address(settings.metrics_port)
    registry = registry_for(LedgerCollector(engine, settings, clock))
    server, thread = start_http_server(port, addr=addr, registry=registry)
    log.info("metrics on http://%s:%d/metrics", addr, server.server_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return WorkerMetrics((addr, int(server.server_port)), stop)
