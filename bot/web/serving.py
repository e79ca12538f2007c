"""How the servers of the claim pages log requests: method, path and status, no query.

The OAuth callback carries X's one-time authorization code and the state in its query
string, and any URL may carry something a person pasted; an access log is read by more
people than the database. So both servers log the path alone: gunicorn in production
(`ACCESS_LOG_FORMAT`, used by `bot.gunicorn_conf`, which the Procfile names) and werkzeug's
server behind `tipjar web` (`PathOnlyRequestHandler`). The referrer is left out too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from werkzeug.serving import WSGIRequestHandler

# gunicorn's atoms: remote address, time, method, path (%(U)s has no query string),
# protocol, status, response length, request time in seconds, user agent.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)s "%(a)s"'


def path_only(target: str) -> str:
    """The path of a request target, without its query string or fragment."""
    return urlsplit(target).path or "/"


class PathOnlyRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, logging `METHOD /path PROTOCOL status size`."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        command = getattr(self, "command", None)
        if command is None:  # a request line that could not be parsed
            self.log("info", '"<malformed request line>" %s %s', code, size)
            return
        line = f"{command} {path_only(self.path)} {self.request_version}"
        self.log("info", '"%s" %s %s', line.translate(self._control_char_table), code, size)
