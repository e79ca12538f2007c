"""How the CLI speaks: JSON for machines, aligned tables for people, one-line errors.

Exit codes are a contract: 0 ok, 1 a problem was found (an audit, a failed job),
2 a usage or configuration error, with a one-line reason on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NoReturn

import click

from escrow.money import Money

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print a one-line reason on stderr and exit with `code`."""
    click.echo(f"tipjar: {message}", err=True)
    sys.exit(code)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot encode {type(value).__name__}")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_default, indent=2, ensure_ascii=False))


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """An aligned text table; columns listed in `right` are right-aligned (amounts, counts)."""
    text_rows = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), sep, *(line(r) for r in text_rows)])


def money(minor: int, currency: str) -> str:
    return str(Money(minor, currency))


def progress(total: int | None, label: str) -> Any:
    """A click progress bar when stdout is a terminal; a silent stand-in otherwise."""
    if sys.stdout.isatty():
        return click.progressbar(length=total, label=label)
    return _Silent()


class _Silent:
    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None
