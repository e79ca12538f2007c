"""gunicorn's settings for the web app, as the Procfile runs it.

`gunicorn --config python:bot.gunicorn_conf 'bot.web:create_app()'` binds to $PORT
(8000 without it) and writes an access log to stdout that has no query strings (see
`bot.web.serving`). WEB_CONCURRENCY, gunicorn's own variable, still sets the workers.

Metrics: each gunicorn worker is a process of its own, so prometheus-client runs in its
multiprocess mode. Every worker writes its counters to files in PROMETHEUS_MULTIPROC_DIR
(from the environment or `.env`; a fresh directory under the system's temporary folder
when unset) and `/metrics`, whichever worker answers, adds up all of them. The variable
must be in the environment before prometheus-client is first imported, hence here, before
anything else, and in a module outside `bot.web` (importing `bot.web.anything` runs that
package first, which loads the platform adapters and with them prometheus-client). The
directory is emptied when gunicorn starts (old counts are from a previous run) and a
worker's live gauges are dropped when it exits.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from dotenv import dotenv_values


def _metrics_dir() -> str:
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or dotenv_values(".env").get(
        "PROMETHEUS_MULTIPROC_DIR"
    )
    return configured or str(Path(tempfile.gettempdir()) / f"tipjar-metrics-{os.getpid()}")


os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir()

from bot.web.serving import ACCESS_LOG_FORMAT  # noqa: E402 (after the metrics directory)

bind = f"0.0.0.0:{os.environ.get('PORT') or '8000'}"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
accesslog = "-"
access_log_format = ACCESS_LOG_FORMAT


def on_starting(server: Any) -> None:
    """Start with empty metric files: counts left from an earlier run would add up again."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker that exited keeps its counters but not its live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
