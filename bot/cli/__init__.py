"""The `tipjar` command: the maintainer's tools, the worker and the web app.

Every command that prints data takes `--json` (money as integer minor units in fields
ending `_minor`). Configuration is read once, when a command first needs it; a broken
configuration ends the command with every problem listed and exit code 2.
"""

from __future__ import annotations

import click

from bot.cli.context import Context
from bot.cli.ledger_cmds import register as register_ledger


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="tipjar")
@click.pass_context
def main(ctx: click.Context) -> None:
    """tipjar: tips by tweet, held in escrow until the creator claims them.

    \b
    Example:
      tipjar db upgrade
      tipjar funds deposit @alice 10.00 --reference bank-2026-0042
      tipjar escrow balances
    """
    ctx.obj = Context()


register_ledger(main)
