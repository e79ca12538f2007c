"""`tipjar demo`: the story of a tip, end to end, on loopback (see `bot.demo`).

It needs no configuration, no `.env` and no network: it builds its own settings, a
throwaway database and the X sandbox, and ignores the environment's X_* keys.
"""

from __future__ import annotations

import signal
from types import FrameType

import click

from bot.cli.output import EXIT_PROBLEM, EXIT_USAGE, fail


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command("demo")
@click.option(
    "--serve",
    is_flag=True,
    help="Seed the story up to the claim, then keep the sandbox and the web app running.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option(
    "--web-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the claim web app (0: any free port).",
)
@click.option(
    "--sandbox-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the X sandbox (0: any free port).",
)
def demo(serve: bool, host: str, web_port: int, sandbox_port: int) -> None:
    """Show tipjar working, end to end, against a local stand-in for X.

    A deposit, tweets (a tip, a flattr, a reply tip, a malformed tip), the worker's poll,
    the creator notice in the tip's thread, escrow balances, a creator claiming through
    the real "Sign in with X" flow over HTTP, the month's settlement, an expiry and a
    clean audit. Temporary database, loopback only; exits 1 if a step goes wrong.

    \b
    Example:
      tipjar demo
      tipjar demo --serve --web-port 8000 --sandbox-port 8765
    """
    from bot import demo as story

    if not story.is_loopback(host):
        fail(f"the demo serves on loopback only, not {host}")
    try:
        if serve:
            # A process manager stops us with SIGTERM: leave as cleanly as on Ctrl-C.
            signal.signal(signal.SIGTERM, _interrupt)
            try:
                story.serve(host=host, web_port=web_port, sandbox_port=sandbox_port)
            except KeyboardInterrupt:
                pass
        else:
            story.run_story()
    except story.DemoFailure as e:
        fail(f"demo failed: {e}", EXIT_PROBLEM)
    except OSError as e:
        fail(f"demo cannot start: {e}", EXIT_USAGE)
    except Exception as e:  # the demo is a smoke test: any failure is a finding
        fail(f"demo failed: {type(e).__name__}: {e}", EXIT_PROBLEM)


def register(main: click.Group) -> None:
    main.add_command(demo)
