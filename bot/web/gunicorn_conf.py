"""gunicorn's settings for the claim pages, as the Procfile runs them.

`gunicorn --config python:bot.web.gunicorn_conf 'bot.web:create_app()'` binds to $PORT
(8000 without it) and writes an access log to stdout that has no query strings (see
`bot.web.serving`). WEB_CONCURRENCY, gunicorn's own variable, still sets the workers.
"""

from __future__ import annotations

import os

from bot.web.serving import ACCESS_LOG_FORMAT

bind = f"0.0.0.0:{os.environ.get('PORT') or '8000'}"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
accesslog = "-"
access_log_format = ACCESS_LOG_FORMAT
